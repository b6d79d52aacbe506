"""The one interface every position encoding implements.

Position can enter attention in exactly three places, so an encoding has three hooks, each a
no-op by default:

- :meth:`PositionEncoding.embed`: added to (or mixed into) the token embeddings ``[B, S, C]``
  before the first block (sinusoidal, learned absolute);
- :meth:`PositionEncoding.transform_qk`: a transform of queries and keys ``[B, H, S, Dh]`` inside
  every attention layer (RoPE, xPos);
- :meth:`PositionEncoding.score_bias`: an additive bias on the pre-softmax scores
  ``[(B,) H, Sq, Sk]`` (ALiBi, T5 relative bias).

Positions are integer tensors ``[S]`` or ``[B, S]`` (offsets, left padding and packing all fit).
"""

from __future__ import annotations

import torch
from torch import nn

from ropelab.errors import EncodingError

__all__ = ["PositionEncoding", "EncodingError", "relative_distance"]


def relative_distance(positions_q: torch.Tensor, positions_k: torch.Tensor) -> torch.Tensor:
    """Query position minus key position.

    Args:
        positions_q: integer ``[Sq]`` or ``[B, Sq]``.
        positions_k: integer ``[Sk]`` or ``[B, Sk]``.

    Returns:
        int64 ``[Sq, Sk]`` or ``[B, Sq, Sk]``: ``i - j`` (non-negative for the causal past).
    """
    return positions_q.long().unsqueeze(-1) - positions_k.long().unsqueeze(-2)


class PositionEncoding(nn.Module):
    """Base class: three hooks, each the identity (or no bias) unless an encoding overrides it.

    Subclasses set ``name`` (the registry key), ``options`` (the keyword options
    :func:`~ropelab.encodings.build_encoding` may pass them), :meth:`from_model`, and override the
    hooks they need.
    """

    name: str = "base"
    options: tuple[str, ...] = ()

    @classmethod
    def from_model(cls, *, dim: int, num_heads: int, max_positions: int, **options) -> PositionEncoding:
        """The encoding for a model of width ``dim`` with ``num_heads`` heads trained at
        ``max_positions``; ``options`` are a subset of :attr:`options` (checked by the caller)."""
        return cls(**options)

    def embed(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Input embedding hook.

        Args:
            x: token embeddings ``[B, S, C]``.
            positions: integer ``[S]`` or ``[B, S]``.

        Returns:
            ``[B, S, C]``, same dtype as ``x``.
        """
        return x

    def transform_qk(
        self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query/key hook.

        Args:
            q, k: ``[B, H, S, Dh]``.
            positions: integer ``[S]`` or ``[B, S]`` (the same for q and k: self-attention).

        Returns:
            ``(q, k)`` with the same shapes and dtypes.
        """
        return q, k

    def score_bias(self, positions_q: torch.Tensor, positions_k: torch.Tensor) -> torch.Tensor | None:
        """Score hook.

        Args:
            positions_q: integer ``[Sq]`` or ``[B, Sq]``; positions_k: ``[Sk]`` or ``[B, Sk]``.

        Returns:
            ``None`` (no bias) or a float bias ``[H, Sq, Sk]`` / ``[B, H, Sq, Sk]`` added to
            ``q k^T / sqrt(Dh)`` before the softmax. Future keys are masked by the model, not here.
        """
        return None

    def describe(self) -> dict:
        """The constructor arguments needed to rebuild this encoding (stored in checkpoints)."""
        return {}
