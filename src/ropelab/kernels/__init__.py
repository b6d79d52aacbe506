"""Fused RoPE kernel (Triton), imported lazily; :func:`ropelab.reference.apply_rotary_reference` is its reference.

One launch rotates q ``[B, Hq, S, D]`` and k ``[B, Hk, S, D]`` (grouped-query attention: ``Hq != Hk``),
in either layout, for any even ``rotary_dim <= head_dim`` (channels ``R:`` copied, or left alone in
place), fp32/fp16/bf16 (math in float32), in place or out of place, with autograd (the backward
is the inverse rotation, the same kernel with ``-sin``). cos/sin come from one of
(:class:`~ropelab.kernels.modes.CosSinMode`):

- a **table** ``[B or 1, S, R/2]`` per token (what :func:`ropelab.apply_rotary` hands over);
- a **cache** ``[T, R/2]`` indexed by ``positions`` (``T * R * 4`` bytes in float32: 256 MiB for
  ``T = 2**20`` tokens at ``R = 128``);
- **nothing**: computed in the kernel from ``positions`` and the float64 ``inv_freq`` with an exact
  fixed-point reduction modulo one turn (:mod:`ropelab.kernels.angles`; error ~1e-7 rad at any
  position, where float32 ``position * inv_freq`` is off by up to 1 rad at ``2**24``).

Multi-axis RoPE (M-RoPE, axial) passes ``pair_axes`` (``[R/2]``, the position row of each pair) and
positions ``[A, B, S]``: in the cache and in-kernel modes each pair reads its own row's position.

The package sits below :mod:`ropelab.rotary`: it takes plain tensors (``inv_freq``, attention
factor, positions, cos/sin) and imports only torch, triton (lazily) and its own modules:

- :mod:`.modes`: the names of the cos/sin sources and layouts (no triton);
- :mod:`.angles`: the exact fixed-point angle reduction, in torch;
- :mod:`.launch`: the host side: argument checks, the autograd Function, :func:`rope_qk`;
- :mod:`.triton_rope`: the ``@triton.jit`` code, imported on the first launch.

:func:`ropelab.rotary.apply_rotary` (hence ``rotate``/``rotate_qk``) picks the kernel for CUDA
tensors on its own. Set ``TRITON_INTERPRET=1`` before the first call to run it on CPU tensors
through Triton's interpreter (slow; for tests).
"""

from ropelab.kernels.angles import cos_sin_fixed_point, turns_fixed_point
from ropelab.kernels.launch import interpreting, rope_qk, rotate_with_tables, triton_available
from ropelab.kernels.modes import CosSinMode

__all__ = [
    "triton_available",
    "interpreting",
    "rope_qk",
    "rotate_with_tables",
    "cos_sin_fixed_point",
    "turns_fixed_point",
    "CosSinMode",
]
