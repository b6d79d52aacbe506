"""NoPE: no position encoding at all (Kazemnejad et al. 2023); causal masking alone leaks order."""

from __future__ import annotations

from ropelab.encodings.base import PositionEncoding

__all__ = ["NoPositionEncoding"]


class NoPositionEncoding(PositionEncoding):
    """Every hook is the identity: the causal mask is the only source of order."""

    name = "nope"
