"""A bounded, thread-safe LRU of exact RoPE frequencies and cos/sin rows, for the per-call path.

At decode (one new token per call) the work of RoPE is a few thousand multiply-adds, so the cost
of a call is its overhead: building the float64 frequencies, forming angles, taking cos/sin. This
store keeps what those steps produce, keyed by everything they depend on, and nothing else:

- ``("freq", cfg, resolved)`` -> ``(inv_freq [R/2] float64, attention_factor)``, where ``resolved``
  is the part of the sequence length that changes the frequencies (``None`` for static types, the
  clamped length for ``dynamic``, long-or-short for ``longrope``; see :mod:`ropelab.rotary_tables`);
- ``("rows", freq_key, device, dtype)`` -> :class:`RowWindow`: cos and sin (in the ``[T, R]``
  form the decode rotation consumes, see :class:`RowWindow`) for the
  contiguous positions ``lo .. lo + T - 1``, each row computed in float64 from the exact integer
  position (:func:`ropelab.rotary_tables._cos_sin`, the uncached formula itself) and rounded once to
  ``dtype``. A window grows on demand (doubling, aligned to :data:`ROW_ALIGN` rows), so a decode
  loop pays one table computation per doubling, not one per token; positions are never
  interpolated or shifted, only looked up.

The whole store (frequencies and rows) is bounded in bytes (:func:`set_cache_limit`, default
:data:`DEFAULT_MAX_BYTES`); inserting past the bound evicts the least recently used entries, and an
entry larger than the bound is not stored at all. One lock guards every mutation; entries are
immutable once stored (a grown window is a new pair of tensors), so a reader that holds one is
never affected by another thread. Imports only torch: policy (what to key, when to bypass) lives
in :mod:`ropelab.rotary_tables`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DEFAULT_MAX_BYTES", "ROW_ALIGN", "RowWindow", "bypass", "cache_info", "clear_cache", "set_cache_limit"]

DEFAULT_MAX_BYTES = 64 << 20  #: 64 MiB, room for 65536 fp32 positions at rotary_dim 128
ROW_ALIGN = 16  #: windows start and end on multiples of this many positions


@dataclass(frozen=True)
class RowWindow:
    """Rows for positions ``lo .. lo + T - 1`` in the form of the half-layout rotation
    ``out = x * cos_full + roll(x, R/2) * sin_full``: ``cos_full[t] = (cos, cos)`` and
    ``sin_full[t] = (-sin, sin)``, each ``[T, R]`` of one dtype. The plain ``[T, R/2]`` tables
    are the views :attr:`cos` and :attr:`sin` (the negation is exact: no rounding added)."""

    lo: int
    cos_full: torch.Tensor
    sin_full: torch.Tensor

    @property
    def cos(self) -> torch.Tensor:
        return self.cos_full[:, : self.cos_full.shape[1] // 2]

    @property
    def sin(self) -> torch.Tensor:
        return self.sin_full[:, self.sin_full.shape[1] // 2 :]

    @property
    def hi(self) -> int:
        return self.lo + self.cos_full.shape[0]

    @property
    def nbytes(self) -> int:
        return 2 * self.cos_full.numel() * self.cos_full.element_size()


def _nbytes(value: Any) -> int:
    if isinstance(value, RowWindow):
        return value.nbytes
    inv_freq, _ = value
    return inv_freq.numel() * inv_freq.element_size()


class _Store:
    """``key -> (value, nbytes)`` in LRU order, bounded in bytes; every method takes the lock."""

    def __init__(self, max_bytes: int):
        self.lock = threading.Lock()
        self.entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.generation = 0  # bumped by clear_cache / set_cache_limit: per-thread memos go stale

    def get(self, key: tuple) -> Any:
        with self.lock:
            item = self.entries.get(key)
            if item is None:
                self.misses += 1
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple, value: Any) -> bool:
        """Store ``value`` under ``key`` (replacing any old one), evicting LRU entries to stay within
        the bound. Returns False (and stores nothing) when the value alone exceeds the bound."""
        nbytes = _nbytes(value)
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if nbytes > self.max_bytes:
                return False
            self._shrink_to(self.max_bytes - nbytes)
            self.entries[key] = (value, nbytes)
            self.bytes += nbytes
            return True

    def _shrink_to(self, limit: int) -> None:
        while self.bytes > limit and self.entries:
            _, (_, nbytes) = self.entries.popitem(last=False)
            self.bytes -= nbytes
            self.evictions += 1


_STORE = _Store(DEFAULT_MAX_BYTES)
_LOCAL = threading.local()  # .bypass: this thread computes everything afresh


def enabled() -> bool:
    """False when the bound is 0 or this thread is inside :func:`bypass`."""
    return _STORE.max_bytes > 0 and not getattr(_LOCAL, "bypass", False)


@contextmanager
def bypass() -> Iterator[None]:
    """Within the block, this thread neither reads nor fills the cache (the uncached computation,
    bitwise equal to the cached one; for measurements and tests). Other threads are unaffected."""
    previous = getattr(_LOCAL, "bypass", False)
    _LOCAL.bypass = True
    try:
        yield
    finally:
        _LOCAL.bypass = previous


def get(key: tuple) -> Any:
    """The cached value under ``key`` (marked most recently used), or None."""
    return _STORE.get(key)


def put(key: tuple, value: Any) -> bool:
    """Cache ``value`` (a :class:`RowWindow` or an ``(inv_freq, attention_factor)`` pair)."""
    return _STORE.put(key, value)


def max_bytes() -> int:
    return _STORE.max_bytes


def generation() -> int:
    """A counter bumped whenever the cache is cleared or re-bounded (for memos built on it)."""
    return _STORE.generation


def cache_info() -> dict[str, int]:
    """``{"entries", "freq_entries", "row_entries", "rows", "bytes", "max_bytes", "hits", "misses",
    "evictions"}``: ``bytes`` counts the tensors held (inv_freq, cos and sin), ``rows`` the cached
    positions summed over windows."""
    with _STORE.lock:
        windows = [v for v, _ in _STORE.entries.values() if isinstance(v, RowWindow)]
        return {
            "entries": len(_STORE.entries),
            "freq_entries": len(_STORE.entries) - len(windows),
            "row_entries": len(windows),
            "rows": sum(w.cos_full.shape[0] for w in windows),
            "bytes": _STORE.bytes,
            "max_bytes": _STORE.max_bytes,
            "hits": _STORE.hits,
            "misses": _STORE.misses,
            "evictions": _STORE.evictions,
        }


def clear_cache() -> None:
    """Drop every entry and reset the counters (the bound is kept)."""
    with _STORE.lock:
        _STORE.entries.clear()
        _STORE.bytes = _STORE.hits = _STORE.misses = _STORE.evictions = 0
        _STORE.generation += 1


def set_cache_limit(max_bytes: int) -> int:
    """Bound the cache to ``max_bytes`` (0 disables it), evicting LRU entries at once to fit.
    Returns the previous bound."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"max_bytes={max_bytes!r} is invalid: expected an integer >= 0")
    with _STORE.lock:
        previous, _STORE.max_bytes = _STORE.max_bytes, max_bytes
        _STORE._shrink_to(max_bytes)
        _STORE.generation += 1
        return previous
