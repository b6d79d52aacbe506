"""The functional core of RoPE: exact angles, cos/sin, and the rotation with its autograd.

RoFormer (Su et al. 2021, eq. 34) rotates pair ``i`` of a query or key at position ``m`` by the
angle ``m * theta_i``::

    out_a = x_a * cos(m theta_i) - x_b * sin(m theta_i)
    out_b = x_b * cos(m theta_i) + x_a * sin(m theta_i)

where ``(a, b) = (i, i + R/2)`` in the half-split layout and ``(2i, 2i + 1)`` in the interleaved
one. Angles are formed in float64 (``position * inv_freq`` is exact to ~1e-16 relative, so ~1e-9
rad at position 10**7) and only then rounded; the rotation runs in float32 at least and returns
the input dtype. The backward pass is the inverse rotation (the same formula with ``-sin``), so
autograd saves only cos and sin, never the activations.
"""

from __future__ import annotations

import itertools

import torch

from ropelab.config import LAYOUTS, RopeConfig
from ropelab.frequencies import rope_frequencies

__all__ = [
    "rope_angles",
    "rope_cos_sin",
    "resolve_seq_len",
    "apply_rotary",
    "rotate",
    "rotate_qk",
]

# Elements of x[..., :R] per chunk of the eager path (4 MiB in float32): a chunk stays in the L3
# cache between the passes over it, and the half-precision path's float32 scratch stays bounded.
# Smaller chunks fit L2 better but multiply the op count, and every op is a parallel region that
# stalls when another process holds a core (measured: 2**19 was 10x slower than 2**21 under load).
_CHUNK_ELEMENTS = 1 << 20


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Exact rotation angles ``position * inv_freq``.

    Args:
        positions: integer tensor of any shape ``[*P]``.
        inv_freq: ``[R/2]`` frequencies (float64 for exactness).

    Returns:
        float64 ``[*P, R/2]``. float64 holds every integer position below 2**53 exactly, so the
        only rounding is the one of the product itself.
    """
    _check_positions(positions)
    return positions.to(torch.float64).unsqueeze(-1) * inv_freq.to(device=positions.device, dtype=torch.float64)


def resolve_seq_len(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | torch.Tensor | None):
    """The sequence length the dynamic types see: ``seq_len`` if given, else ``max(positions) + 1``
    (transformers' convention). Kept a tensor so compiled graphs do not specialise on it."""
    if seq_len is not None or not cfg.is_dynamic:
        return seq_len
    return positions.max() + 1


def rope_cos_sin(
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the exact angles, scaled by the variant's attention factor.

    Args:
        positions: integer ``[*P]`` (e.g. ``[S]`` or ``[B, S]``).
        cfg: the RoPE variant.
        seq_len: current length for ``dynamic`` / ``longrope``; default ``max(positions) + 1``.
        dtype: dtype of the result (computed in float64, rounded once).

    Returns:
        ``(cos, sin)``, each ``[*P, R/2]`` of ``dtype`` on ``positions.device``.
    """
    seq_len = resolve_seq_len(cfg, positions, seq_len)
    inv_freq, attention_factor = rope_frequencies(cfg, seq_len)
    angles = rope_angles(positions, inv_freq)
    cos, sin = torch.cos(angles), torch.sin(angles)
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.to(dtype), sin.to(dtype)


def _check_positions(positions: torch.Tensor) -> None:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions={type(positions).__name__} is invalid: expected an integer torch.Tensor")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise TypeError(f"positions.dtype={positions.dtype} is invalid: expected an integer dtype")


def _pair_views(x: torch.Tensor, rotary_dim: int, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two members ``(a, b)`` of every pair as views of ``x[..., :rotary_dim]``."""
    if layout == "half":
        half = rotary_dim // 2
        return x[..., :half], x[..., half:rotary_dim]
    return x[..., 0:rotary_dim:2], x[..., 1:rotary_dim:2]


def _rotate_functional(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
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
        a, b = (t.to(compute) for t in _pair_views(x, rotary_dim, layout))
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
    about ``_CHUNK_ELEMENTS``: a range along one dim ``d`` with every dim after it whole and single
    indices before it, so a chunk of a contiguous tensor is contiguous (fast dtype conversion).
    """
    dims = shape[:-1]  # the last dim is sliced to :R by the caller
    if not dims:
        yield ()
        return
    inner = rotary_dim
    split = len(dims) - 1
    while split > 0 and inner * dims[split] <= _CHUNK_ELEMENTS:
        inner *= dims[split]
        split -= 1
    step = max(1, _CHUNK_ELEMENTS // inner)
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
            *_pair_views(out[idx], rotary_dim, layout), *_pair_views(x[idx], rotary_dim, layout), cos[idx], sin[idx]
        )


def _rotate_upcast_into(out: torch.Tensor, x: torch.Tensor, cos, sin, layout: str) -> None:
    """float16/bfloat16 rotation: each chunk is upcast into a reused float32 buffer, rotated there
    (the math in float32, one rounding at the end), and written to ``out`` in ``x.dtype``.

    Shapes as in :func:`_rotate_rows_into`; the scratch is two flat float32 buffers of at most
    ``_CHUNK_ELEMENTS`` each, reused by every chunk.
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
            _rotate_pairs_into(*_pair_views(dst, rotary_dim, layout), *_pair_views(src, rotary_dim, layout), cos[idx], sin[idx])
        out[idx][..., :rotary_dim].copy_(dst)


def _rotate_eager(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Out-of-place rotation writing straight into the output: no full-size temporaries.

    Shapes: ``x`` ``[..., S, D]``; ``cos, sin`` ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]``.
    float32/float64 inputs are rotated in their own dtype straight into the output;
    float16/bfloat16 inputs are upcast chunk by chunk (:func:`_chunk_indices`), so the float32
    scratch stays bounded (two buffers of ``_CHUNK_ELEMENTS`` floats) whatever the tensor size.
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


def _rotate_any(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Dispatch: the functional form under torch.compile, the fused Triton kernel for CUDA tensors
    (when triton is importable), the chunked eager path otherwise. Shapes as in :func:`apply_rotary`."""
    if torch.compiler.is_compiling():
        return _rotate_functional(x, cos, sin, layout)
    if x.is_cuda and _fused_available():
        from ropelab.kernels import rotate_with_tables

        out = rotate_with_tables(x, cos, sin, layout)
        if out is not None:
            return out
    return _rotate_eager(x, cos, sin, layout)


def _fused_available() -> bool:
    """True when the Triton kernel can run on CUDA here (triton imported lazily)."""
    from ropelab.kernels import triton_available

    return triton_available("cuda")


class _Rotate(torch.autograd.Function):
    """Rotation whose backward is the inverse rotation ``R(-theta) = R(theta)^T``: autograd keeps
    cos and sin (``[..., S, R/2]``), not the ``[..., S, D]`` activations."""

    @staticmethod
    def forward(ctx, x, cos, sin, layout):  # noqa: D401 (autograd signature)
        ctx.save_for_backward(cos, sin)
        ctx.layout = layout
        return _rotate_any(x, cos, sin, layout)

    @staticmethod
    def backward(ctx, grad_out):
        cos, sin = ctx.saved_tensors
        return _rotate_any(grad_out, cos, -sin, ctx.layout), None, None, None


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, layout: str = "half") -> torch.Tensor:
    """Rotate the leading ``2 * cos.shape[-1]`` channels of ``x`` (RoFormer eq. 34).

    Args:
        x: ``[..., S, D]`` (typically ``[B, H, S, D]``), float16/bfloat16/float32/float64.
        cos, sin: ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]`` (e.g. ``[B, 1, S, R/2]``),
            as from :func:`rope_cos_sin`; ``R <= D``.
        layout: ``"half"`` or ``"interleaved"``.

    Returns:
        A new tensor shaped and typed like ``x``; channels ``R:`` are copied bit for bit. The math
        runs in ``promote(x.dtype, float32)``. Differentiable in ``x`` (not in cos/sin).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid: expected one of {', '.join(LAYOUTS)}")
    if 2 * cos.shape[-1] > x.shape[-1]:
        raise ValueError(f"rotary_dim={2 * cos.shape[-1]} is invalid: expected at most head_dim={x.shape[-1]}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos.shape={tuple(cos.shape)} and sin.shape={tuple(sin.shape)} must match")
    return _Rotate.apply(x, cos, sin, layout)


def _broadcast_tables(cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor, x: torch.Tensor):
    """Insert the heads axis: positions ``[B, S]`` give tables ``[B, 1, S, R/2]``; ``[S]`` gives ``[S, R/2]``."""
    if x.dim() < 2 or positions.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"positions.shape={tuple(positions.shape)} is invalid for x.shape={tuple(x.shape)}: "
            "expected [seq] or [batch, seq] with seq == x.shape[-2]"
        )
    if positions.dim() == 2:
        if x.dim() != 4 or positions.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"positions.shape={tuple(positions.shape)} is invalid for x.shape={tuple(x.shape)}: "
                "[batch, seq] positions need x as [batch, heads, seq, head_dim]"
            )
        return cos.unsqueeze(-3), sin.unsqueeze(-3)
    if positions.dim() != 1:
        raise ValueError(f"positions.dim()={positions.dim()} is invalid: expected [seq] or [batch, seq]")
    return cos, sin


def _tables_for(x: torch.Tensor, positions: torch.Tensor, cfg: RopeConfig, seq_len):
    """cos/sin for ``x`` ``[B, H, S, D]``, in the math dtype (float32, or float64 for float64
    inputs), with the heads axis inserted: ``[B, 1, S, R/2]`` or ``[S, R/2]``."""
    cos, sin = rope_cos_sin(positions, cfg, seq_len=seq_len, dtype=torch.promote_types(x.dtype, torch.float32))
    return _broadcast_tables(cos, sin, positions, x)


def _check_head_dim(x: torch.Tensor, cfg: RopeConfig, name: str) -> None:
    if x.shape[-1] != cfg.head_dim:
        raise ValueError(f"{name}.shape[-1]={x.shape[-1]} is invalid: expected head_dim={cfg.head_dim}")


def rotate(
    x: torch.Tensor,
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    layout: str | None = None,
) -> torch.Tensor:
    """Apply RoPE to queries or keys.

    Args:
        x: ``[B, H, S, D]`` with ``D == cfg.head_dim``; fp16, bf16, fp32 or fp64.
        positions: integer ``[S]`` or ``[B, S]`` (per-row offsets for a KV cache, left padding, or
            packed sequences whose positions restart).
        cfg: the RoPE variant.
        seq_len: current length for ``dynamic`` / ``longrope``; default ``max(positions) + 1``.
        layout: ``"half"`` or ``"interleaved"``; default ``cfg.layout``.

    Returns:
        ``[B, H, S, D]`` in ``x.dtype``; the attention factor is folded into cos and sin, as in transformers.
    """
    _check_head_dim(x, cfg, "x")
    cos, sin = _tables_for(x, positions, cfg, seq_len)
    return apply_rotary(x, cos, sin, layout=layout or cfg.layout)


def rotate_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    layout: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply RoPE to queries and keys in one call, sharing one cos/sin table.

    Args:
        q: ``[B, Hq, S, D]``; k: ``[B, Hk, S, D]`` (``Hq != Hk`` for grouped-query attention).
        positions, cfg, seq_len, layout: as in :func:`rotate`.

    Returns:
        ``(q_rotated, k_rotated)`` with the shapes and dtypes of ``q`` and ``k``.
    """
    _check_head_dim(q, cfg, "q")
    _check_head_dim(k, cfg, "k")
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"q has seq={q.shape[-2]} but k has seq={k.shape[-2]}: rotate them separately")
    layout = layout or cfg.layout
    if _fused_qk_applies(q, k):
        from ropelab.kernels import rotate_qk_fused

        # One launch for q and k, angles reduced exactly in the kernel: no cos/sin table at all.
        return rotate_qk_fused(q, k, positions, cfg, seq_len=seq_len, layout=layout)
    cos, sin = _tables_for(q, positions, cfg, seq_len)
    return apply_rotary(q, cos, sin, layout=layout), apply_rotary(k, cos, sin, layout=layout)


def _fused_qk_applies(q: torch.Tensor, k: torch.Tensor) -> bool:
    """CUDA q and k of one kernel dtype, outside torch.compile, with triton importable."""
    return (
        q.is_cuda
        and k.is_cuda
        and q.dtype == k.dtype
        and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.dim() == 4
        and not torch.compiler.is_compiling()
        and _fused_available()
    )
