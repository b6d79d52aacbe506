"""xPos: RoPE with an exponential decay on the scores (Sun et al. 2022, "A Length-Extrapolatable Transformer")."""

from __future__ import annotations

import torch

from ropelab.config import RopeConfig
from ropelab.encodings.base import PositionEncoding
from ropelab.encodings.rope import rope_for_model
from ropelab.reference import pairs_to_channels
from ropelab.rotary import rotate_qk

__all__ = ["XposEncoding", "xpos_zeta", "xpos_scale"]

# Sun et al. 2022, sec. 3.2: gamma = 0.4 in zeta_i = (i / (d/2) + gamma) / (1 + gamma), and the
# exponent n / 512 (their scale base).
XPOS_GAMMA = 0.4
XPOS_SCALE_BASE = 512.0


def xpos_zeta(num_pairs: int, gamma: float = XPOS_GAMMA) -> torch.Tensor:
    """``zeta_i = (i / (d/2) + gamma) / (1 + gamma)`` for pairs ``i = 0..d/2-1`` (Sun et al. 2022, eq. 9).

    Returns:
        float64 ``[d/2]`` in ``(0, 1)``: high-frequency pairs decay fastest.
    """
    i = torch.arange(num_pairs, dtype=torch.float64)
    return (i / num_pairs + gamma) / (1 + gamma)


def xpos_scale(positions: torch.Tensor, num_pairs: int, scale_base: float = XPOS_SCALE_BASE) -> torch.Tensor:
    """``zeta_i ** (n / scale_base)`` for each position ``n`` and pair ``i`` (Sun et al. 2022, eq. 10).

    Queries are multiplied by this, keys by its inverse, so the score of query ``n`` and key ``m``
    gains the factor ``zeta_i ** ((n - m) / scale_base)``: a decay with distance.

    Returns:
        float64 ``[*P, d/2]``.
    """
    zeta = xpos_zeta(num_pairs).to(positions.device)
    return zeta ** (positions.to(torch.float64).unsqueeze(-1) / scale_base)


def _expand_pairs(scale: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    """``[*, R/2]`` per-pair values -> ``[*, D]`` per channel in ``cfg.layout`` (1 on unrotated channels)."""
    per_channel = pairs_to_channels(scale, cfg.layout)
    rest = cfg.head_dim - cfg.rotary_dim
    if rest:
        per_channel = torch.cat((per_channel, per_channel.new_ones(*per_channel.shape[:-1], rest)), -1)
    return per_channel


class XposEncoding(PositionEncoding):
    """RoPE rotation then the xPos scale: ``q * zeta^(n/s)``, ``k * zeta^(-n/s)``.

    Positions are centred on the middle of the sequence before scaling; scores depend only on
    ``n - m`` so this changes nothing mathematically and keeps the factors near 1 in float32.

    Args:
        cfg: the rotation (``RopeConfig``; default RoPE in the paper).
        scale_base: ``s`` of the exponent (512 in the paper).
    """

    name = "xpos"
    options = ("rope", "scale_base")

    @classmethod
    def from_model(
        cls, *, dim: int, num_heads: int, max_positions: int, rope=None, scale_base: float = XPOS_SCALE_BASE
    ) -> XposEncoding:
        return cls(rope_for_model(rope, dim // num_heads, max_positions), scale_base)

    def __init__(self, cfg: RopeConfig, scale_base: float = XPOS_SCALE_BASE):
        super().__init__()
        self.cfg, self.scale_base = cfg, scale_base

    def transform_qk(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor):
        """q, k ``[B, H, S, Dh]``, positions ``[S]`` or ``[B, S]`` -> ``(q, k)``."""
        q, k = rotate_qk(q, k, positions, self.cfg)
        centred = positions.long() - positions.long().min()
        centred = centred - int(centred.max()) // 2
        scale = _expand_pairs(xpos_scale(centred, self.cfg.num_pairs, self.scale_base), self.cfg)
        if positions.dim() == 2:
            scale = scale.unsqueeze(1)  # [B, 1, S, D]
        scale = scale.to(torch.promote_types(q.dtype, torch.float32))
        return (q * scale).to(q.dtype), (k / scale).to(k.dtype)

    def describe(self) -> dict:
        return {"rope": self.cfg.to_hf(), "scale_base": self.scale_base}
