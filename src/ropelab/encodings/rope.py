"""RoPE (Su et al. 2021, RoFormer) behind the encoding interface: any :class:`~ropelab.config.RopeConfig`."""

from __future__ import annotations

import torch

from ropelab.config import RopeConfig
from ropelab.encodings.base import EncodingError, PositionEncoding
from ropelab.rotary import rotate_qk

__all__ = ["RopeEncoding", "rope_for_model"]


def rope_for_model(rope: RopeConfig | dict | None, head_dim: int, max_positions: int) -> RopeConfig:
    """The RoPE of a model with heads of width ``head_dim`` trained at ``max_positions``.

    Args:
        rope: a :class:`RopeConfig`, its ``to_hf()`` dict, or ``None`` for plain RoPE (base 10000,
            whole head).

    Raises:
        EncodingError: ``rope.head_dim`` is not ``head_dim``.
    """
    if isinstance(rope, dict):
        rope = RopeConfig.from_hf(rope)
    cfg = rope or RopeConfig(head_dim=head_dim, max_position_embeddings=max_positions)
    if cfg.head_dim != head_dim:
        raise EncodingError(f"rope head_dim={cfg.head_dim} is invalid: expected dim // num_heads = {head_dim}")
    return cfg


class RopeEncoding(PositionEncoding):
    """Rotate q and k by ``position * theta_i`` (RoFormer eq. 34) with the exact core of :mod:`ropelab.rotary`.

    ``cfg`` may be any variant (linear, ntk, dynamic, yarn, llama3, longrope): that is how the lab
    extends a trained model, by swapping the config and keeping the weights.

    Args:
        cfg: the RoPE variant; ``cfg.head_dim`` must equal the model's head width.
    """

    name = "rope"
    options = ("rope",)

    @classmethod
    def from_model(cls, *, dim: int, num_heads: int, max_positions: int, rope=None) -> RopeEncoding:
        return cls(rope_for_model(rope, dim // num_heads, max_positions))

    def __init__(self, cfg: RopeConfig):
        super().__init__()
        self.cfg = cfg

    def transform_qk(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor):
        """q, k ``[B, H, S, Dh]``, positions ``[S]`` or ``[B, S]`` -> rotated ``(q, k)``."""
        return rotate_qk(q, k, positions, self.cfg)

    def describe(self) -> dict:
        return {"rope": self.cfg.to_hf()}
