"""nn.Module shells over the functional core (:mod:`ropelab.rotary`).

The modules hold a :class:`~ropelab.config.RopeConfig` and nothing else: frequencies come from
the config at each call (a few dozen float64 values, looked up in the bounded process-wide cache
of :mod:`ropelab.cache` in eager mode, recomputed under torch.compile), so there is no buffer to
initialise, move between devices, or mutate when a dynamic variant sees a new length. That keeps
them meta-device / FSDP friendly and lets ``torch.compile(fullgraph=True)`` trace every type,
dynamic NTK with varying lengths included.
"""

from __future__ import annotations

import torch
from torch import nn

from ropelab.config import RopeConfig
from ropelab.rotary import rope_cos_sin, rotate, rotate_qk

__all__ = ["RotaryEmbedding"]


class RotaryEmbedding(nn.Module):
    """Rotary position embedding for queries and keys.

    Example::

        rope = RotaryEmbedding(RopeConfig(head_dim=128, base=500000.0))
        q, k = rope(q, k, positions)          # q [B, Hq, S, 128], k [B, Hk, S, 128], positions [S] or [B, S]
    """

    def __init__(self, cfg: RopeConfig):
        super().__init__()
        if not isinstance(cfg, RopeConfig):
            raise TypeError(f"cfg={type(cfg).__name__} is invalid: expected a ropelab.RopeConfig")
        self.cfg = cfg

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        *,
        seq_len: int | torch.Tensor | None = None,
    ):
        """Rotate ``q`` (and ``k``).

        Args:
            q: ``[B, Hq, S, D]``.
            k: ``[B, Hk, S, D]`` or None.
            positions: integer ``[S]`` or ``[B, S]``; default ``arange(S)``.
            seq_len: current length for dynamic types; default ``max(positions) + 1``.

        Returns:
            The rotated ``q``, or ``(q, k)`` when ``k`` is given.
        """
        if positions is None:
            positions = torch.arange(q.shape[-2], device=q.device)
        if k is None:
            return rotate(q, positions, self.cfg, seq_len=seq_len)
        return rotate_qk(q, k, positions, self.cfg, seq_len=seq_len)

    def cos_sin(self, positions: torch.Tensor, *, seq_len=None, dtype: torch.dtype = torch.float32):
        """``(cos, sin)``, each ``[*positions.shape, R/2]``: see :func:`ropelab.rotary.rope_cos_sin`."""
        return rope_cos_sin(positions, self.cfg, seq_len=seq_len, dtype=dtype)

    def extra_repr(self) -> str:
        cfg = self.cfg
        return f"rope_type={cfg.rope_type!r}, head_dim={cfg.head_dim}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}, layout={cfg.layout!r}"
