"""The eager rotation paths of :func:`ropelab.apply_rotary` (no kernel): the one-expression form that
torch.compile fuses, and the chunked CPU fast path that writes straight into its output.

Both compute what :func:`ropelab.reference.apply_rotary_reference` computes (RoFormer eq. 34), pair
by pair with the pairing of :func:`ropelab.reference.pair_views`; the tests check them against it.
"""

from __future__ import annotations

import itertools

import torch

from ropelab.reference import pair_views

__all__ = ["rotate_functional", "rotate_eager", "rotate_small_half", "rotate_small_full", "CHUNK_ELEMENTS"]

# Elements of x[..., :R] per chunk of the eager path (4 MiB in float32): a chunk stays in the L3
# cache between the passes over it, and the half-precision path's float32 scratch stays bounded.
# Smaller chunks fit L2 better but multiply the op count, and every op is a parallel region that
# stalls when another process holds a core (measured: 2**19 was 10x slower than 2**21 under load).
CHUNK_ELEMENTS = 1 << 20


def rotate_functional(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Out-of-place rotation as one expression; the form torch.compile fuses into a single loop.

    Shapes: ``x`` ``[..., S, D]``; ``cos, sin`` ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]``.
    Written so inductor neither materialises a float32 copy of the result nor a concatenation
    buffer: the half layout is ``x * cos + swap(x) * (-sin, sin)`` over the ``[2, R/2]`` view (swap
    = flip of the halves axis, pure index arithmetic); interleaved pairs are rounded to
    ``x.dtype`` before they are stacked. The math runs in ``promote(x.dtype, float32)``.
    """
    rotary_dim = 2 * cos.shape[-1]
    compute = torch.promote_types(x.dtype, torch.float32)
    if layout == "half":
        halves = x[..., :rotary_dim].unflatten(-1, (2, rotary_dim // 2)).to(compute)  # [..., S, 2, R/2]
        sign = torch.tensor([[-1.0], [1.0]], dtype=compute, device=x.device)
        rotated = halves * cos.unsqueeze(-2) + halves.flip(-2) * (sin.unsqueeze(-2) * sign)
        rotated = rotated.to(x.dtype).flatten(-2)
    else:
        a, b = (t.to(compute) for t in pair_views(x, rotary_dim, layout))
        new_a, new_b = (a * cos - b * sin).to(x.dtype), (b * cos + a * sin).to(x.dtype)
        rotated = torch.stack((new_a, new_b), dim=-1).flatten(-2)
    if rotary_dim == x.shape[-1]:
        return rotated
    return torch.cat((rotated, x[..., rotary_dim:]), dim=-1)


def _rotate_pairs_into(out_a, out_b, a, b, cos, sin) -> None:
    """``out_a = a cos - b sin``, ``out_b = b cos + a sin`` with no temporaries (all same dtype).

    Shapes: ``a, b, out_a, out_b`` ``[..., S, R/2]`` (views, any strides); ``cos, sin`` broadcastable.
    """
    torch.mul(a, cos, out=out_a)
    out_a.addcmul_(b, sin, value=-1)
    torch.mul(b, cos, out=out_b)
    out_b.addcmul_(a, sin)


def _as_complex_pairs(x: torch.Tensor, rotary_dim: int) -> torch.Tensor | None:
    """``x[..., :R]`` (interleaved pairs) viewed as complex ``[..., R/2]``, or None when the strides forbid it."""
    rot = x[..., :rotary_dim]
    if x.dtype not in (torch.float32, torch.float64) or rot.stride(-1) != 1 or rot.storage_offset() % 2:
        return None
    if any(s % 2 for s in rot.stride()[:-1]):
        return None
    return torch.view_as_complex(rot.unflatten(-1, (rotary_dim // 2, 2)))


def _chunk_indices(shape: tuple[int, ...], rotary_dim: int):
    """Index tuples that split ``x[..., :R]`` (``shape = x.shape``, ``[..., S, D]``) into chunks of
    about ``CHUNK_ELEMENTS``: a range along one dim ``d`` with every dim after it whole and single
    indices before it, so a chunk of a contiguous tensor is contiguous (fast dtype conversion).
    """
    dims = shape[:-1]  # the last dim is sliced to :R by the caller
    if not dims:
        yield ()
        return
    inner = rotary_dim
    split = len(dims) - 1
    while split > 0 and inner * dims[split] <= CHUNK_ELEMENTS:
        inner *= dims[split]
        split -= 1
    step = max(1, CHUNK_ELEMENTS // inner)
    for outer in itertools.product(*(range(n) for n in dims[:split])):
        for start in range(0, dims[split], step):
            yield (*outer, slice(start, min(dims[split], start + step)))


def _rotate_rows_into(out: torch.Tensor, x: torch.Tensor, cos, sin, layout: str) -> None:
    """Rotate ``x[..., :R]`` into ``out[..., :R]`` (same dtype, float32 or float64).

    Shapes: ``x, out`` ``[..., S, D]``; ``cos, sin`` ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]``.
    Interleaved pairs take one complex multiply (one pass over memory; the table ``cos + i sin`` is
    table-sized); the half layout takes four passes per chunk, and a chunk small enough for the
    cache makes those four passes cost about one trip to DRAM.
    """
    rotary_dim = 2 * cos.shape[-1]
    if layout == "interleaved":
        x_c, out_c = _as_complex_pairs(x, rotary_dim), _as_complex_pairs(out, rotary_dim)
        if x_c is not None and out_c is not None:
            torch.mul(x_c, torch.complex(cos, sin), out=out_c)
            return
    half_shape = (*x.shape[:-1], cos.shape[-1])
    cos, sin = cos.expand(half_shape), sin.expand(half_shape)  # views: stride 0 where broadcast
    for idx in _chunk_indices(tuple(x.shape), rotary_dim):
        _rotate_pairs_into(
            *pair_views(out[idx], rotary_dim, layout), *pair_views(x[idx], rotary_dim, layout), cos[idx], sin[idx]
        )


def _rotate_upcast_into(out: torch.Tensor, x: torch.Tensor, cos, sin, layout: str) -> None:
    """float16/bfloat16 rotation: each chunk is upcast into a reused float32 buffer, rotated there
    (the math in float32, one rounding at the end), and written to ``out`` in ``x.dtype``.

    Shapes as in :func:`_rotate_rows_into`; the scratch is two flat float32 buffers of at most
    ``CHUNK_ELEMENTS`` each, reused by every chunk.
    """
    rotary_dim = 2 * cos.shape[-1]
    chunks = list(_chunk_indices(tuple(x.shape), rotary_dim))
    size = max(x[idx][..., :rotary_dim].numel() for idx in chunks)
    buffers = torch.empty(2, size, dtype=cos.dtype, device=x.device)
    half_shape = (*x.shape[:-1], cos.shape[-1])
    cis = torch.complex(cos, sin).expand(half_shape) if layout == "interleaved" else None
    cos, sin = cos.expand(half_shape), sin.expand(half_shape)
    for idx in chunks:
        x_rows = x[idx][..., :rotary_dim]
        n, shape = x_rows.numel(), x_rows.shape
        src, dst = buffers[0, :n].view(shape), buffers[1, :n].view(shape)
        src.copy_(x_rows)
        if cis is not None:
            torch.mul(_as_complex_pairs(src, rotary_dim), cis[idx], out=_as_complex_pairs(dst, rotary_dim))
        else:
            _rotate_pairs_into(
                *pair_views(dst, rotary_dim, layout), *pair_views(src, rotary_dim, layout), cos[idx], sin[idx]
            )
        out[idx][..., :rotary_dim].copy_(dst)


def rotate_eager(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Out-of-place rotation writing straight into the output: no full-size temporaries.

    Shapes: ``x`` ``[..., S, D]``; ``cos, sin`` ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]``.
    float32/float64 inputs are rotated in their own dtype straight into the output;
    float16/bfloat16 inputs are upcast chunk by chunk (:func:`_chunk_indices`), so the float32
    scratch stays bounded (two buffers of ``CHUNK_ELEMENTS`` floats) whatever the tensor size.
    """
    rotary_dim = 2 * cos.shape[-1]
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if rotary_dim < x.shape[-1]:
        out[..., rotary_dim:].copy_(x[..., rotary_dim:])  # pass-through channels, bit-identical
    if rotary_dim == 0 or x.numel() == 0:
        return out
    compute = torch.promote_types(x.dtype, torch.float32)
    cos, sin = cos.to(compute), sin.to(compute)
    if x.dtype == compute:
        _rotate_rows_into(out, x, cos, sin, layout)
    else:
        _rotate_upcast_into(out, x, cos, sin, layout)
    return out


def rotate_small_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The half layout for CPU inputs of at most one eager chunk (decode), from plain tables: they
    are put in the full form ``(cos, cos)``, ``(-sin, sin)`` (exact) and rotated by
    :func:`rotate_small_full`, in a handful of ops instead of
    :func:`rotate_eager`'s per-chunk views.

    Shapes: ``x`` ``[..., S, D]``; ``cos, sin`` broadcastable against ``x[..., :R/2]``. Returns a
    contiguous tensor like ``x``; channels ``R:`` copied; math in ``promote(x.dtype, float32)``.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    if cos.dtype != compute:
        cos, sin = cos.to(compute), sin.to(compute)
    return rotate_small_full(x, torch.cat((cos, cos), -1), torch.cat((-sin, sin), -1))


def rotate_small_full(x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor) -> torch.Tensor:
    """The half layout from full tables (:class:`ropelab.cache.RowWindow`) in three ops:
    ``out = x * cos_full + roll(x, R/2) * sin_full``, i.e. ``a cos + b (-sin)`` and ``b cos + a
    sin`` for the halves ``a, b`` of ``x[..., :R]``: the products and the order of
    :func:`rotate_eager` (``mul`` then ``addcmul``; the sign flip is exact),
    so the same bits. CPU only (no kernel dispatch).

    Shapes: ``x`` ``[..., S, D]``; ``cos_full, sin_full`` ``[..., S, R]`` (or ``[R]``)
    broadcastable against ``x[..., :R]``, in ``promote(x.dtype, float32)``. Returns a contiguous
    tensor like ``x``; channels ``R:`` copied.
    """
    rotary_dim, head_dim = cos_full.shape[-1], x.shape[-1]
    compute = cos_full.dtype
    if rotary_dim == head_dim and x.dtype == compute and x.is_contiguous():  # decode, full rotation
        out = x * cos_full  # contiguous, like x
        out.addcmul_(x.roll(rotary_dim // 2, -1), sin_full)
        return out
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    src = x
    if rotary_dim < head_dim:
        out.narrow(-1, rotary_dim, head_dim - rotary_dim).copy_(x.narrow(-1, rotary_dim, head_dim - rotary_dim))
        src = x.narrow(-1, 0, rotary_dim)
    src = src.to(compute)
    rot = src * cos_full
    rot.addcmul_(src.roll(rotary_dim // 2, -1), sin_full)
    out.narrow(-1, 0, rotary_dim).copy_(rot)  # the one rounding to x.dtype, if any
    return out
