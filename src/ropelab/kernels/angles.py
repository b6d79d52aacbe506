"""Exact angle reduction for cos/sin computed from positions in fixed point (no cache needed).

The angle of pair ``i`` at position ``p`` is ``theta = p * f_i`` with ``f_i`` the float64
``inv_freq``. Its value modulo one turn (``2 pi``) is all that cos/sin need, so each frequency is
stored once as a 64-bit fixed-point fraction of a turn::

    F_i = round(f_i / (2 pi) * 2**64) mod 2**64            (computed on the host, 256-bit exact)

and the kernel forms ``T = p * F_i mod 2**64`` with one wrapping int64 multiply: the integer part
of ``p * f_i / (2 pi)`` falls off the top for free, so the reduction is exact for every int64
position. ``T`` is split into a quadrant ``q = round(T / 2**62) mod 4`` and a remainder
``r in [-1/8, 1/8)`` turn, and ``cos/sin(theta) = rot(q pi/2) (cos r, sin r)`` with ``|r| <= pi/4``.

Error bound of the angle against the real ``p * f_i`` (``f_i`` taken as exact), in radians::

    |p| * 2**-65 * 2 pi          rounding of F_i           (3.7e-10 at p = 2**31; 2.9e-12 at 2**24)
  + 3 * 2**-24 * pi / 4          int64 -> float32 of r, the float32 scale, the product (1.4e-7 worst,
                                 ~3e-8 typical)

then float32 cos/sin of ``|r| <= pi/4`` (a few ulp). It does not grow with the position: at
``p = 2**24`` float32 ``p * f`` is off by up to 1 rad, this by ~1e-7. The float64 reference
``fl64(p * f)`` itself carries up to ``ulp(p f) / 2`` (1.9e-9 rad at ``p = 2**24, f = 1``).

:func:`turns_fixed_point` builds ``F`` and :func:`cos_sin_fixed_point` is the same arithmetic in
torch (the reference of the Triton kernel's in-kernel mode, and usable on any device).
"""

from __future__ import annotations

import functools

import torch

__all__ = ["turns_fixed_point", "cos_sin_fixed_point", "TURN_BITS"]

TURN_BITS = 64
_QUARTER_SHIFT = TURN_BITS - 2  # T >> 62 is the quadrant
_HALF_QUADRANT = 1 << (_QUARTER_SHIFT - 1)  # 2**61: an eighth of a turn
_QUADRANT_MASK = (1 << _QUARTER_SHIFT) - 1
# 2 pi / 2**64: radians per unit of T (a normal float32, 3.406e-19).
RADIANS_PER_UNIT = 6.283185307179586 / 2.0**TURN_BITS


@functools.lru_cache(maxsize=64)
def _turns_tuple(inv_freq: tuple[float, ...]) -> tuple[int, ...]:
    import mpmath  # a dependency of sympy, hence of torch

    with mpmath.workprec(256):
        scale = mpmath.mpf(2) ** TURN_BITS / (2 * mpmath.pi)
        turns = [int(mpmath.nint(mpmath.mpf(f) * scale)) % (1 << TURN_BITS) for f in inv_freq]
    return tuple(t - (1 << TURN_BITS) if t >= 1 << (TURN_BITS - 1) else t for t in turns)


def turns_fixed_point(inv_freq: torch.Tensor) -> torch.Tensor:
    """Frequencies as 64-bit fixed-point turns.

    Args:
        inv_freq: ``[R/2]`` frequencies in radians per position (float64 for exactness).

    Returns:
        int64 ``[R/2]`` on ``inv_freq.device``: ``round(inv_freq / (2 pi) * 2**64)`` wrapped to the
        signed range (two's complement of the value mod 2**64). The float64 values are read exactly
        and divided by 2 pi at 256 bits, so the only error is the final rounding (2**-65 turn).
    """
    values = _turns_tuple(tuple(inv_freq.detach().to("cpu", torch.float64).tolist()))
    return torch.tensor(values, dtype=torch.int64, device=inv_freq.device)


def _quadrant_rotate(cos_r: torch.Tensor, sin_r: torch.Tensor, quadrant: torch.Tensor):
    """``(cos, sin)`` of ``r + quadrant * pi / 2`` from those of ``r`` (exact: swaps and signs)."""
    cos_out = torch.where(quadrant % 2 == 0, cos_r, -sin_r)
    sin_out = torch.where(quadrant % 2 == 0, sin_r, cos_r)
    flip = quadrant >= 2
    return torch.where(flip, -cos_out, cos_out), torch.where(flip, -sin_out, sin_out)


def cos_sin_fixed_point(positions: torch.Tensor, turns: torch.Tensor, scale: float = 1.0):
    """cos/sin from positions and fixed-point frequencies, exactly as the Triton kernel does it.

    Args:
        positions: integer ``[*P]``.
        turns: int64 ``[R/2]`` from :func:`turns_fixed_point`.
        scale: the attention factor folded into both.

    Returns:
        float32 ``(cos, sin)``, each ``[*P, R/2]``.
    """
    t = positions.to(torch.int64).unsqueeze(-1) * turns  # wraps mod 2**64: the exact reduction
    u = t + _HALF_QUADRANT
    quadrant = (u >> _QUARTER_SHIFT) & 3
    rem = (u & _QUADRANT_MASK) - _HALF_QUADRANT  # [-2**61, 2**61): at most an eighth of a turn
    r = rem.to(torch.float32) * RADIANS_PER_UNIT
    cos, sin = _quadrant_rotate(torch.cos(r), torch.sin(r), quadrant)
    return cos * scale, sin * scale
