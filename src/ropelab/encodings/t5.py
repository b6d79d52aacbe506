"""T5 relative position bias (Raffel et al. 2020, "Exploring the Limits of Transfer Learning", sec. 2.1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ropelab.encodings.base import PositionEncoding, relative_distance

__all__ = ["T5BiasEncoding", "t5_causal_bucket"]

# Raffel et al. 2020, sec. 2.1: 32 buckets, logarithmically larger up to an offset of 128.
T5_NUM_BUCKETS = 32
T5_MAX_DISTANCE = 128


def t5_causal_bucket(
    distance: torch.Tensor, num_buckets: int = T5_NUM_BUCKETS, max_distance: int = T5_MAX_DISTANCE
) -> torch.Tensor:
    """Bucket of a causal distance ``i - j >= 0`` (Raffel et al. 2020, sec. 2.1, unidirectional form).

    The first ``num_buckets // 2`` distances get a bucket each; larger distances share buckets
    whose width grows logarithmically up to ``max_distance``; everything beyond shares the last::

        bucket(n) = n                                                  if n < E,  E = num_buckets // 2
                  = min(E + floor(log(n / E) / log(max_distance / E) * (num_buckets - E)), num_buckets - 1)

    Args:
        distance: integer ``[*]``, query minus key position (negative values, the future, map to 0).

    Returns:
        int64 ``[*]`` in ``[0, num_buckets)``.
    """
    exact = num_buckets // 2
    n = distance.long().clamp(min=0)
    scaled = torch.log(n.double().clamp(min=1) / exact) / math.log(max_distance / exact) * (num_buckets - exact)
    large = (exact + scaled.floor().long()).clamp(max=num_buckets - 1)
    return torch.where(n < exact, n, large)


class T5BiasEncoding(PositionEncoding):
    """A learned scalar per (bucket, head) added to the scores; shared by all layers as in T5.

    Args:
        num_heads: ``H``.
        num_buckets, max_distance: see :func:`t5_causal_bucket`.
    """

    name = "t5"
    options = ("num_buckets", "max_distance")

    @classmethod
    def from_model(cls, *, dim: int, num_heads: int, max_positions: int, **options) -> T5BiasEncoding:
        return cls(num_heads, **options)

    def __init__(self, num_heads: int, num_buckets: int = T5_NUM_BUCKETS, max_distance: int = T5_MAX_DISTANCE):
        super().__init__()
        if num_buckets < 2 or max_distance <= num_buckets // 2:
            raise ValueError(
                f"num_buckets={num_buckets}, max_distance={max_distance} is invalid: expected num_buckets >= 2 "
                "and max_distance > num_buckets // 2"
            )
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.bias = nn.Embedding(num_buckets, num_heads)
        nn.init.zeros_(self.bias.weight)

    def score_bias(self, positions_q: torch.Tensor, positions_k: torch.Tensor) -> torch.Tensor:
        """-> ``[H, Sq, Sk]`` (or ``[B, H, Sq, Sk]``)."""
        buckets = t5_causal_bucket(relative_distance(positions_q, positions_k), self.num_buckets, self.max_distance)
        return self.bias(buckets).movedim(-1, -3)

    def describe(self) -> dict:
        return {"num_buckets": self.num_buckets, "max_distance": self.max_distance}
