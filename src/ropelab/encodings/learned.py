"""Learned absolute position embedding (GPT / GPT-2 style; Radford et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn

from ropelab.encodings.base import EncodingError, PositionEncoding

__all__ = ["LearnedEncoding"]


class LearnedEncoding(PositionEncoding):
    """A trainable table ``[max_positions, C]`` added to the token embeddings.

    It has nothing to say past its table: a position ``>= max_positions`` raises
    :class:`EncodingError` unless ``clamp=True``, which reuses the last row (the common
    "extrapolation" hack, reported as such by the lab).

    Args:
        dim: model width ``C``.
        max_positions: rows of the table (the training length).
        clamp: map positions past the table to its last row instead of raising.
    """

    name = "learned"
    options = ("clamp",)

    @classmethod
    def from_model(cls, *, dim: int, num_heads: int, max_positions: int, **options) -> LearnedEncoding:
        return cls(dim, max_positions, **options)

    def __init__(self, dim: int, max_positions: int, clamp: bool = False):
        super().__init__()
        if max_positions <= 0:
            raise EncodingError(f"max_positions={max_positions} is invalid: expected a positive integer")
        self.max_positions, self.clamp = max_positions, clamp
        self.table = nn.Embedding(max_positions, dim)
        nn.init.normal_(self.table.weight, std=0.02)

    def embed(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, S, C]``, positions ``[S]`` or ``[B, S]`` -> ``x + table[positions]``."""
        top = int(positions.max()) if positions.numel() else 0
        if top >= self.max_positions and not self.clamp:
            raise EncodingError(
                f"position {top} is past the learned table of max_positions={self.max_positions}: "
                "a learned absolute embedding has no row for it (pass clamp=True to reuse the last row)"
            )
        if int(positions.min()) < 0:
            raise EncodingError(f"positions must be >= 0 for a learned table, got {int(positions.min())}")
        index = positions.long().clamp(max=self.max_positions - 1)
        return x + self.table(index).to(x.dtype)

    def describe(self) -> dict:
        return {"max_positions": self.max_positions}
