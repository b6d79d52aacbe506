"""Sinusoidal absolute position embedding (Vaswani et al. 2017, "Attention Is All You Need", sec. 3.5)."""

from __future__ import annotations

import math

import torch

from ropelab.encodings.base import PositionEncoding

__all__ = ["SinusoidalEncoding", "sinusoidal_table"]

# Vaswani et al. 2017, sec. 3.5: wavelengths form a geometric progression from 2*pi to 10000*2*pi.
SINUSOIDAL_BASE = 10000.0


def sinusoidal_table(positions: torch.Tensor, dim: int, base: float = SINUSOIDAL_BASE) -> torch.Tensor:
    """Vaswani et al. 2017, sec. 3.5::

        PE(pos, 2i)     = sin(pos / base^(2i / dim))
        PE(pos, 2i + 1) = cos(pos / base^(2i / dim))

    Args:
        positions: integer ``[*P]``.
        dim: model width ``C`` (even).
        base: 10000 in the paper.

    Returns:
        float64 ``[*P, C]`` (angles formed exactly in float64).
    """
    if dim % 2:
        raise ValueError(f"dim={dim} is invalid: expected an even width for sin/cos pairs")
    inv_freq = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    angles = positions.to(torch.float64).unsqueeze(-1) * inv_freq.to(positions.device)
    table = torch.stack((torch.sin(angles), torch.cos(angles)), dim=-1)  # [*P, C/2, 2]
    return table.flatten(-2)


class SinusoidalEncoding(PositionEncoding):
    """``x * sqrt(C) + PE(pos)``: the embedding scale of Vaswani et al. 2017, sec. 3.4, plus sec. 3.5's table.

    Args:
        dim: model width ``C``.
    """

    name = "sinusoidal"
    options = ("base",)

    @classmethod
    def from_model(cls, *, dim: int, num_heads: int, max_positions: int, **options) -> SinusoidalEncoding:
        return cls(dim, **options)

    def __init__(self, dim: int, base: float = SINUSOIDAL_BASE):
        super().__init__()
        self.dim, self.base = dim, base

    def embed(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, S, C]``, positions ``[S]`` or ``[B, S]`` -> ``[B, S, C]``."""
        table = sinusoidal_table(positions, self.dim, self.base).to(x.dtype)
        return x * math.sqrt(self.dim) + table

    def describe(self) -> dict:
        return {"base": self.base}
