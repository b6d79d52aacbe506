"""Two published bounds, computed for any config.

- The lower bound on the base for a context length (Men et al. 2024, "Base of RoPE Bounds
  Context Length").
- Position interpolation's bound against extrapolation's (Chen et al. 2023, "Extending Context
  Window of Large Language Models via Positional Interpolation", section 2.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def min_base_for_context(
    context_length: int,
    rotary_dim: int = 128,
    *,
    steps_per_decade: int = 400,
    max_base: float = 1e13,
    relative_tolerance: float = 1e-4,
) -> float:
    """The smallest RoPE base whose cosine sum stays non-negative over the whole context.

    Criterion (Men et al. 2024, the "long-term decay of the ability to attend to similar tokens"):
    ``B_m = sum_{i=0}^{d/2-1} cos(m * theta_i) >= 0`` for **every integer m in [0, L]**, with
    ``theta_i = base**(-2i/d)`` and ``d = rotary_dim``. ``B_m`` is (half) the expected score
    ``E[q^T R_m k]`` when ``k`` is ``q`` plus independent noise, so ``B_m < 0`` means a similar token
    at distance ``m`` gets *less* attention than a random one.

    The set of admissible bases is not an interval: just above the bound it is a union of narrow
    windows (for ``L = 1024, d = 128``: admissible near 4.33e3, not at 4.4e3 .. 5.6e3, again from
    about 6.1e3). The search therefore walks a fine geometric grid (``steps_per_decade`` points per
    factor 10) upwards from a base that fails the criterion, stops at the first grid point that
    passes, and bisects (in log space) between it and the failing grid point before it, down to
    ``relative_tolerance``. A window narrower than one grid step (0.58% at the default 400) can be
    missed, which makes the answer an upper estimate of the smallest admissible base.

    Args:
        context_length: ``L >= 1``.
        rotary_dim: ``d`` (even).

    Returns:
        The bound as a float; for ``d = 128``: about 4.33e3 at ``L = 1024`` and 8.4e4 at
        ``L = 8192`` (Men et al. 2024 report 4.3e3 and 8.4e4).
    """
    if context_length < 1:
        raise ValueError(f"context_length={context_length} is invalid: expected >= 1")
    step = 10.0 ** (1.0 / steps_per_decade)
    low = max(2.0, _men_fit(context_length) / 3.0)
    while low > 2.0 and satisfies_base_criterion(context_length, rotary_dim, low):
        low = max(2.0, low / 10.0)  # the start must fail; walk down until it does
    if satisfies_base_criterion(context_length, rotary_dim, low):
        return low
    high = low * step
    while not satisfies_base_criterion(context_length, rotary_dim, high):
        low, high = high, high * step
        if high > max_base:
            raise ValueError(f"no base up to {max_base:g} satisfies the criterion for L={context_length}")
    while high / low > 1 + relative_tolerance:
        middle = math.sqrt(low * high)
        if satisfies_base_criterion(context_length, rotary_dim, middle):
            high = middle
        else:
            low = middle
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
        interpolation: ``d / (32 ln c)``, Theorem 2.1's bound ``d max|h_j| (s-s1)(s2-s) / (8 ln c)``
            at its worst point, the middle of two neighbouring integer positions (``s2 - s1 = 1``).
        extrapolation: ``2 * max_{L <= s < L'} B(s)``, the bound ``(max_j |h_j - h_{j+1}|) B(s)`` with
            ``|h_j - h_{j+1}| <= 2 max|h_j|``, maximised over the extrapolated positions.
        extrapolation_per_dim: ``max B(s) / d`` (the quantity of Chen et al.'s Figure 3).
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

