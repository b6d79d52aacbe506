"""Interleaved <-> half-split layouts, for activations and for q/k projection weights.

The two layouts pair the rotary channels of a head differently:

- interleaved (GPT-J, Meta's Llama checkpoints): pair ``i`` is channels ``(2i, 2i + 1)``;
- half-split (GPT-NeoX, transformers' Llama): pair ``i`` is channels ``(i, i + R/2)``.

Both rotate pair ``i`` by ``m * theta_i``, so they are the same attention up to a fixed
permutation ``P`` of each head's rotary channels: ``rotate_half(P x) = P rotate_interleaved(x)``.
Permuting the output rows of ``W_q`` and ``W_k`` (and their biases) by ``P`` therefore turns a
checkpoint of one layout into the other with identical attention scores, because
``(P a) . (P b) = a . b``. Channels past ``rotary_dim`` are not rotated and stay where they are.
"""

from __future__ import annotations

import torch

from ropelab.config import LAYOUTS

__all__ = [
    "interleaved_to_half_index",
    "half_to_interleaved_index",
    "convert_activations",
    "convert_qk_weight",
]


def interleaved_to_half_index(head_dim: int, rotary_dim: int | None = None) -> torch.Tensor:
    """Gather index ``[head_dim]``: ``half = interleaved[..., index]``.

    Half-split channel ``j < R/2`` is the first member of pair ``j`` (interleaved channel ``2j``);
    channel ``R/2 + j`` is its second member (interleaved ``2j + 1``).
    """
    rotary_dim = _check_dims(head_dim, rotary_dim)
    pairs = torch.arange(rotary_dim // 2)
    rotary = torch.cat((2 * pairs, 2 * pairs + 1))
    return torch.cat((rotary, torch.arange(rotary_dim, head_dim)))


def half_to_interleaved_index(head_dim: int, rotary_dim: int | None = None) -> torch.Tensor:
    """Gather index ``[head_dim]``: ``interleaved = half[..., index]`` (the inverse permutation)."""
    return torch.argsort(interleaved_to_half_index(head_dim, rotary_dim))


def _check_dims(head_dim: int, rotary_dim: int | None) -> int:
    rotary_dim = head_dim if rotary_dim is None else rotary_dim
    if rotary_dim <= 0 or rotary_dim % 2 or rotary_dim > head_dim:
        raise ValueError(f"rotary_dim={rotary_dim} is invalid: expected an even number in [2, head_dim={head_dim}]")
    return rotary_dim


def _index(source: str, target: str, head_dim: int, rotary_dim: int | None) -> torch.Tensor | None:
    for name, value in (("source", source), ("target", target)):
        if value not in LAYOUTS:
            raise ValueError(f"{name}={value!r} is invalid: expected one of {', '.join(LAYOUTS)}")
    if source == target:
        return None
    if source == "interleaved":
        return interleaved_to_half_index(head_dim, rotary_dim)
    return half_to_interleaved_index(head_dim, rotary_dim)


def convert_activations(x: torch.Tensor, *, source: str, target: str, rotary_dim: int | None = None) -> torch.Tensor:
    """Reorder the last axis of ``x`` ``[..., head_dim]`` from layout ``source`` to ``target``."""
    index = _index(source, target, x.shape[-1], rotary_dim)
    return x if index is None else x[..., index.to(x.device)]


def convert_qk_weight(
    weight: torch.Tensor,
    num_heads: int,
    *,
    source: str,
    target: str,
    head_dim: int | None = None,
    rotary_dim: int | None = None,
) -> torch.Tensor:
    """Reorder the output rows of a q or k projection from layout ``source`` to ``target``.

    Args:
        weight: ``[num_heads * head_dim, in_features]`` (an ``nn.Linear`` weight) or
            ``[num_heads * head_dim]`` (its bias). For grouped-query attention pass the k/v head
            count with the k projection and the query head count with the q projection.
        num_heads: heads in this projection.
        source, target: ``"half"`` or ``"interleaved"``.
        head_dim: channels per head; default ``weight.shape[0] // num_heads``.
        rotary_dim: rotated channels per head (partial rotary); default ``head_dim``.

    Returns:
        A new tensor of the same shape; converting there and back is the identity.
    """
    rows = weight.shape[0]
    head_dim = head_dim or rows // max(num_heads, 1)
    if num_heads <= 0 or num_heads * head_dim != rows:
        raise ValueError(
            f"num_heads={num_heads} is invalid for weight.shape={tuple(weight.shape)}: "
            f"expected num_heads * head_dim == {rows}"
        )
    index = _index(source, target, head_dim, rotary_dim)
    if index is None:
        return weight.clone()
    per_head = weight.reshape(num_heads, head_dim, *weight.shape[1:])
    return per_head[:, index.to(weight.device)].reshape(weight.shape).contiguous()
