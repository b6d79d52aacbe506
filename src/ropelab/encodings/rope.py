"""RoPE (Su et al. 2021, RoFormer) behind the encoding interface: any :class:`RopeConfig`."""

from __future__ import annotations

import torch

from ropelab.config import RopeConfig
from ropelab.encodings.base import PositionEncoding
from ropelab.rotary import rotate_qk

__all__ = ["RopeEncoding"]


class RopeEncoding(PositionEncoding):
    """Rotate q and k by ``position * theta_i`` (RoFormer eq. 34) with the exact core of :mod:`ropelab.rotary`.

    ``cfg`` may be any variant (linear, ntk, dynamic, yarn, llama3, longrope): that is how the lab
    extends a trained model, by swapping the config and keeping the weights.

    Args:
        cfg: the RoPE variant; ``cfg.head_dim`` must equal the model's head width.
    """

    name = "rope"

    def __init__(self, cfg: RopeConfig):
        super().__init__()
        self.cfg = cfg

    def transform_qk(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor):
        """q, k ``[B, H, S, Dh]``, positions ``[S]`` or ``[B, S]`` -> rotated ``(q, k)``."""
        return rotate_qk(q, k, positions, self.cfg)

    def describe(self) -> dict:
        return {"rope": self.cfg.to_hf()}
