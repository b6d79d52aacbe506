"""Names shared by the host side and the Triton code of the kernel (no triton import here).

:class:`CosSinMode` says where the kernel gets cos/sin from; the host passes ``int(mode)`` as the
``tl.constexpr`` ``MODE`` of :func:`ropelab.kernels.triton_rope.rope_qk_kernel`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CosSinMode", "LAYOUTS"]

# The layout names of ropelab.config.LAYOUTS, restated so the kernels import nothing above them
# (tests/test_layering.py checks that the two agree).
LAYOUTS = ("half", "interleaved")


class CosSinMode(IntEnum):
    """Where cos/sin come from, per token ``(b, s)``."""

    TABLE = 0  # a table [B', S, R/2], row (b, s) (what apply_rotary hands over)
    CACHE = 1  # a cache [T, R/2], row positions[b, s]
    ANGLES = 2  # computed in the kernel from positions[b, s] and fixed-point turns [R/2]
