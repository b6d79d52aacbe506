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

Per-call overhead (decode: one token, a handful of numbers) is cut by :mod:`ropelab.cache`, a
bounded LRU of the float64 frequencies per (config, resolved length) and of cos/sin rows per
(frequencies, device, dtype), each row computed by the uncached formula from the exact integer
position: cached and uncached results are bitwise equal. The cache is bypassed under
torch.compile and for positions off the CPU (reading them would sync the device). Inference calls
(no grad needed) skip the autograd Function.

Layering: this module computes the frequencies once (:mod:`ropelab.frequencies`) and hands plain
tensors down, to the eager paths (:mod:`ropelab.rotary_eager`) or to the fused kernel
(:mod:`ropelab.kernels`, which imports nothing above it). :mod:`ropelab.reference` holds the plain
torch rotation that both are tested against.
"""

from __future__ import annotations

import threading

import torch

from ropelab import cache as _cache
from ropelab.cache import RowWindow, cache_info, clear_cache, set_cache_limit
from ropelab.config import LAYOUTS, RopeConfig
from ropelab.frequencies import rope_frequencies
from ropelab.kernels import rope_qk, rotate_with_tables, triton_available
from ropelab.rotary_eager import CHUNK_ELEMENTS, rotate_eager, rotate_functional

__all__ = [
    "rope_angles",
    "rope_cos_sin",
    "resolve_seq_len",
    "apply_rotary",
    "rotate",
    "rotate_qk",
    "rotate_qk_fused",
    "cos_sin_cache",
    "cache_info",
    "clear_cache",
    "set_cache_limit",
]


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


def _frequency_key(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | torch.Tensor | None):
    """The cache key of the frequencies: the config and the part of the length that changes them.

    ``None`` for static types; for ``dynamic`` the clamped length ``max(seq_len,
    max_position_embeddings)`` (one-to-one with the effective NTK scale), tagged with whether the
    length is a tensor or an int (the two are computed by different float64 code paths, so they
    are cached apart to stay bitwise equal to the uncached call); for ``longrope`` whether the
    length exceeds the original context. Returns None (do not cache) where reading the length
    would sync a device or trace a graph.
    """
    if not cfg.is_dynamic:
        return ("freq", cfg, None)
    if seq_len is None:
        if not positions.is_cpu or positions.numel() == 0:
            return None
        length: int | float = int(positions.max()) + 1
        form = "tensor"
    elif isinstance(seq_len, torch.Tensor):
        if not seq_len.is_cpu or seq_len.numel() != 1:
            return None
        length, form = (float(seq_len) if seq_len.dtype.is_floating_point else int(seq_len)), "tensor"
    else:
        length, form = int(seq_len), "int"
    if cfg.rope_type == "dynamic":
        return ("freq", cfg, ("dynamic", max(length, cfg.max_position_embeddings), form))
    return ("freq", cfg, ("longrope", int(length) > cfg.original_max_position_embeddings))


def _cache_key(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | torch.Tensor | None):
    """:func:`_frequency_key`, or None when tracing (torch.compile) or when the cache is off."""
    if torch.compiler.is_compiling() or not _cache.enabled():
        return None
    return _frequency_key(cfg, positions, seq_len)


def _frequencies_for(cfg: RopeConfig, positions: torch.Tensor, seq_len, key):
    """``(inv_freq [R/2] float64, attention_factor)``, from the cache under ``key`` unless it is None."""
    found = _cache.get(key) if key is not None else None
    if found is None:
        found = rope_frequencies(cfg, resolve_seq_len(cfg, positions, seq_len))
        if key is not None:
            _cache.put(key, found)
    return found


def _frequencies(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | torch.Tensor | None):
    """``(inv_freq [R/2] float64, attention_factor)`` at the length the dynamic types see (cached;
    callers must not modify ``inv_freq`` in place)."""
    return _frequencies_for(cfg, positions, seq_len, _cache_key(cfg, positions, seq_len))


def _cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor, dtype: torch.dtype):
    """cos/sin ``[*P, R/2]`` of the exact angles ``positions * inv_freq``, times the attention factor,
    computed in float64 and rounded once to ``dtype``."""
    angles = rope_angles(positions, inv_freq)
    cos, sin = torch.cos(angles), torch.sin(angles)
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.to(dtype), sin.to(dtype)


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
    cos, sin, _ = _rows(positions, cfg, seq_len, dtype, paired=False)
    return cos, sin


# A window grows by its own size (doubling) but by at most this many rows at once, so a decode
# step that crosses the end of a long window computes a bounded number of new rows.
_MAX_GROWTH_ROWS = 4096


def _window_bounds(old: RowWindow | None, need_lo: int, need_hi: int, cap: int) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of the window to hold: covers ``[need_lo, need_hi)`` (at most
    ``cap`` rows, checked by the caller), aligned to :data:`ropelab.cache.ROW_ALIGN`, grown
    geometrically away from ``old`` and keeping its rows when the bound allows."""
    align = _cache.ROW_ALIGN
    lo, hi = need_lo // align * align, -(-need_hi // align) * align
    if old is not None:
        step = min(max(old.hi - old.lo, align), _MAX_GROWTH_ROWS)
        grown_lo = min(lo, old.lo - step) if need_lo < old.lo else old.lo
        grown_hi = max(hi, old.hi + step) if need_hi > old.hi else old.hi
        if grown_hi - grown_lo <= cap:
            lo, hi = grown_lo, grown_hi
        elif max(hi, old.hi) - min(lo, old.lo) <= cap:
            lo, hi = min(lo, old.lo), max(hi, old.hi)
    if hi - lo > cap:
        lo, hi = need_lo, need_hi
    return lo, hi


def _build_window(old: RowWindow | None, lo: int, hi: int, inv_freq, attention_factor, dtype, device) -> RowWindow:
    """cos/sin rows for positions ``[lo, hi)``: rows ``old`` already holds are copied, the others
    computed by :func:`_cos_sin` from exact integer positions."""
    def computed(a: int, b: int):
        return _cos_sin(torch.arange(a, b, device=device), inv_freq, attention_factor, dtype)

    def paired(cos: torch.Tensor, sin: torch.Tensor):
        return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)

    if old is None or old.hi <= lo or hi <= old.lo:
        return RowWindow(lo, *paired(*computed(lo, hi)))
    keep_lo, keep_hi = max(lo, old.lo), min(hi, old.hi)
    parts = [(old.cos_full[keep_lo - old.lo:keep_hi - old.lo], old.sin_full[keep_lo - old.lo:keep_hi - old.lo])]
    if lo < keep_lo:
        parts.insert(0, paired(*computed(lo, keep_lo)))
    if keep_hi < hi:
        parts.append(paired(*computed(keep_hi, hi)))
    return RowWindow(lo, torch.cat([c for c, _ in parts]), torch.cat([s for _, s in parts]))


def _length_specific(key: tuple, cfg: RopeConfig) -> bool:
    """True for dynamic NTK past the trained length: every new length has new frequencies, so a
    decode step never reuses the rows of the previous one (only the layers of the same step do)."""
    resolved = key[2]
    return resolved is not None and resolved[0] == "dynamic" and resolved[1] > cfg.max_position_embeddings


def _cached_window(positions: torch.Tensor, cfg: RopeConfig, seq_len, key, dtype):
    """``(window, min, max)`` with a window covering every position, or None (too many rows for
    the bound). Positions are a non-empty integer CPU tensor; the frequencies are looked up (or
    computed) only when the window must grow."""
    if positions.numel() == 1:
        need_lo = int(positions)
        need_hi = need_lo + 1
    else:
        low, high = torch.aminmax(positions)
        need_lo, need_hi = int(low), int(high) + 1
    rows_key = ("rows", key, "cpu", dtype)  # only CPU positions come here
    window = _cache.get(rows_key)
    if window is not None and window.lo <= need_lo and need_hi <= window.hi:
        return window, need_lo, need_hi - 1
    inv_freq, attention_factor = _frequencies_for(cfg, positions, seq_len, key)
    row_bytes = 4 * inv_freq.numel() * dtype.itemsize
    cap = _cache.max_bytes() // max(row_bytes, 1)
    if need_hi - need_lo > cap:
        return None
    if _length_specific(key, cfg):
        lo, hi = need_lo, need_hi  # frequencies of this one length: no growth ahead
    else:
        lo, hi = _window_bounds(window, need_lo, need_hi, cap)
    window = _build_window(window, lo, hi, inv_freq, attention_factor, dtype, "cpu")
    _cache.put(rows_key, window)
    return window, need_lo, need_hi - 1


def _rows(positions: torch.Tensor, cfg: RopeConfig, seq_len, dtype: torch.dtype, *, paired: bool):
    """cos/sin of ``dtype`` for integer positions ``[*P]``; returns ``(cos, sin, form)``.

    ``form`` is ``"plain"``: fresh ``[*P, R/2]`` tables (always, when ``paired`` is False); or,
    only with ``paired`` (internal use: they may be views of the cache, never handed to a caller
    who could write into them), ``"paired"``: ``[*P, R]`` tables in :class:`RowWindow`'s form
    ``(cos, cos)``, ``(-sin, sin)``, or ``"row"``: one ``[R]`` row of it when every position is
    the same (decode).
    """
    _check_positions(positions)
    key = _cache_key(cfg, positions, seq_len)
    if key is not None and positions.is_cpu and positions.numel() > 0:
        found = _cached_window(positions, cfg, seq_len, key, dtype)
        if found is not None:
            window, low, high = found
            if paired and low == high:
                return window.cos_full[low - window.lo], window.sin_full[low - window.lo], "row"
            index = positions.reshape(-1)
            if index.dtype not in (torch.int32, torch.int64):
                index = index.to(torch.int64)
            index = index - window.lo
            cos, sin = (window.cos_full, window.sin_full) if paired else (window.cos, window.sin)
            shape = (*positions.shape, cos.shape[-1])
            return cos.index_select(0, index).view(shape), sin.index_select(0, index).view(shape), "paired" if paired else "plain"
    cos, sin = _cos_sin(positions, *_frequencies_for(cfg, positions, seq_len, key), dtype)
    return cos, sin, "plain"


def cos_sin_cache(cfg: RopeConfig, max_positions: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cache ``([T, R/2], [T, R/2])`` for positions ``0..T-1`` from exact float64 angles
    (the ``cos``/``sin`` of :func:`ropelab.kernels.rope_qk`)."""
    return rope_cos_sin(torch.arange(max_positions, device=device), cfg, seq_len=max_positions)


def _check_positions(positions: torch.Tensor) -> None:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions={type(positions).__name__} is invalid: expected an integer torch.Tensor")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise TypeError(f"positions.dtype={positions.dtype} is invalid: expected an integer dtype")


def _rotate_any(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Dispatch: the functional form under torch.compile, the fused Triton kernel for CUDA tensors
    (when triton is importable), the chunked eager path otherwise. Shapes as in :func:`apply_rotary`."""
    if torch.compiler.is_compiling():
        return rotate_functional(x, cos, sin, layout)
    if x.is_cuda and triton_available("cuda"):
        out = rotate_with_tables(x, cos, sin, layout)
        if out is not None:
            return out
    if layout == "half" and x.is_cpu and x.numel() <= CHUNK_ELEMENTS:
        return _rotate_small_half(x, cos, sin)
    return rotate_eager(x, cos, sin, layout)


def _rotate_small_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The half layout for CPU inputs of at most one eager chunk (decode), from plain tables: they
    are put in the full form ``(cos, cos)``, ``(-sin, sin)`` (exact) and rotated by
    :func:`_rotate_small_full`, in a handful of ops instead of
    :func:`ropelab.rotary_eager.rotate_eager`'s per-chunk views.

    Shapes: ``x`` ``[..., S, D]``; ``cos, sin`` broadcastable against ``x[..., :R/2]``. Returns a
    contiguous tensor like ``x``; channels ``R:`` copied; math in ``promote(x.dtype, float32)``.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    if cos.dtype != compute:
        cos, sin = cos.to(compute), sin.to(compute)
    return _rotate_small_full(x, torch.cat((cos, cos), -1), torch.cat((-sin, sin), -1))


def _rotate_small_full(x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor) -> torch.Tensor:
    """The half layout from full tables (:class:`ropelab.cache.RowWindow`) in three ops:
    ``out = x * cos_full + roll(x, R/2) * sin_full``, i.e. ``a cos + b (-sin)`` and ``b cos + a
    sin`` for the halves ``a, b`` of ``x[..., :R]``: the products and the order of
    :func:`ropelab.rotary_eager.rotate_eager` (``mul`` then ``addcmul``; the sign flip is exact),
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


def _needs_autograd(x: torch.Tensor) -> bool:
    """True when the rotation must record a backward: grad mode on and ``x`` requires grad (or
    tracing, where the graph decides)."""
    return torch.compiler.is_compiling() or (x.requires_grad and torch.is_grad_enabled())


def _apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """:class:`_Rotate` when a backward is needed, else the rotation itself (no Function set-up)."""
    if _needs_autograd(x):
        return _Rotate.apply(x, cos, sin, layout)
    return _rotate_any(x, cos, sin, layout)


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
    return _apply(x, cos, sin, layout)


def _check_table_shapes(positions: torch.Tensor, x: torch.Tensor) -> None:
    """Positions ``[S]`` or ``[B, S]`` (``B`` 1 or ``x``'s batch) for ``x`` ``[..., S, D]``."""
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
    elif positions.dim() != 1:
        raise ValueError(f"positions.dim()={positions.dim()} is invalid: expected [seq] or [batch, seq]")


# The tables each thread last built for small positions tensors: a model calls RoPE once per layer
# with the same position_ids tensor, so every layer after the first finds its tables here. Keyed by
# the tensor's id; an entry holds a reference to the tensor (so a new tensor at a recycled address
# cannot match: ``is`` is checked) and its version counter (bumped by any in-place write), with the
# config, seq_len, dtype and cache generation. At most _MEMO_ENTRIES entries of at most
# _MEMO_MAX_POSITIONS rows per thread, copied (no view pins a cache window).
_MEMO = threading.local()
_MEMO_ENTRIES = 8
_MEMO_MAX_POSITIONS = 64


def _memo() -> dict:
    memo = getattr(_MEMO, "tables", None)
    if memo is None:
        memo = _MEMO.tables = {}
    return memo


def _tables_for(x: torch.Tensor, positions: torch.Tensor, cfg: RopeConfig, seq_len):
    """cos/sin for ``x`` ``[B, H, S, D]`` in the math dtype (float32, or float64 for float64
    inputs), and their form (see :func:`_rows`), broadcastable against ``x``: plain ``[B, 1, S,
    R/2]`` / ``[S, R/2]`` against ``x[..., :R/2]``; paired ``[B, 1, S, R]`` / ``[S, R]``
    or an ``[R]`` row against ``x[..., :R]``."""
    _check_table_shapes(positions, x)
    dtype = torch.promote_types(x.dtype, torch.float32)
    compiling = torch.compiler.is_compiling()
    if not compiling:
        hit = _memo().get(id(positions))
        if (hit is not None and hit[0] is positions and hit[1] == positions._version and hit[2] is cfg
                and hit[3] is seq_len and hit[4] == dtype and hit[5] == _cache.generation() and _cache.enabled()):
            return hit[6]
    # Full-form rows feed the three-op path of small inputs; large ones take plain contiguous
    # tables to the chunked eager path (or the kernel).
    cos, sin, form = _rows(positions, cfg, seq_len, dtype, paired=x.numel() <= CHUNK_ELEMENTS)
    if positions.dim() == 2 and form != "row":
        cos, sin = cos.unsqueeze(-3), sin.unsqueeze(-3)
    if form != "plain" and not compiling and positions.numel() <= _MEMO_MAX_POSITIONS:
        if form == "row":
            cos, sin = cos.clone(), sin.clone()
        memo = _memo()
        memo.pop(id(positions), None)
        if len(memo) >= _MEMO_ENTRIES:
            del memo[next(iter(memo))]  # the oldest
        memo[id(positions)] = (positions, positions._version, cfg, seq_len, dtype, _cache.generation(), (cos, sin, form))
    return cos, sin, form


def _rotate_tables(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, form: str, layout: str) -> torch.Tensor:
    """Rotate ``x`` with tables from :func:`_tables_for`: the three-op path for small CPU
    inference calls in the half layout, else the plain tables through :func:`_apply`."""
    if form == "plain":
        return _apply(x, cos, sin, layout)
    if layout == "half" and x.is_cpu and x.numel() <= CHUNK_ELEMENTS and not _needs_autograd(x):
        return _rotate_small_full(x, cos, sin)
    half = cos.shape[-1] // 2
    return _apply(x, cos.narrow(-1, 0, half), sin.narrow(-1, half, half), layout)


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid: expected one of {', '.join(LAYOUTS)}")
    return layout


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
    layout = _check_layout(layout or cfg.layout)
    tables = _tables_for(x, positions, cfg, seq_len)
    return _rotate_tables(x, *tables, layout)


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
    layout = _check_layout(layout or cfg.layout)
    if _fused_qk_applies(q, k):
        # One launch for q and k, angles reduced exactly in the kernel: no cos/sin table at all.
        inv_freq, attention_factor = _frequencies(cfg, positions, seq_len)
        return rope_qk(q, k, positions, inv_freq=inv_freq, attention_factor=float(attention_factor), layout=layout)
    tables = _tables_for(q, positions, cfg, seq_len)
    return _rotate_tables(q, *tables, layout), _rotate_tables(k, *tables, layout)


def rotate_qk_fused(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    layout: str | None = None,
    inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rotate_qk` in one kernel launch with cos/sin computed in the kernel (no cache).

    Args and returns as in :func:`rotate_qk` (q ``[B, Hq, S, D]``, k ``[B, Hk, S, D]``,
    positions ``[S]`` or ``[B, S]``); ``inplace`` overwrites q and k. Needs triton (see
    :func:`ropelab.kernels.triton_available`).
    """
    inv_freq, attention_factor = _frequencies(cfg, positions, seq_len)
    return rope_qk(q, k, positions, inv_freq=inv_freq, attention_factor=float(attention_factor),
                   layout=layout or cfg.layout, inplace=inplace)


def _fused_qk_applies(q: torch.Tensor, k: torch.Tensor) -> bool:
    """CUDA q and k of one kernel dtype, outside torch.compile, with triton importable."""
    return (
        q.is_cuda
        and k.is_cuda
        and q.dtype == k.dtype
        and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.dim() == 4
        and not torch.compiler.is_compiling()
        and triton_available("cuda")
    )
