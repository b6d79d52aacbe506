"""Wavelengths, turns, the critical dimension, and the pairs that leave their trained range.

Pair ``i`` rotates by ``theta_i`` per position, so it repeats every ``2 pi / theta_i`` positions
(its wavelength) and makes ``L theta_i / (2 pi)`` full turns in a context of ``L``. A pair that
completes at least one turn during training has seen every angle; a pair whose wavelength is
longer than the training context has seen only the arc ``[0, L theta_i)`` and meets new angles as
soon as a position passes ``L - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ropelab.config import RopeConfig
from ropelab.frequencies import rope_frequencies

__all__ = [
    "pair_wavelengths",
    "pair_turns",
    "critical_dimension",
    "OutOfRange",
    "out_of_range_pairs",
    "unscaled",
]

TWO_PI = 2.0 * math.pi


def unscaled(cfg: RopeConfig) -> RopeConfig:
    """The same head with the pretraining frequencies (``rope_type="default"``, no attention factor).

    Axial RoPE has no scaling and is returned as it is. p-RoPE (``proportional``) is a choice of
    frequencies, not a scaling: it keeps its type and its unrotated pairs and only drops ``factor``."""
    if cfg.rope_type == "axial":
        return cfg
    if cfg.rope_type == "proportional":
        return cfg.replace(factor=None, attention_factor=None)
    return cfg.replace(rope_type="default", attention_factor=None)


def pair_wavelengths(cfg: RopeConfig, seq_len: int | None = None) -> torch.Tensor:
    """Wavelength ``2 pi / theta_i`` of every pair, in positions: float64 ``[R/2]``, shortest first
    for the unscaled variants (RoFormer eq. 15 orders ``theta_i`` from 1 downwards)."""
    inv_freq, _ = rope_frequencies(cfg, seq_len)
    return TWO_PI / inv_freq


def pair_turns(cfg: RopeConfig, context: int, seq_len: int | None = None) -> torch.Tensor:
    """Full turns ``(context - 1) * theta_i / (2 pi)`` each pair makes over positions ``0 .. context-1``:
    float64 ``[R/2]``. ``seq_len`` defaults to ``context`` (what a dynamic variant would see)."""
    inv_freq, _ = rope_frequencies(cfg, context if seq_len is None else seq_len)
    return (context - 1) * inv_freq / TWO_PI


def critical_dimension(rotary_dim: int, base: float, trained_length: int) -> int:
    """The critical dimension ``d_extra = 2 * ceil((d/2) * log_base(T_train / (2 pi)))`` of
    "Scaling Laws of RoPE-based Extrapolation" (Liu et al. 2023).

    The dimensions below ``d_extra`` belong to pairs whose wavelength fits in the training context
    (they have seen every angle); the rest have seen only part of a turn. Clamped to ``[0, d]``.
    For LLaMA-2 (``d = 128``, base 10000, ``T_train = 4096``) it is 92, the paper's value.
    """
    if trained_length <= 0:
        raise ValueError(f"trained_length={trained_length} is invalid: expected a positive integer")
    value = 2 * math.ceil((rotary_dim / 2) * math.log(trained_length / TWO_PI) / math.log(base))
    return int(min(max(value, 0), rotary_dim))


@dataclass(frozen=True)
class OutOfRange:
    """Which pairs see, at the target length, angles they never saw in training.

    Attributes:
        trained_length: ``L``; training covered positions ``0 .. L-1``, i.e. angles ``[0, L theta_i)``.
        target_length: ``L'``; the target covers positions ``0 .. L'-1``.
        trained_reach: float64 ``[R/2]``, ``L * theta_i`` (radians), the edge of the trained arc.
        target_reach: float64 ``[R/2]``, ``(L' - 1) * theta'_i`` with the target frequencies.
        full_turn: bool ``[R/2]``, pairs whose training arc is a full turn (``L theta_i >= 2 pi``).
        mask: bool ``[R/2]``, the out-of-range pairs: ``not full_turn and target_reach >= trained_reach``.
    """

    trained_length: int
    target_length: int
    trained_reach: torch.Tensor
    target_reach: torch.Tensor
    full_turn: torch.Tensor
    mask: torch.Tensor

    @property
    def count(self) -> int:
        """Number of out-of-range pairs."""
        return int(self.mask.sum())

    @property
    def indices(self) -> list[int]:
        """Indices of the out-of-range pairs."""
        return self.mask.nonzero().flatten().tolist()

    @property
    def dims(self) -> int:
        """Rotated channels in the out-of-range pairs (two per pair)."""
        return 2 * self.count


def out_of_range_pairs(
    trained: RopeConfig,
    target_length: int,
    *,
    trained_length: int | None = None,
    target: RopeConfig | None = None,
) -> OutOfRange:
    """The pairs that meet new angles when a model trained at ``L`` runs at ``L'``.

    Training with ``trained``'s frequencies ``theta_i`` over positions ``0 .. L-1`` covers the arc
    ``[0, L theta_i)`` of pair ``i`` (half-open: the last position is the edge, as in the
    interpolation of Chen et al. 2023). Running at ``L'`` with ``target``'s frequencies
    ``theta'_i`` reaches ``(L' - 1) theta'_i``. Pair ``i`` is out of range when its trained arc is
    less than a full turn and the target reaches past its edge. Without scaling this is empty up
    to ``L' = L`` and holds the ``d/2 - d_extra/2`` slowest pairs from ``L' = L + 1`` on (see
    :func:`critical_dimension`); position interpolation by ``L'/L`` keeps every pair inside.

    Args:
        trained: the variant used in training (its frequencies at length ``L``).
        target_length: ``L' >= 1``.
        trained_length: ``L``; default ``trained.trained_length``.
        target: the variant used at ``L'`` (default: ``trained``, i.e. plain extrapolation).

    Returns:
        :class:`OutOfRange`.
    """
    length = trained_length or trained.trained_length
    if not length or length <= 0:
        raise ValueError("trained_length is unknown: pass trained_length= or set max_position_embeddings")
    if target_length <= 0:
        raise ValueError(f"target_length={target_length} is invalid: expected a positive integer")
    target = target or trained
    if target.rotary_dim != trained.rotary_dim:
        raise ValueError(f"target.rotary_dim={target.rotary_dim} must equal trained.rotary_dim={trained.rotary_dim}")
    trained_freq, _ = rope_frequencies(trained, length)
    target_freq, _ = rope_frequencies(target, target_length)
    trained_reach = length * trained_freq
    target_reach = (target_length - 1) * target_freq
    full_turn = trained_reach >= TWO_PI
    tolerance = 1e-12 * trained_reach  # equal reaches are "at the edge", i.e. new
    mask = ~full_turn & (target_reach >= trained_reach - tolerance) & (target_reach > 0)
    return OutOfRange(length, target_length, trained_reach, target_reach, full_turn, mask)
