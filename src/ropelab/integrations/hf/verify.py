"""Patch-time verification: call the replaced module on probe inputs and check the adapter agrees.

Before swapping, :func:`~ropelab.integrations.hf.patch` calls the original module on short
positions (once per layer type) and checks that the adapter agrees with it, so a model family whose
RoPE ropelab reads differently fails loudly at patch time instead of silently producing other
logits. A module that is not a ``(x, position_ids[, layer_type]) -> (cos, sin)`` module of real
tensors (:func:`_probe`), or that folds several position axes into one table as M-RoPE does without
saying so in its config (:func:`_refuse_folded_axes`), is refused with a :class:`PatchError` naming
it. The modules outside that generic call are compared on their own probe inputs
(:func:`_verify_outputs`, inputs built in :mod:`ropelab.integrations.hf.families`).

Every position axis of a probe gets a different shuffle of ``0 .. L-1``, so that a wrong section
mapping, a transposed grid or another frequency for some pair fails at patch time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ropelab.config import RopeConfig
from ropelab.errors import PatchError
from ropelab.integrations.hf.adapters import HFRotaryAdapter
from ropelab.integrations.hf.dialects import _deinterleaves_in_attention

_PROBE_POSITIONS = 64
_PROBE_TOLERANCE = 1e-4  # transformers forms angles in float32: ~1e-5 rad apart from float64 at position 64
# (stride, shift) of the probe positions of each axis: strides odd and coprime with 64 (permutations of 0..63)
_PROBE_AXIS_PERMUTATIONS = ((1, 0), (5, 3), (11, 7), (13, 5))


def _probe_rows(count: int, length: int, device: torch.device) -> torch.Tensor:
    """``[count, 1, length]`` probe positions, every row a different shuffle of ``0 .. length-1``."""
    steps = torch.arange(length, device=device)
    return torch.stack([(steps * stride + shift) % length for stride, shift in _PROBE_AXIS_PERMUTATIONS[:count]])[
        :, None
    ]


def _probe_positions(cfg: RopeConfig, length: int, device: torch.device) -> torch.Tensor:
    """Probe ``position_ids`` in the form the family's module takes: ``[1, L]``; axial ``[L, A]``
    (axis last); M-RoPE ``[A, 1, L]``. Every axis gets its own shuffle of ``0 .. L-1``, so a
    module that reads another axis, or another frequency, for some pair fails the probe."""
    rows = _probe_rows(cfg.num_axes, length, device)  # [A, 1, L]; the first row is 0 .. L-1 in order
    if cfg.num_axes == 1:
        return rows[0]
    if cfg.rope_type == "axial":
        return rows[:, 0].T.contiguous()
    return rows


def _token_shape(cfg: RopeConfig, positions: torch.Tensor) -> tuple[int, ...]:
    """The shape of the tables (without their last dim) for probe ``positions``."""
    if cfg.num_axes == 1:
        return tuple(positions.shape)
    return tuple(positions.shape[:-1] if cfg.rope_type == "axial" else positions.shape[1:])


def _probe_length(cfg: RopeConfig) -> int:
    """How many positions a probe uses: at most 64, below the trained length (see :func:`_probe`)."""
    return max(1, min(_PROBE_POSITIONS, (cfg.trained_length or _PROBE_POSITIONS + 1) - 1))


def _call(original: nn.Module, x: torch.Tensor, positions: torch.Tensor, layer_type: str | None):
    with torch.no_grad():
        return original(x, positions) if layer_type is None else original(x, positions, layer_type)


def _what(name: str, original: nn.Module, layer_type: str | None) -> str:
    return f"{name} ({type(original).__name__}" + (")" if layer_type is None else f", layer type {layer_type!r})")


def _probe(
    original: nn.Module, cfg: RopeConfig, name: str, layer_type: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Call the original module on short positions: ``(positions, cos, sin, sin_first)``, or a
    PatchError when it is not a ``forward(x, position_ids[, layer_type])`` module returning a pair of
    real tables. ``sin_first``: the module returns them as ``(sin, cos)`` (:func:`_sin_first`); cos and
    sin are returned in that order whatever the module's.

    The probe stays below the trained length: there every type is static, and transformers'
    stateful dynamic modules reset to their original frequencies (their reset test is strict).
    """
    device = next((b.device for b in original.buffers()), torch.device("cpu"))
    length = _probe_length(cfg)
    positions = _probe_positions(cfg, length, device)
    dummy = torch.zeros(1, device=device, dtype=torch.float32)
    what = _what(name, original, layer_type)
    call = "forward(x, position_ids)" if layer_type is None else "forward(x, position_ids, layer_type)"
    try:
        out = _call(original, dummy, positions, layer_type)
    except Exception as error:
        raise PatchError(
            f"cannot patch {what}: calling it as {call} fails "
            f"({type(error).__name__}: {error}); ropelab replaces modules that return (cos, sin)"
        ) from error
    if isinstance(out, torch.Tensor) and out.is_complex():
        raise PatchError(
            f"cannot patch {what}: it returns complex freqs_cis {tuple(out.shape)} only when called "
            f"as {call}; ropelab's complex adapter replaces forward(x, position_ids) -> [B, S, R/2] modules"
        )
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise PatchError(f"cannot patch {what}: it returns {type(out).__name__}, not a (cos, sin) pair of tensors")
    tokens = _token_shape(cfg, positions)
    # axial towers may return one table for the whole batch with a leading 1 (SAM 3's ViT)
    accepted = (tokens, (1, *tokens)) if cfg.num_axes > 1 else (tokens,)
    if any(t.is_complex() or tuple(t.shape[:-1]) not in accepted for t in out):
        shapes = [f"{tuple(t.shape)} {t.dtype}" for t in out]
        raise PatchError(f"cannot patch {what}: it returns {shapes}, not real [B, S, R] cos/sin tables")
    if cfg.num_axes == 1:
        _refuse_folded_axes(original, positions, what, layer_type)
        if _sin_first(out, positions):
            return positions, out[1], out[0], True
    return positions, out[0], out[1], False


def _sin_first(out: tuple[torch.Tensor, torch.Tensor], positions: torch.Tensor) -> bool:
    """Whether a one-axis module returns ``(sin, cos)`` (GPT-J and CodeGen from transformers 5.25 on)
    rather than ``(cos, sin)``, read from its values where the position is 0: there every angle is 0,
    so sin is exactly 0 and cos is the attention factor, never 0."""
    at_zero = positions.reshape(-1) == 0
    first, second = (t.reshape(-1, t.shape[-1])[at_zero] for t in out)
    return bool(first.numel()) and bool((first == 0).all()) and bool((second != 0).all())


def _refuse_folded_axes(original: nn.Module, positions: torch.Tensor, what: str, layer_type: str | None) -> None:
    """A module that turns positions ``[2, B, S]`` into one ``[B, S, R]`` table mixes several position
    axes per table (M-RoPE style; NeoMME, when read without its sections): one-axis tables cannot
    replace it, even where its text positions (equal axes) give the same numbers."""
    axes = torch.stack((positions, positions.flip(-1)))  # [2, 1, S], two different axes
    dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
    try:
        out = _call(original, dummy, axes, layer_type)
    except Exception:  # noqa: BLE001 (a module that refuses extra axes does not fold them)
        return
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) and out[0].shape[:-1] == positions.shape:
        raise PatchError(
            f"cannot patch {what}: it folds several position axes into one table (position_ids "
            f"{tuple(axes.shape)} give cos {tuple(out[0].shape)}), as M-RoPE does; ropelab replaces "
            "one-axis RoPE modules only"
        )


def _table_dtype(original: nn.Module, positions: torch.Tensor, layer_type: str | None) -> torch.dtype | None:
    """The dtype ``original`` returns whatever ``x`` is (float32 in OLMo 3, BEAM, LFM3), or None when it
    follows ``x``."""
    dummy = torch.zeros(1, device=positions.device, dtype=torch.bfloat16)
    try:
        cos, _ = _call(original, dummy, positions[..., :2], layer_type)
    except Exception:  # noqa: BLE001 (a module that only takes float32 x: follow x)
        return None
    return None if cos.dtype == dummy.dtype else cos.dtype


def _table_layout(cfg: RopeConfig, config: Any, width: int, what: str) -> str:
    """How the original lays its tables out (the ``table_layout`` of :mod:`~ropelab.integrations.hf.adapters`),
    read from their ``width`` and checked against ``cfg``."""
    if width == cfg.rotary_dim // 2:
        return "pairs"
    if width != cfg.rotary_dim:
        raise PatchError(
            f"cannot patch {what}: ropelab's reading of the config "
            f"(rotary_dim={cfg.rotary_dim}, head_dim={cfg.head_dim}) does not reproduce its cos/sin: its tables "
            f"are {width} wide, expected {cfg.rotary_dim} (or {cfg.rotary_dim // 2}, one value per pair)"
        )
    if _deinterleaves_in_attention(config):
        return "half"  # q and k are de-interleaved by apply_rotary_pos_emb_interleave; the tables are half-split
    return cfg.layout


def _verify_against(
    original: nn.Module, adapter: HFRotaryAdapter, name: str, probe, layer_type: str | None = None
) -> None:
    """Check the adapter reproduces the original module's cos/sin on the probe positions."""
    cfg = adapter.cfg_for(layer_type)
    positions, want_cos, want_sin = probe[:3]
    dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
    with torch.no_grad():
        got = adapter(dummy, positions, layer_type)
    got_cos, got_sin = got[::-1] if adapter.sin_first else got
    if got_cos.shape != want_cos.shape:
        problem = f"table shape {tuple(got_cos.shape)} != {tuple(want_cos.shape)}"
    else:
        error = max((got_cos - want_cos.float()).abs().max().item(), (got_sin - want_sin.float()).abs().max().item())
        if error <= _PROBE_TOLERANCE:
            return
        problem = f"max abs error {error:.2e} > {_PROBE_TOLERANCE:g}"
    raise PatchError(
        f"cannot patch {_what(name, original, layer_type)}: ropelab's reading of the config ({cfg.rope_type}, "
        f"layout={cfg.layout}, tables={adapter.table_layout}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}"
        f"{_axes_text(cfg)}) "
        f"does not reproduce its cos/sin: {problem}; pass verify=False to impose a different RoPE on purpose"
    )


def _verify_outputs(original: nn.Module, adapter: HFRotaryAdapter, name: str, inputs: tuple) -> None:
    """Call ``original`` and ``adapter`` on the same ``inputs``; a PatchError unless their outputs (a
    ``(cos, sin)`` pair or a complex tensor) have one shape and dtype kind and agree to the probe tolerance."""
    with torch.no_grad():
        want, got = original(*inputs), adapter(*inputs)
    if _kind(want) != _kind(got):
        problem = f"it returns {_kind(want)}, the adapter {_kind(got)}"
    elif any(w.shape != g.shape for w, g in zip(_parts(want), _parts(got))):
        problem = f"output shapes {[tuple(t.shape) for t in _parts(got)]} != {[tuple(t.shape) for t in _parts(want)]}"
    else:
        error = max((g.double() - w.double()).abs().max().item() for w, g in zip(_parts(want), _parts(got)))
        if error <= _PROBE_TOLERANCE:
            return
        problem = f"max abs error {error:.2e} > {_PROBE_TOLERANCE:g}"
    cfg = adapter.cfg
    raise PatchError(
        f"cannot patch {name} ({type(original).__name__}): ropelab's reading of the config ({cfg.rope_type}, "
        f"tables={adapter.table_layout}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}{_axes_text(cfg)}) "
        f"does not reproduce its output: {problem}; pass verify=False to impose a different RoPE on purpose"
    )


def _kind(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return "complex freqs_cis" if out.is_complex() else "one real tensor"
    if isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return "a (cos, sin) pair"
    return type(out).__name__


def _parts(out: Any) -> tuple[torch.Tensor, ...]:
    """The real tensors of a module's output: (real, imag) of complex freqs_cis, else the tensors themselves."""
    if isinstance(out, torch.Tensor):
        return (out.real, out.imag) if out.is_complex() else (out,)
    return tuple(out)


def _axes_text(cfg: RopeConfig) -> str:
    if cfg.mrope_section is not None:
        return f", mrope_section={list(cfg.mrope_section)} {cfg.mrope_composition}"
    if cfg.rope_type != "axial":
        return ""
    slots = "".join(f", {key}={getattr(cfg, key)}" for key in ("axial_pairs", "axial_bases") if getattr(cfg, key))
    return f", {cfg.axial_frequencies} axial frequencies, axial_order={cfg.axial_order} {cfg.axial_composition}{slots}"
