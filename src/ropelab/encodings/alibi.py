"""ALiBi: attention with linear biases (Press, Smith & Lewis 2022, "Train Short, Test Long")."""

from __future__ import annotations

import math

import torch

from ropelab.encodings.base import PositionEncoding, relative_distance

__all__ = ["AlibiEncoding", "alibi_slopes"]


def _power_of_two_slopes(num_heads: int) -> list[float]:
    """Press et al. 2022, sec. 3: for ``n`` heads (a power of two) the slopes are the geometric
    sequence starting at ``2^(-8/n)`` with that same ratio: ``2^(-8 h / n)``, ``h = 1..n``."""
    return [2.0 ** (-8.0 * h / num_heads) for h in range(1, num_heads + 1)]


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """Per-head slopes ``m_h`` of Press et al. 2022, sec. 3.

    For a head count that is not a power of two the paper's released recipe takes the slopes of
    the largest power of two ``n0 < n`` and then every other slope of ``2 * n0`` heads for the
    remaining ``n - n0`` heads (so 12 heads = the 8-head slopes + 4 of the 16-head odd ones).

    Returns:
        float64 ``[num_heads]``.
    """
    if num_heads <= 0:
        raise ValueError(f"num_heads={num_heads} is invalid: expected a positive integer")
    closest = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = _power_of_two_slopes(closest)
    if closest < num_heads:
        slopes += _power_of_two_slopes(2 * closest)[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


class AlibiEncoding(PositionEncoding):
    """Score bias ``-m_h * (i - j)`` for query ``i`` and key ``j <= i`` (Press et al. 2022, eq. in sec. 3:
    ``softmax(q_i K^T + m * [-(i-1), ..., -1, 0])``). No embedding, no q/k transform.

    Args:
        num_heads: attention heads ``H``.
    """

    name = "alibi"

    @classmethod
    def from_model(cls, *, dim: int, num_heads: int, max_positions: int, **options) -> AlibiEncoding:
        return cls(num_heads)

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", alibi_slopes(num_heads).float(), persistent=False)

    def score_bias(self, positions_q: torch.Tensor, positions_k: torch.Tensor) -> torch.Tensor:
        """-> float32 ``[H, Sq, Sk]`` (or ``[B, H, Sq, Sk]`` for batched positions)."""
        distance = relative_distance(positions_q, positions_k).clamp(min=0).float()  # future masked by the model
        return -self.slopes.view(-1, 1, 1) * distance.unsqueeze(-3)

    def describe(self) -> dict:
        return {}
