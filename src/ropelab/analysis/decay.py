"""The score as a function of relative distance.

Two views of "RoPE's long-term decay":

- the RoFormer bound (Su et al. 2021, section 3.4.3): with ``S_j = sum_{k<j} exp(i * delta * theta_k)``,
  ``|score| <= (max_i |h_{i+1} - h_i|) * sum_{j=1}^{d/2} |S_j|``, and the paper plots the relative
  upper bound ``(1 / (d/2)) * sum_j |S_j|`` against ``delta`` (its Figure 2), which decays;
- the score itself for ``q = k``: all ones, and random Gaussian vectors, whose expectation is
  ``E[q^T R(delta) q] = trace R(delta) = 2 * sum_i cos(delta * theta_i)`` (plus the unrotated
  channels), the quantity Men et al. (2024) bound from below.

Both take any :class:`~ropelab.config.RopeConfig`, so the effect of the base and of scaling shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ropelab.config import RopeConfig
from ropelab.frequencies import rope_frequencies
from ropelab.reference import pair_views

__all__ = ["DecayCurve", "ScoreCurve", "roformer_decay_bound", "expected_score", "distance_grid"]


@dataclass(frozen=True)
class DecayCurve:
    """``values[i]`` is the RoFormer relative bound at ``distances[i]`` (both ``[N]``; int64, float64)."""

    distances: torch.Tensor
    values: torch.Tensor


@dataclass(frozen=True)
class ScoreCurve:
    """The score ``q^T R(delta) q`` against distance.

    Attributes:
        distances: int64 ``[N]``.
        expected: float64 ``[N]``, the closed form ``af**2 * 2 * sum_i cos(delta theta_i) + (D - R)``
            (``af`` the attention factor, ``D - R`` the pass-through channels).
        mean: float64 ``[N]``, the mean over the sampled vectors (equal to ``expected`` for all ones).
        std: float64 ``[N]``, spread over the samples (zeros for all ones).
        kind: ``"ones"`` or ``"random"``.
    """

    distances: torch.Tensor
    expected: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    kind: str


def distance_grid(max_distance: int, points: int = 2048) -> torch.Tensor:
    """Distances ``0 .. max_distance``: every integer when there are at most ``points`` of them,
    else ``points`` integers spaced evenly on a log scale (always including 0 and 1). int64 ``[N]``."""
    if max_distance < 0:
        raise ValueError(f"max_distance={max_distance} is invalid: expected >= 0")
    if max_distance + 1 <= points:
        return torch.arange(max_distance + 1, dtype=torch.int64)
    grid = torch.logspace(0, torch.log10(torch.tensor(float(max_distance))), points - 1, dtype=torch.float64)
    return torch.unique(torch.cat((torch.zeros(1, dtype=torch.int64), grid.round().to(torch.int64))))


def _frequencies(cfg: RopeConfig, seq_len: int | None) -> tuple[torch.Tensor, float]:
    return rope_frequencies(cfg, seq_len)


def roformer_decay_bound(cfg: RopeConfig, distances: torch.Tensor, *, seq_len: int | None = None) -> DecayCurve:
    """RoFormer's relative upper bound ``(1/(d/2)) * sum_{j=1}^{d/2} |S_j(delta)|`` (section 3.4.3).

    ``S_j(delta) = sum_{k=0}^{j-1} exp(i * delta * theta_k)`` with the variant's frequencies
    ``theta_k`` (highest first, as in RoFormer eq. 15) and ``d = rotary_dim``. The value is ``(d/2 + 1)/2``
    at ``delta = 0`` and decays, with oscillations, as ``delta`` grows.

    Args:
        cfg: the RoPE variant.
        distances: integer ``[N]`` relative distances.
        seq_len: length seen by dynamic / longrope variants (default: their static choice).

    Returns:
        :class:`DecayCurve` with float64 ``[N]`` values.
    """
    inv_freq, _ = _frequencies(cfg, seq_len)
    phases = distances.to(torch.float64)[:, None] * inv_freq[None, :]
    partial_sums = torch.cumsum(torch.polar(torch.ones_like(phases), phases), dim=1)  # S_1 .. S_{d/2}
    return DecayCurve(distances=distances.to(torch.int64), values=partial_sums.abs().mean(dim=1))


def expected_score(
    cfg: RopeConfig,
    distances: torch.Tensor,
    *,
    kind: str = "ones",
    samples: int = 256,
    seed: int = 0,
    seq_len: int | None = None,
) -> ScoreCurve:
    """The score ``<R_m q, R_n q>`` of a vector with itself at distance ``delta = m - n``.

    For ``q = k`` each pair ``(a, b)`` contributes ``af**2 * (a**2 + b**2) * cos(delta * theta_i)``
    (the sine terms cancel), and the ``D - R`` unrotated channels add ``sum q_j**2``.

    Args:
        cfg: the RoPE variant (its attention factor scales both q and k, hence ``af**2``).
        distances: integer ``[N]``.
        kind: ``"ones"`` (``q`` all ones: exactly ``2 af**2 sum_i cos + (D - R)``) or ``"random"``
            (``samples`` vectors ``q ~ N(0, I_D)``; their mean tends to the same closed form, since
            ``E[a**2 + b**2] = 2``).
        samples, seed: the random draw (``kind="random"``).
        seq_len: length seen by dynamic / longrope variants.

    Returns:
        :class:`ScoreCurve` (float64 ``[N]`` curves).
    """
    if kind not in ("ones", "random"):
        raise ValueError(f"kind={kind!r} is invalid: expected 'ones' or 'random'")
    inv_freq, attention_factor = _frequencies(cfg, seq_len)
    cosines = torch.cos(distances.to(torch.float64)[:, None] * inv_freq[None, :])  # [N, R/2]
    passthrough = cfg.head_dim - cfg.rotary_dim
    gain = attention_factor**2
    expected = gain * 2.0 * cosines.sum(dim=1) + passthrough
    if kind == "ones":
        return ScoreCurve(distances.to(torch.int64), expected, expected.clone(), torch.zeros_like(expected), kind)
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(samples, cfg.head_dim, generator=generator, dtype=torch.float64)
    pair_energy = _pair_energy(q, cfg)  # [samples, R/2]
    rest = q[:, cfg.rotary_dim :].pow(2).sum(dim=1, keepdim=True)  # [samples, 1]
    scores = gain * pair_energy @ cosines.T + rest  # [samples, N]
    return ScoreCurve(distances.to(torch.int64), expected, scores.mean(dim=0), scores.std(dim=0), kind)


def _pair_energy(q: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    """``a_i**2 + b_i**2`` for every pair of ``q [..., D]`` in the config's layout: ``[..., R/2]``."""
    a, b = pair_views(q, cfg.rotary_dim, cfg.layout)
    return a.pow(2) + b.pow(2)
