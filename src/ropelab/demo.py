"""What the core does, as two printed tables: ``ropelab types`` and ``ropelab precision``.

Each table is computed by a pure function returning rows (tested), then printed with rich.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table

from ropelab.config import ROPE_TYPES, RopeConfig
from ropelab.extension import extension_config
from ropelab.frequencies import rope_frequencies
from ropelab.rotary import rope_cos_sin

__all__ = ["type_rows", "precision_rows", "print_types_table", "print_precision_table", "example_configs"]


def example_configs(head_dim: int = 128, base: float = 10000.0, trained: int = 4096, factor: float = 4.0):
    """One config per rope type, all extending a model trained at ``trained`` tokens by ``factor``."""
    pairs = head_dim // 2
    plain = RopeConfig(head_dim=head_dim, base=base, max_position_embeddings=trained)
    configs = {"default": plain}
    configs.update(
        {method: extension_config(plain, method, trained, factor) for method in ("linear", "ntk", "dynamic", "yarn")}
    )
    # LongRoPE's factors are searched per model; these rise geometrically from 1 to `factor` and
    # only illustrate the shape (a real model's lists come from its config.json).
    illustrative = [factor ** (i / max(1, pairs - 1)) for i in range(pairs)]
    configs["longrope"] = configs["yarn"].replace(
        rope_type="longrope", short_factor=[1.0] * pairs, long_factor=illustrative
    )
    configs["llama3"] = extension_config(plain, "llama3", trained, factor)
    # p-RoPE is not an extension: a quarter of the pairs turn, the rest carry no position (Gemma 4's
    # full-attention layers use partial_rotary_factor 0.25 in transformers' Gemma4TextConfig defaults).
    configs["proportional"] = plain.replace(rope_type="proportional", rotated_pairs=pairs // 4)
    return configs


@dataclass(frozen=True)
class TypeRow:
    rope_type: str
    attention_factor: float
    first_inv_freq: float
    last_inv_freq: float
    longest_wavelength: float
    last_pair_ratio: float  # last inv_freq / the default's: how much the slowest pair is stretched (0: frozen)


def type_rows(head_dim: int = 128, base: float = 10000.0, seq_len: int = 16384) -> list[TypeRow]:
    """Frequencies of every rope type for one config (dynamic types at ``seq_len``)."""
    configs = example_configs(head_dim, base)
    default = rope_frequencies(configs["default"])[0]
    rows = []
    for rope_type in ROPE_TYPES:
        inv_freq, attention = rope_frequencies(configs[rope_type], seq_len)
        last = inv_freq[-1].item()
        rows.append(
            TypeRow(
                rope_type,
                attention,
                inv_freq[0].item(),
                last,
                2 * math.pi / last if last else math.inf,
                last / default[-1].item(),
            )
        )
    return rows


@dataclass(frozen=True)
class PrecisionRow:
    position: int
    float32_angle_error: float  # max |fp32(position * inv_freq) - exact| (rad), transformers' way
    float32_cos_error: float  # max |cos(fp32 angle) - cos(exact)|
    ropelab_cos_error: float  # max |ropelab cos table - cos(exact)|
    ropelab_score_drift: float  # change of q.k when both positions shift by `position`, over |q||k|
    float32_score_drift: float


def precision_rows(head_dim: int = 128, base: float = 500000.0, exponents=(10, 16, 20, 24)) -> list[PrecisionRow]:
    """Angle and cos errors against float64 at large positions, and the score drift of
    :func:`ropelab.analysis.relative_invariance`, for ropelab against float32 angles."""
    from ropelab.analysis import relative_invariance

    cfg = RopeConfig(head_dim=head_dim, base=base)
    inv_freq = rope_frequencies(cfg)[0]
    offsets = [2**exponent for exponent in exponents]
    drift = relative_invariance(cfg, offsets, methods=("ropelab", "naive float32"))
    rows = []
    for offset in offsets:
        positions = offset + torch.arange(256)
        exact = positions.double()[:, None] * inv_freq[None]
        fp32_angles = positions.float()[:, None] * inv_freq.float()[None]  # what transformers computes
        ours_cos, _ = rope_cos_sin(positions, cfg)
        rows.append(
            PrecisionRow(
                position=offset,
                float32_angle_error=_wrapped(fp32_angles.double() - exact).abs().max().item(),
                float32_cos_error=(torch.cos(fp32_angles).double() - torch.cos(exact)).abs().max().item(),
                ropelab_cos_error=(ours_cos.double() - torch.cos(exact)).abs().max().item(),
                ropelab_score_drift=drift.error_at("ropelab", offset),
                float32_score_drift=drift.error_at("naive float32", offset),
            )
        )
    return rows


def _wrapped(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def print_types_table(head_dim: int = 128, base: float = 10000.0, seq_len: int = 16384) -> None:
    table = Table(title=f"RoPE types: head_dim {head_dim}, base {base:g}, trained 4096, factor 4, seq_len {seq_len}")
    for column in (
        "rope type",
        "attention factor",
        "theta_0",
        "theta_last",
        "longest wavelength",
        "slowest pair / default",
    ):
        table.add_column(column, justify="right")
    for row in type_rows(head_dim, base, seq_len):
        table.add_row(
            row.rope_type,
            f"{row.attention_factor:.4f}",
            f"{row.first_inv_freq:.4g}",
            f"{row.last_inv_freq:.4g}",
            f"{row.longest_wavelength:,.0f}",
            f"{row.last_pair_ratio:.4f}",
        )
    Console().print(table)
    print("longrope uses illustrative factors (1 -> 4, geometric); a real model's come from its config.json.")
    print("proportional (p-RoPE) rotates the first quarter of the pairs; the rest never turn (wavelength inf).")


def print_precision_table(head_dim: int = 128, base: float = 500000.0) -> None:
    table = Table(title=f"Precision at long positions (head_dim {head_dim}, base {base:g}); reference: float64")
    for column in (
        "position",
        "fp32 angle err (rad)",
        "fp32 cos err",
        "ropelab cos err",
        "score drift fp32",
        "score drift ropelab",
    ):
        table.add_column(column, justify="right")
    for row in precision_rows(head_dim, base):
        table.add_row(
            f"2^{int(math.log2(row.position))}",
            f"{row.float32_angle_error:.2e}",
            f"{row.float32_cos_error:.2e}",
            f"{row.ropelab_cos_error:.2e}",
            f"{row.float32_score_drift:.2e}",
            f"{row.ropelab_score_drift:.2e}",
        )
    Console().print(table)
    print("score drift: max change of q.k over |q||k| when both positions move by the offset (RoPE promises 0).")
