"""Where a RoPE model breaks past its trained length: two config rules and one from the model's own q and k.

Notation: ``T`` trained length, ``N`` evaluation length, ``R`` rotary width, ``theta_i`` the trained
frequency of pair ``i`` (``i < R/2``), ``theta'_i`` the frequency a method uses, ``Delta`` the
distance ``m - n`` between a query at ``m`` and a key at ``n``.

- :func:`first_unseen_angle` (rule a): the first distance at which some pair meets an angle it never
  met in training (``Delta theta'_i > (T - 1) theta_i`` for a pair whose trained arc is under a turn).
  A lower bound: a model keeps working past it.
- :func:`extrapolation_bound` (rule b): Liu et al. 2023 ("Scaling Laws of RoPE-based Extrapolation",
  arXiv 2310.05209, eq. 5-6): the critical dimension ``d_extra = 2 ceil((R/2) log_beta(T / 2 pi))`` and
  ``T_extra = 2 pi beta^(d_extra / R)``, the period of the first pair that does not complete a turn in
  ``T``. For a scaled method we take the period of that same pair under the method's frequencies,
  ``2 pi / theta'_{d_extra/2}`` (equal to Liu et al.'s formula with the new base for NTK; ``s T_extra``
  for linear by ``s``): our generalisation, not theirs.
- :func:`logit_excess` and :func:`predict_break` (rule c, ropelab's predictor): from a model's own
  pre-rotation q and k on an input no longer than ``T``, the score each (query, key) pair would get
  at a distance ``Delta`` is ``q^T R(Delta theta') k / sqrt(Dh)``, computed analytically (no forward
  past ``T``). The pair's *seen envelope* is the highest score it gets at any distance below ``T``,
  with the trained frequencies and with the method's own. Its *excess* at ``Delta`` is how far its
  score rises above that envelope. Chen et al. 2023 (arXiv 2306.15595, sec. 2.2 and Figure 2) show
  such scores "exploding" past the trained range on a LLaMA layer; Barbero et al. 2025 ("Round and
  Round We Go!", arXiv 2410.06205, sec. 5-6) show that trained models put most of the q/k norm on
  the low-frequency pairs, which are exactly those that meet new angles, so the excess is weighted
  by the model's own ``|q_i| |k_i|`` per pair rather than counted per pair.

  **Hypothesis** (ours, tested by ``benchmarks/break_validation.py``): perplexity breaks where the
  mean excess over heads and (query, key) pairs first exceeds a threshold ``tau`` (nats of logit),
  because from there on far keys take attention they never got in training. ``tau`` is one
  calibrated constant (:data:`EXCESS_THRESHOLD`); see its comment for where it was calibrated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ropelab.config import RopeConfig
from ropelab.frequencies import rope_frequencies

__all__ = [
    "EXCESS_THRESHOLD",
    "BreakPrediction",
    "first_unseen_angle",
    "extrapolation_bound",
    "as_pairs",
    "logit_excess",
    "predict_break",
    "predict_breaks",
    "threshold_crossing",
    "method_frequencies",
]

# tau: the mean logit excess (nats) at which perplexity is predicted to break. Calibrated on the
# from-scratch lab models of benchmarks/break_validation.py only (the split the embedded model is
# scored against is never used to set it); see benchmarks/results/break_validation.md.
EXCESS_THRESHOLD = 0.02

# Distances sampled per trained length below T for the seen envelope, and past T for the curve.
_SEEN_POINTS = 2048
_PAST_POINTS_PER_T = 256
# The excess curve is smoothed over this many grid points before the threshold (like the measured
# break's 4-bin smoothing), so one lucky distance does not read as a break.
_SMOOTH = 4


def method_frequencies(cfg: RopeConfig, seq_len: int) -> torch.Tensor:
    """The pair frequencies ``[R/2]`` (float64) of ``cfg`` for a window of ``seq_len`` positions (dynamic
    variants read it)."""
    inv_freq, _ = rope_frequencies(cfg, seq_len)
    return inv_freq.to(torch.float64).reshape(-1)


def first_unseen_angle(trained_freq: torch.Tensor, freq: torch.Tensor, trained: int) -> int | None:
    """Rule (a): the smallest distance ``Delta >= 1`` at which some pair meets an angle it never met in
    training, or ``None`` when every pair completes a turn within ``T`` (every angle was seen).

    Pair ``i`` met the angles ``[0, (T - 1) theta_i]``; when that arc is shorter than ``2 pi``, its first
    new angle under ``theta'_i`` is at ``Delta = floor((T - 1) theta_i / theta'_i) + 1``.

    Args:
        trained_freq, freq: ``theta [R/2]`` and ``theta' [R/2]``.
    """
    arc = (trained - 1) * trained_freq.to(torch.float64)
    open_pairs = arc < 2 * math.pi
    if not open_pairs.any():
        return None
    first = torch.floor(arc[open_pairs] / freq.to(torch.float64)[open_pairs] + 1e-9) + 1  # 1e-9: float rounding of a ratio of 1
    return int(first.min())


def extrapolation_bound(trained_freq: torch.Tensor, freq: torch.Tensor, trained: int) -> int | None:
    """Rule (b), Liu et al. 2023's ``T_extra`` (see the module docstring): ``2 pi / theta'_c`` for the first
    pair ``c`` whose trained period ``2 pi / theta_c`` exceeds ``T``; ``None`` when every period fits in ``T``.

    Args:
        trained_freq, freq: ``theta [R/2]`` (decreasing, as RoPE's) and ``theta' [R/2]``.
    """
    longer = torch.nonzero(2 * math.pi / trained_freq.to(torch.float64) > trained).flatten()
    if not longer.numel():
        return None
    return int(round(2 * math.pi / float(freq[int(longer[0])])))


def as_pairs(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Rotary channels ``[..., R]`` (real) as complex pairs ``[..., R/2]``: pair ``i`` is channels
    ``(i, i + R/2)`` for ``layout="half"`` (GPT-NeoX / HF Llama) and ``(2i, 2i + 1)`` for ``"interleaved"``."""
    x = x.to(torch.float32)
    if layout == "interleaved":
        return torch.complex(x[..., 0::2], x[..., 1::2])
    half = x.shape[-1] // 2
    return torch.complex(x[..., :half], x[..., half:])


def _scores(products: torch.Tensor, freq: torch.Tensor, distances: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * Re sum_i c_i exp(i Delta theta_i)`` for ``products [H, P, R]`` (the real and imaginary parts of
    ``c_i = q_i conj(k_i)`` side by side, :func:`_products`), ``freq [R/2]``, ``distances [D]``: ``[H, P, D]``.
    Angles are formed in float64, then rounded to float32; one matrix product does the sum."""
    angles = distances.to(torch.float64)[None, :] * freq.to(torch.float64)[:, None]  # [R/2, D]
    basis = torch.cat((torch.cos(angles), -torch.sin(angles))).to(torch.float32)  # [R, D]
    return (products @ basis) * scale


def _products(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``q [H, Pq, R/2]``, ``k [H, Pk, R/2]`` complex -> ``[H, Pq*Pk, R]`` real: ``Re c | Im c``, ``c = q_i conj(k_i)``."""
    c = (q[:, :, None, :] * k[:, None, :, :].conj()).flatten(1, 2)
    return torch.cat((c.real, c.imag), dim=-1).contiguous()


def _seen_distances(trained: int) -> torch.Tensor:
    return torch.unique(torch.linspace(0, trained - 1, min(trained, _SEEN_POINTS), dtype=torch.float64).round().long())


def _past_distances(trained: int, target: int, past_points: int | None) -> torch.Tensor:
    count = min(target - trained, past_points or _PAST_POINTS_PER_T * max(1, math.ceil((target - trained) / trained)))
    return torch.unique(torch.linspace(trained, target - 1, count, dtype=torch.float64).round().long())


def _excess(products, envelope, trained_freq, freq, trained, target, scale, past_points):
    """Mean excess ``[H, D]`` of ``products`` at distances past ``T`` over ``envelope [H, P]`` (the trained
    one), the method's own in-context envelope added when its frequencies differ."""
    if not torch.equal(freq, trained_freq):
        envelope = torch.maximum(envelope, _scores(products, freq, _seen_distances(trained), scale).amax(-1))
    distances = _past_distances(trained, target, past_points)
    return distances, (_scores(products, freq, distances, scale) - envelope[..., None]).clamp(min=0).mean(1)


def logit_excess(q: torch.Tensor, k: torch.Tensor, trained_freq: torch.Tensor, freq: torch.Tensor, trained: int,
                 target: int, *, scale: float, past_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean excess score over (query, key) pairs, per head, at distances in ``[T, N)``.

    Args:
        q: ``[H, Pq, R/2]`` complex pairs of pre-rotation queries (:func:`as_pairs`), ``Pq`` positions.
        k: ``[H, Pk, R/2]`` the keys each query head reads (repeat shared KV heads first).
        trained_freq, freq: ``theta [R/2]``, ``theta' [R/2]``.
        scale: the score's factor (``1 / sqrt(Dh)``).
        past_points: distances sampled in ``[T, N)`` (default 256 per ``T``, at most one per position).

    Returns:
        ``(distances [D] int64, excess [H, D] float32)``: for every head, the mean over its ``Pq * Pk``
        pairs of ``max(0, score(Delta) - envelope)``, where the envelope is the pair's highest score at
        the ``2048`` (or ``T``) distances sampled below ``T``, with ``theta`` and with ``theta'``.
    """
    products = _products(q, k)
    envelope = _scores(products, trained_freq, _seen_distances(trained), scale).amax(-1)  # [H, P]
    return _excess(products, envelope, trained_freq, freq, trained, target, scale, past_points)


@dataclass(frozen=True)
class BreakPrediction:
    """A predicted break and the curve behind it.

    Attributes:
        position: predicted break (first distance ``>= T`` whose smoothed mean excess exceeds
            ``threshold``), ``None`` if none up to ``target``.
        first_unseen_angle: rule (a); extrapolation_bound: rule (b), Liu et al. 2023's ``T_extra``.
        distances, excess: the mean excess over all heads at each sampled distance (nats of logit).
        slope: after the break, the excess's rise per ``T`` (least squares over the rest of the
            curve): how steeply the attention disturbance grows (a proxy for the loss's rise; not the loss).
    """

    position: int | None
    first_unseen_angle: int | None
    extrapolation_bound: int | None
    trained_length: int
    target: int
    threshold: float
    distances: tuple[int, ...]
    excess: tuple[float, ...]
    slope: float | None

    def to_dict(self) -> dict:
        return {"position": self.position, "first_unseen_angle": self.first_unseen_angle,
                "extrapolation_bound": self.extrapolation_bound, "trained_length": self.trained_length,
                "target": self.target, "threshold": self.threshold, "slope_per_T": self.slope,
                "distances": list(self.distances), "excess": [round(x, 5) for x in self.excess]}


def _smoothed(values: torch.Tensor, width: int) -> torch.Tensor:
    """Mean of each value and the next ``width - 1`` (fewer at the end): ``[D] -> [D]``."""
    sums = torch.cat((torch.zeros(1), values.cumsum(0)))
    stop = torch.clamp(torch.arange(values.numel()) + width, max=values.numel())
    return (sums[stop] - sums[:-1][: values.numel()]) / (stop - torch.arange(values.numel()))


def threshold_crossing(distances: torch.Tensor, excess: torch.Tensor, threshold: float) -> int | None:
    """First of ``distances [D]`` whose smoothed ``excess [D]`` exceeds ``threshold``, else ``None``."""
    over = torch.nonzero(_smoothed(excess, _SMOOTH) > threshold).flatten()
    return int(distances[int(over[0])]) if over.numel() else None


def predict_breaks(layers: list[tuple[torch.Tensor, torch.Tensor]], trained_cfg: RopeConfig, configs: dict[str, RopeConfig],
                   trained: int, target: int, *, threshold: float = EXCESS_THRESHOLD) -> dict[str, BreakPrediction]:
    """Rule (c) for a model whose layers gave ``layers`` on an input of at most ``T`` tokens, for every
    RoPE of ``configs`` (name -> the RoPE it is evaluated with, to ``target``).

    Args:
        layers: per layer, ``(q [Hq, Pq, Dh], k [Hkv, Pk, Dh])`` pre-rotation queries and keys (real; the
            first ``R`` channels of each head are rotary, in the config's layout); ``Hq`` a multiple of ``Hkv``.
        trained_cfg: the RoPE the model was trained with.
        trained, target: ``T`` and ``N`` (the predictor looks at distances up to ``N - 1``).

    Returns:
        name -> :class:`BreakPrediction`, with rules (a) and (b) beside rule (c).
    """
    if target <= trained:
        raise ValueError(f"target={target} is invalid: expected > trained length T={trained}")
    if not layers:
        raise ValueError("layers is empty: expected (q, k) of at least one layer")
    theta = method_frequencies(trained_cfg, trained)
    freqs = {name: method_frequencies(cfg, target) for name, cfg in configs.items()}
    rotary, layout = trained_cfg.rotary_dim, trained_cfg.layout
    curves = {name: [] for name in configs}
    for q, k in layers:
        if q.shape[0] % k.shape[0]:
            raise ValueError(f"query heads {q.shape[0]} is invalid: expected a multiple of key heads {k.shape[0]}")
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        scale = 1 / math.sqrt(q.shape[-1])
        products = _products(as_pairs(q[..., :rotary], layout), as_pairs(k[..., :rotary], layout))
        envelope = _scores(products, theta, _seen_distances(trained), scale).amax(-1)
        for name, freq in freqs.items():
            distances, excess = _excess(products, envelope, theta, freq, trained, target, scale, None)
            curves[name].append(excess)
    out = {}
    for name, freq in freqs.items():
        excess = torch.cat(curves[name]).mean(0)
        position = threshold_crossing(distances, excess, threshold)
        out[name] = BreakPrediction(position, first_unseen_angle(theta, freq, trained), extrapolation_bound(theta, freq, trained),
                                    trained, target, threshold, tuple(int(d) for d in distances),
                                    tuple(float(e) for e in excess), _slope(distances, excess, position, trained))
    return out


def _slope(distances: torch.Tensor, excess: torch.Tensor, position: int | None, trained: int) -> float | None:
    """Least-squares rise of ``excess`` per ``T`` from ``position`` on (``None`` without a break)."""
    if position is None:
        return None
    after = distances >= position
    x, y = distances[after].double() / trained, excess[after].double()
    if x.numel() < 2:
        return None
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def predict_break(layers: list[tuple[torch.Tensor, torch.Tensor]], trained_cfg: RopeConfig, cfg: RopeConfig, trained: int,
                  target: int, *, threshold: float = EXCESS_THRESHOLD) -> BreakPrediction:
    """:func:`predict_breaks` for one RoPE ``cfg``."""
    return predict_breaks(layers, trained_cfg, {"cfg": cfg}, trained, target, threshold=threshold)["cfg"]
