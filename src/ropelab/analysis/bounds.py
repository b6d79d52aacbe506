"""Two published bounds, computed for any config.

- The lower bound on the base for a context length (Men et al. 2024, "Base of RoPE Bounds
  Context Length").
- Position interpolation's bound against extrapolation's (Chen et al. 2023, "Extending Context
  Window of Large Language Models via Positional Interpolation", section 2.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ropelab.config import RopeConfig
from ropelab.frequencies import default_inv_freq

__all__ = [
    "cosine_sum",
    "satisfies_base_criterion",
    "min_base_for_context",
    "InterpolationBound",
    "interpolation_vs_extrapolation",
    "extrapolation_sum",
]

# Positions tested per step when scanning m = 0 .. L: bounds the float64 scratch to ~16 MiB.
_CHUNK = 32_768


def cosine_sum(positions: torch.Tensor, rotary_dim: int, base: float) -> torch.Tensor:
    """``B_m = sum_{i=0}^{d/2-1} cos(m * base**(-2i/d))`` (Men et al. 2024) for ``positions [N]``
    (integers): float64 ``[N]``. ``2 * B_m`` is the expected score of a vector with itself."""
    inv_freq = default_inv_freq(rotary_dim, base)
    return torch.cos(positions.to(torch.float64)[:, None] * inv_freq[None, :]).sum(dim=1)


def satisfies_base_criterion(context_length: int, rotary_dim: int, base: float, *, screen_stride: int = 16) -> bool:
    """True when ``B_m >= 0`` for every integer ``m`` in ``[0, context_length]`` (see :func:`cosine_sum`).

    A cheap screen over every ``screen_stride``-th position runs first (a negative value there is
    already a counter-example); only bases that pass it are checked at every position, in chunks."""
    if cosine_sum(torch.arange(0, context_length + 1, screen_stride), rotary_dim, base).min() < 0:
        return False
    for start in range(0, context_length + 1, _CHUNK):
        stop = min(context_length + 1, start + _CHUNK)
        if cosine_sum(torch.arange(start, stop), rotary_dim, base).min() < 0:
            return False
    return True


def _men_fit(context_length: int) -> float:
    # The power law fitted in Men et al. 2024, Figure 1: base ~ 0.0424 * L**1.628. Used only as the
    # place to start scanning (a third of it); the criterion itself decides.
    return 0.0424 * context_length**1.628


# Candidate positions carried between grid points to filter the fine scan (see min_base_for_context).
_MAX_CANDIDATES = 64
# Half-width of the neighbourhood of earlier counter-examples looked at first.
_NEAR = 32


# The search below runs on many small arrays: numpy (one thread) keeps it from waiting on torch's
# intra-op thread pool, which on a busy machine costs more than the arithmetic.
def _cosine_sums(positions: np.ndarray, rotary_dim: int, bases: np.ndarray) -> np.ndarray:
    """``B_m`` for ``positions [N]`` at each of ``bases [K]``: float64 ``[K, N]``."""
    inv_freq = bases[:, None] ** (-np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)  # [K, d/2]
    return np.cos(positions.astype(np.float64)[None, :, None] * inv_freq[:, None, :]).sum(axis=-1)


def _worst_positions(positions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The worst position of each run of negative ``values`` (``positions`` ascending), at most
    ``_MAX_CANDIDATES`` of them, worst first."""
    negative = values < 0
    if not negative.any():
        return positions[:0]
    starts = negative & ~np.concatenate([[False], negative[:-1]])
    run = np.cumsum(starts)[negative] - 1
    positions, values = positions[negative], values[negative]
    best = np.full(run[-1] + 1, np.inf)
    np.minimum.at(best, run, values)
    keep = values == best[run]
    positions, values = positions[keep], values[keep]
    return positions[np.argsort(values, kind="stable")[:_MAX_CANDIDATES]]


def _counter_examples(context_length: int, rotary_dim: int, base: float, near: np.ndarray | None = None) -> np.ndarray:
    """Positions ``m`` in ``[0, L]`` where ``B_m < 0``: empty exactly when ``base`` satisfies the criterion.

    Cheap looks first, each of which can only find counter-examples: every position within
    ``_NEAR`` of ``near`` (where earlier bases failed), then every 16th position; then every
    position. The last two go in chunks from the end of the context, where a base just below the
    bound usually fails first, and stop at the first chunk with a counter-example."""
    bases = np.array([base], dtype=np.float64)
    looks = []
    if near is not None and near.size:
        looks.append(np.unique(np.clip(near[:, None] + np.arange(-_NEAR, _NEAR + 1)[None, :], 0, context_length)))
    for stride in (16, 1):
        span = _CHUNK if stride == 1 else _CHUNK * 2
        for stop in range(context_length + 1, 0, -span):
            looks.append(np.arange(max(0, stop - span), stop, stride))
    found = np.zeros(0, dtype=np.int64)
    for positions in looks:
        found = _worst_positions(positions, _cosine_sums(positions, rotary_dim, bases)[0])
        if found.size:
            return found
    return found


def min_base_for_context(
    context_length: int,
    rotary_dim: int = 128,
    *,
    steps_per_decade: int = 400,
    max_base: float = 1e13,
    relative_tolerance: float = 1e-4,
) -> float:
    """The smallest RoPE base whose cosine sum stays non-negative over the whole context.

    Criterion (Men et al. 2024, section 4.3, eq. 11): ``base_L = inf{base : B_m >= 0 for all
    m in [0, 1, ..., L]}``, with ``B_m = sum_{i=0}^{d/2-1} cos(m * theta_i)`` (their eq. 9),
    ``theta_i = base**(-2i/d)`` and ``d = rotary_dim``. By their Theorem 1, ``2 sigma^2 B_m`` is the
    expected score of a query with a similar key (the query plus zero-mean noise) minus that with an
    independent random key, so ``B_m < 0`` means a similar token at distance ``m`` gets *less*
    attention than a random one. (Su Jianlin's recomputation, kexue.fm/archives/10122, takes
    ``m in [0, L-1]`` instead; at ``d = 128`` that moves none of the values below.)

    The set of admissible bases is not an interval: above the bound it is a union of windows, some
    far narrower than 1% (for ``L = 1024``: from 4.29e3 to 4.33e3, again from 5.60e3 to 5.64e3, and
    from about 6.0e3; for ``L = 4096`` the first window, near 2.69e4, is under 0.1% wide). The search
    therefore does not assume monotonicity. It walks a geometric grid (``steps_per_decade`` points per
    factor 10) upwards from a base that fails, and inside each grid step it scans a finer grid (one
    point per ``relative_tolerance``), where a point is tested in full only when none of the positions
    that failed at the neighbouring points (and at points already tested in that step) fails there;
    the first point that passes is refined by bisection (in log space) against the failing point
    before it, down to ``relative_tolerance``. Every window wider than ``relative_tolerance`` is
    therefore found; a narrower one can be missed, and windows get narrower as ``L`` grows: up to
    ``L = 32768`` a search at ``relative_tolerance=1e-6`` finds the same first windows as the
    default, but at ``L = 2**19`` the default returns 6.27e7 while ``1e-6`` finds a window at 5.85e7
    (Su Jianlin's 5.8e7). The cost grows with ``L`` times the number of fine points: seconds up to
    ``L = 2**17``, minutes beyond.

    Args:
        context_length: ``L >= 1``.
        rotary_dim: ``d`` (even).

    Returns:
        The bound as a float, an upper estimate within ``relative_tolerance`` of the left edge of the
        first admissible window. For ``d = 128``: 4.29e3 at ``L = 1024``, 1.16e4 at 2048, 2.69e4 at
        4096 and 8.37e4 at 8192. Men et al. 2024 (Table 2) report 4.3e3, 1.6e4, 2.7e4 and 8.4e4; their
        2k value is a window further up (they enumerated bases and computed the longest admissible
        length for each, which misses windows between enumerated bases), and Su Jianlin's finer
        search gives 1.2e4 there.
    """
    if context_length < 1:
        raise ValueError(f"context_length={context_length} is invalid: expected >= 1")
    step = math.log(10.0) / steps_per_decade
    fine = max(1, math.ceil(step / math.log1p(relative_tolerance)))
    low = max(2.0, _men_fit(context_length) / 3.0)
    candidates = _counter_examples(context_length, rotary_dim, low)
    while low > 2.0 and not candidates.size:
        low = max(2.0, low / 10.0)  # the start must fail; walk down until it does
        candidates = _counter_examples(context_length, rotary_dim, low)
    if not candidates.size:
        return low
    while low <= max_base:
        bases = low * np.exp(step * np.arange(1, fine + 1) / fine)  # the fine points of this grid step
        first = 0
        while first < fine:
            # A fine point can pass only where every position that failed so far passes.
            passing = np.flatnonzero(_cosine_sums(candidates, rotary_dim, bases[first:]).min(axis=1) >= 0)
            if not passing.size:
                break
            k = first + int(passing[0])
            found = _counter_examples(context_length, rotary_dim, float(bases[k]), candidates)
            if not found.size:
                below = float(bases[k - 1]) if k else low
                return _bisect_left_edge(context_length, rotary_dim, below, float(bases[k]), relative_tolerance)
            candidates = np.union1d(candidates, found)
            first = k + 1
        low = float(bases[-1])
        candidates = _worst_positions(candidates, _cosine_sums(candidates, rotary_dim, np.array([low]))[0])
        if not candidates.size:
            candidates = _counter_examples(context_length, rotary_dim, low)
    raise ValueError(f"no base up to {max_base:g} satisfies the criterion for L={context_length}")


def _bisect_left_edge(context_length: int, rotary_dim: int, low: float, high: float, tolerance: float) -> float:
    """Bisect (in log space) between a failing ``low`` and a passing ``high`` down to ``tolerance``."""
    while high / low > 1 + tolerance:
        middle = math.sqrt(low * high)
        if _counter_examples(context_length, rotary_dim, middle).size:
            low = middle
        else:
            high = middle
    return high


def extrapolation_sum(positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """``B(s) = sum_{k=1}^{d/2} |A_k(s)|``, ``A_k(s) = sum_{j<k} exp(i s theta_j)`` (Chen et al. 2023,
    section 2.3; RoFormer section 3.4.3), for ``positions [N]`` (any real ``s``): float64 ``[N]``."""
    phases = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    return torch.cumsum(torch.polar(torch.ones_like(phases), phases), dim=1).abs().sum(dim=1)


@dataclass(frozen=True)
class InterpolationBound:
    """Chen et al. (2023, section 2.3), in units of ``max_j |h_j|`` (the size of the q/k coefficients).

    Attributes:
        rotary_dim: ``d``.
        base: ``c``.
        trained_length, target_length: ``L`` and ``L'``.
        interpolation: ``d / (32 ln c)`` (their eq. 7), Theorem 2.1's bound (eq. 5) ``d max|h_j| (s-s1)(s2-s) / (8 ln c)``
            at its worst point, the middle of two neighbouring integer positions (``s2 - s1 = 1``).
        extrapolation: ``2 * max_{L <= s < L'} B(s)``, the bound (eq. 8) ``(max_j |h_j - h_{j+1}|) B(s)`` with
            ``|h_j - h_{j+1}| <= 2 max|h_j|``, maximised over the extrapolated positions.
        extrapolation_per_dim: ``max B(s) / d`` (the quantity of Chen et al.'s Figure 5, appendix B).
        ratio: ``extrapolation / interpolation``; the paper's "~600x" is ``2 * 32 ln(10000) = 589`` at
            ``B(s)/d = 1``.
    """

    rotary_dim: int
    base: float
    trained_length: int
    target_length: int
    interpolation: float
    extrapolation: float
    extrapolation_per_dim: float
    ratio: float


def interpolation_vs_extrapolation(
    cfg: RopeConfig, target_length: int, *, trained_length: int | None = None, max_points: int = 65_536
) -> InterpolationBound:
    """Position interpolation's error bound against extrapolation's, as numbers for ``cfg``.

    Uses the unscaled frequencies of ``cfg`` (``c = cfg.base``, ``d = cfg.rotary_dim``). The
    extrapolation maximum is taken over ``max_points`` positions evenly spread in ``[L, L')``
    (every position when there are fewer).

    Returns:
        :class:`InterpolationBound`.
    """
    length = trained_length or cfg.trained_length
    if not length:
        raise ValueError("trained_length is unknown: pass trained_length= or set max_position_embeddings")
    if target_length <= length:
        raise ValueError(f"target_length={target_length} is invalid: expected > trained_length={length}")
    d = cfg.rotary_dim
    interpolation = d / (32.0 * math.log(cfg.base))
    inv_freq = default_inv_freq(d, cfg.base)
    count = min(max_points, target_length - length)
    positions = torch.linspace(length, target_length - 1, count, dtype=torch.float64).round()
    worst = float(extrapolation_sum(positions, inv_freq).max())
    return InterpolationBound(
        rotary_dim=d,
        base=cfg.base,
        trained_length=length,
        target_length=target_length,
        interpolation=interpolation,
        extrapolation=2.0 * worst,
        extrapolation_per_dim=worst / d,
        ratio=2.0 * worst / interpolation,
    )
