"""The plain torch rotation: the reference that the fused kernel and the eager fast paths are tested against.

It imports torch only, so :mod:`ropelab.rotary`, :mod:`ropelab.kernels` and the tests can all use
it. It also holds the one definition of which channels form a pair:

- half-split (GPT-NeoX, transformers' Llama): pair ``i`` is channels ``(i, i + R/2)``;
- interleaved (GPT-J, Meta's Llama checkpoints): pair ``i`` is channels ``(2i, 2i + 1)``.

``R`` is ``rotary_dim``; channels ``R:`` of a head are not rotated.
"""

from __future__ import annotations

import torch

__all__ = ["pair_slices", "pair_views", "pairs_to_channels", "apply_rotary_reference"]


def pair_slices(rotary_dim: int, layout: str) -> tuple[slice, slice]:
    """The channels of the first and of the second member of every pair, as slices of the last dim.

    Pair ``i`` is channels ``(first[i], second[i])``: ``(i, i + R/2)`` for ``"half"``,
    ``(2i, 2i + 1)`` for ``"interleaved"``.
    """
    if layout == "half":
        half = rotary_dim // 2
        return slice(0, half), slice(half, rotary_dim)
    return slice(0, rotary_dim, 2), slice(1, rotary_dim, 2)


def pair_views(x: torch.Tensor, rotary_dim: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two members ``(a, b)`` of every pair as views of ``x [..., D]``: each ``[..., R/2]``."""
    first, second = pair_slices(rotary_dim, layout)
    return x[..., first], x[..., second]


def pairs_to_channels(values: torch.Tensor, layout: str) -> torch.Tensor:
    """Per-pair values ``[..., R/2]`` as per-channel values ``[..., R]``: each pair's value on both
    of its channels (``[c, c]`` for ``"half"``, ``[c0, c0, c1, c1, ...]`` for ``"interleaved"``)."""
    out = values.new_empty(*values.shape[:-1], 2 * values.shape[-1])
    for channels in pair_slices(out.shape[-1], layout):
        out[..., channels] = values
    return out


def apply_rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str = "half") -> torch.Tensor:
    """Rotate the first ``R = 2 * cos.shape[-1]`` channels of ``x`` pair by pair (RoFormer eq. 34)::

        out_a = x_a * cos - x_b * sin,    out_b = x_b * cos + x_a * sin

    Args:
        x: ``[..., S, D]``, any float dtype.
        cos, sin: ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]``; ``R <= D``.
        layout: ``"half"`` or ``"interleaved"`` (see :func:`pair_slices`).

    Returns:
        A new tensor shaped and typed like ``x``: the math in ``promote(x.dtype, float32)``, one
        rounding to ``x.dtype``; channels ``R:`` passed through unchanged.
    """
    rotary_dim = 2 * cos.shape[-1]
    compute = torch.promote_types(x.dtype, torch.float32)
    a, b = (t.to(compute) for t in pair_views(x, rotary_dim, layout))
    cos, sin = cos.to(compute), sin.to(compute)
    out = x.clone()
    out_a, out_b = pair_views(out, rotary_dim, layout)
    out_a.copy_(a * cos - b * sin)
    out_b.copy_(b * cos + a * sin)
    return out
