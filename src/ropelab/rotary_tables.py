"""Which cos/sin a rotation uses: exact angles, frequencies and tables, cached where that is allowed.

Angles ``position * inv_freq`` are formed in float64 (exact to ~1e-16 relative, so ~1e-9 rad at
position 10**7) and cos/sin are taken in float64, then rounded once to the math dtype.

Per-call overhead (decode: one token, a handful of numbers) is cut by :mod:`ropelab.cache`, a
bounded LRU of the float64 frequencies per (config, resolved length) and of cos/sin rows per
(frequencies, device, dtype), each row computed by the uncached formula (:func:`_cos_sin`) from the
exact integer position, so cached and uncached results are bitwise equal; and by a per-thread memo
of the tables of the last few small positions tensors (one per layer per step). Both are bypassed
under torch.compile, and rows are not cached for positions off the CPU (reading them would sync the
device). :mod:`ropelab.rotary` rotates with what this module returns.
"""

from __future__ import annotations

import threading

import torch

from ropelab import cache as _cache
from ropelab.cache import RowWindow
from ropelab.config import RopeConfig
from ropelab.frequencies import rope_frequencies
from ropelab.rotary_eager import CHUNK_ELEMENTS

__all__ = ["rope_angles", "rope_cos_sin", "resolve_seq_len", "cos_sin_cache"]


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
