"""The fused RoPE kernel in Triton: one launch rotates q and k.

Grid ``(B * S, ceil(Hq / BLOCK_H) + ceil(Hk / BLOCK_H))``: program ``(row, j)`` takes token
``row = b * S + s`` and a block of ``BLOCK_H`` heads, of q while ``j`` is below q's block count and
of k after. It gets the ``R/2`` cos/sin values of its token once (from a table, from a cache
indexed by the token's position, or computed from the position, see :mod:`ropelab.kernels.angles`;
multi-axis RoPE: each pair takes the position of its own axis, ``positions[axes[i], b, s]``)
and rotates ``[BLOCK_H, R/2]`` pairs in float32, storing in the tensor's dtype. Each element of q
and k is read once and written once; channels ``R:`` are copied (or left alone in place).

Imported lazily: nothing here runs unless triton is installed.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ropelab.kernels import angles
from ropelab.kernels.modes import CosSinMode

# Module-level values a @triton.jit function reads must be tl.constexpr.
MODE_TABLE = tl.constexpr(int(CosSinMode.TABLE))  # cos/sin [B', S, R/2] rows addressed by (b, s)
MODE_CACHE = tl.constexpr(int(CosSinMode.CACHE))  # cos/sin cache [T, R/2] rows addressed by positions[b, s]
MODE_ANGLES = tl.constexpr(int(CosSinMode.ANGLES))  # from positions[b, s] and fixed-point turns [R/2]
RADIANS_PER_UNIT = tl.constexpr(angles.RADIANS_PER_UNIT)


@triton.jit
def _quadrant_rotate(cos_r, sin_r, quadrant):
    odd = (quadrant & 1) == 1
    cos_q = tl.where(odd, -sin_r, cos_r)
    sin_q = tl.where(odd, cos_r, sin_r)
    flip = quadrant >= 2
    return tl.where(flip, -cos_q, cos_q), tl.where(flip, -sin_q, sin_q)


@triton.jit
def _cos_sin(
    cos_ptr,
    sin_ptr,
    pos_ptr,
    turns_ptr,
    axes_ptr,
    b,
    s,
    c_sb,
    c_ss,
    p_sa,
    p_sb,
    p_ss,
    pairs,
    pmask,
    MODE: tl.constexpr,
    MULTI_AXIS: tl.constexpr,
):
    """float32 cos/sin ``[BLOCK_P]`` of token ``(b, s)``; ``MODE`` is one of ``MODE_TABLE``,
    ``MODE_CACHE``, ``MODE_ANGLES``. ``MULTI_AXIS``: pair ``i`` reads position row ``axes[i]``."""
    if MODE == MODE_TABLE:
        row = b.to(tl.int64) * c_sb + s.to(tl.int64) * c_ss
        cos = tl.load(cos_ptr + row + pairs, mask=pmask, other=1.0).to(tl.float32)
        sin = tl.load(sin_ptr + row + pairs, mask=pmask, other=0.0).to(tl.float32)
    else:
        token = b.to(tl.int64) * p_sb + s.to(tl.int64) * p_ss
        if MULTI_AXIS:  # one position per pair: [BLOCK_P]
            axis = tl.load(axes_ptr + pairs, mask=pmask, other=0).to(tl.int64)
            pos = tl.load(pos_ptr + axis * p_sa + token, mask=pmask, other=0).to(tl.int64)
        else:  # one position per token
            pos = tl.load(pos_ptr + token).to(tl.int64)
        if MODE == MODE_CACHE:
            row = pos * c_ss
            cos = tl.load(cos_ptr + row + pairs, mask=pmask, other=1.0).to(tl.float32)
            sin = tl.load(sin_ptr + row + pairs, mask=pmask, other=0.0).to(tl.float32)
        else:  # MODE_ANGLES
            turns = tl.load(turns_ptr + pairs, mask=pmask, other=0)
            u = pos * turns + (1 << 61)  # wraps mod 2**64: the exact reduction modulo one turn
            quadrant = (u >> 62) & 3
            rem = (u & ((1 << 62) - 1)) - (1 << 61)
            r = rem.to(tl.float32) * RADIANS_PER_UNIT
            cos, sin = _quadrant_rotate(tl.cos(r), tl.sin(r), quadrant)
    return cos, sin


@triton.jit
def _rotate_block(
    x_ptr,
    o_ptr,
    x_off,
    o_off,
    hmask,
    cos,
    sin,
    pairs,
    pmask,
    HALF: tl.constexpr,
    BLOCK_P: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    REST_BLOCK: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    COPY_REST: tl.constexpr,
):
    """Rotate heads ``[BLOCK_H]`` of one token; ``x_off``/``o_off`` are ``[BLOCK_H, 1]`` row offsets."""
    m = hmask[:, None] & pmask[None, :]
    c = cos[None, :]
    sn = sin[None, :]
    if INTERLEAVED:
        cols = tl.arange(0, 2 * BLOCK_P)
        cmask = hmask[:, None] & (cols < 2 * HALF)[None, :]
        row = tl.load(x_ptr + x_off + cols[None, :], mask=cmask, other=0.0)
        a, bb = tl.split(tl.reshape(row, (row.shape[0], BLOCK_P, 2)))
        a = a.to(tl.float32)
        bb = bb.to(tl.float32)
        out = tl.join(a * c - bb * sn, bb * c + a * sn)
        out = tl.reshape(out, (row.shape[0], 2 * BLOCK_P))
        tl.store(o_ptr + o_off + cols[None, :], out.to(o_ptr.dtype.element_ty), mask=cmask)
    else:
        a = tl.load(x_ptr + x_off + pairs[None, :], mask=m, other=0.0).to(tl.float32)
        bb = tl.load(x_ptr + x_off + HALF + pairs[None, :], mask=m, other=0.0).to(tl.float32)
        tl.store(o_ptr + o_off + pairs[None, :], (a * c - bb * sn).to(o_ptr.dtype.element_ty), mask=m)
        tl.store(o_ptr + o_off + HALF + pairs[None, :], (bb * c + a * sn).to(o_ptr.dtype.element_ty), mask=m)
    if COPY_REST:
        rest = 2 * HALF + tl.arange(0, REST_BLOCK)
        rmask = hmask[:, None] & (rest < HEAD_DIM)[None, :]
        tail = tl.load(x_ptr + x_off + rest[None, :], mask=rmask)
        tl.store(o_ptr + o_off + rest[None, :], tail, mask=rmask)


@triton.jit
def rope_qk_kernel(
    q_ptr,
    k_ptr,
    qo_ptr,
    ko_ptr,
    cos_ptr,
    sin_ptr,
    pos_ptr,
    turns_ptr,
    axes_ptr,
    S,
    HQ,
    HK,
    q_sb,
    q_sh,
    q_ss,
    k_sb,
    k_sh,
    k_ss,
    qo_sb,
    qo_sh,
    qo_ss,
    ko_sb,
    ko_sh,
    ko_ss,
    c_sb,
    c_ss,
    p_sa,
    p_sb,
    p_ss,
    scale,
    sign,
    HALF: tl.constexpr,
    BLOCK_P: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    REST_BLOCK: tl.constexpr,
    BLOCK_H: tl.constexpr,
    INTERLEAVED: tl.constexpr,
    COPY_REST: tl.constexpr,
    MODE: tl.constexpr,
    MULTI_AXIS: tl.constexpr,
):
    """Rotate q ``[B, Hq, S, D]`` and k ``[B, Hk, S, D]`` (strided, last dim contiguous) by the
    angles of their tokens; ``sign = -1`` gives the inverse rotation (the backward pass)."""
    row = tl.program_id(0)
    blk = tl.program_id(1)
    b = row // S
    s = row % S
    pairs = tl.arange(0, BLOCK_P)
    pmask = pairs < HALF
    cos, sin = _cos_sin(
        cos_ptr,
        sin_ptr,
        pos_ptr,
        turns_ptr,
        axes_ptr,
        b,
        s,
        c_sb,
        c_ss,
        p_sa,
        p_sb,
        p_ss,
        pairs,
        pmask,
        MODE,
        MULTI_AXIS,
    )
    cos = cos * scale
    sin = sin * (scale * sign)
    q_blocks = (
        HQ + BLOCK_H - 1
    ) // BLOCK_H  # not tl.cdiv: the interpreter cannot call stdlib @jit helpers decorated before it was enabled
    heads = tl.arange(0, BLOCK_H)
    if blk < q_blocks:
        h = (blk * BLOCK_H + heads).to(tl.int64)
        x_off = (b.to(tl.int64) * q_sb + s.to(tl.int64) * q_ss + h * q_sh)[:, None]
        o_off = (b.to(tl.int64) * qo_sb + s.to(tl.int64) * qo_ss + h * qo_sh)[:, None]
        _rotate_block(
            q_ptr,
            qo_ptr,
            x_off,
            o_off,
            h < HQ,
            cos,
            sin,
            pairs,
            pmask,
            HALF,
            BLOCK_P,
            HEAD_DIM,
            REST_BLOCK,
            INTERLEAVED,
            COPY_REST,
        )
    else:
        h = ((blk - q_blocks) * BLOCK_H + heads).to(tl.int64)
        x_off = (b.to(tl.int64) * k_sb + s.to(tl.int64) * k_ss + h * k_sh)[:, None]
        o_off = (b.to(tl.int64) * ko_sb + s.to(tl.int64) * ko_ss + h * ko_sh)[:, None]
        _rotate_block(
            k_ptr,
            ko_ptr,
            x_off,
            o_off,
            h < HK,
            cos,
            sin,
            pairs,
            pmask,
            HALF,
            BLOCK_P,
            HEAD_DIM,
            REST_BLOCK,
            INTERLEAVED,
            COPY_REST,
        )


def launch(
    q,
    k,
    q_out,
    k_out,
    cos,
    sin,
    positions,
    turns,
    axes,
    *,
    strides,
    half,
    layout,
    mode,
    scale,
    sign,
    copy_rest,
    multi_axis=False,
):
    """Launch :func:`rope_qk_kernel` on 4-D views (see :mod:`ropelab.kernels.launch` for the checks).

    Args:
        q, k, q_out, k_out: ``[B, Hq, S, D]`` / ``[B, Hk, S, D]``, last dim contiguous (outputs may
            be the inputs: in place).
        cos, sin: table (``CosSinMode.TABLE``/``CACHE``) or any tensor (``ANGLES``, unused).
        positions: integer ``[B', S]`` view (``CACHE``/``ANGLES``), ``[A, B', S]`` with axes, or any tensor.
        turns: int64 ``[R/2]`` (``ANGLES``) or any tensor.
        axes: int32 ``[R/2]`` position row of each pair (read only with ``multi_axis``), or any tensor.
        mode: ``int(CosSinMode)``.
        strides: ``(c_sb, c_ss, p_sa, p_sb, p_ss)`` in elements.
    """
    batch, hq, seq, head_dim = q.shape
    hk = k.shape[1]
    rows = batch * seq
    block_h = min(triton.next_power_of_2(max(hq, hk, 1)), 8 if rows >= 256 else 2)
    grid = (rows, triton.cdiv(hq, block_h) + triton.cdiv(hk, block_h))
    if rows == 0 or grid[1] == 0:
        return
    rest = head_dim - 2 * half
    rope_qk_kernel[grid](
        q,
        k,
        q_out,
        k_out,
        cos,
        sin,
        positions,
        turns,
        axes,
        seq,
        hq,
        hk,
        *q.stride()[:3],
        *k.stride()[:3],
        *q_out.stride()[:3],
        *k_out.stride()[:3],
        *strides,
        float(scale),
        float(sign),
        HALF=half,
        BLOCK_P=triton.next_power_of_2(max(half, 1)),
        HEAD_DIM=head_dim,
        REST_BLOCK=triton.next_power_of_2(max(rest, 1)),
        BLOCK_H=block_h,
        INTERLEAVED=layout == "interleaved",
        COPY_REST=copy_rest and rest > 0,
        MODE=mode,
        MULTI_AXIS=multi_axis,
        num_warps=4 if block_h * half >= 256 else 1,
    )
