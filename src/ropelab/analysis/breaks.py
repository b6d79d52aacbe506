"""Where a RoPE model breaks past its trained length: two config rules and one from the model's own q and k.

Notation: ``T`` trained length, ``N`` evaluation length, ``R`` rotary width, ``theta_i`` the trained
frequency of pair ``i`` (``i < R/2``), ``theta'_i`` the frequency a method uses, ``Delta`` the
distance ``m - n`` between a query at ``m`` and a key at ``n``.

- :func:`first_unseen_angle` (rule a): the first distance at which some pair meets an angle it never
  met in training (``Delta theta'_i > (T - 1) theta_i`` for a pair whose trained arc is under a turn).
  A lower bound: a model keeps working past it.
- :func:`extrapolation_bound` (rule b): Liu et al. 2023 ("Scaling Laws of RoPE-based Extrapolation",
  arXiv 2310.05209): the critical dimension ``d_extra = 2 ceil((R/2) log_beta(T / 2 pi))`` and
  ``T_extra = 2 pi beta^(d_extra / R)``, the period of the first pair that does not complete a turn in
  ``T``. For a scaled method we take the period of that same pair under the method's frequencies,
  ``2 pi / theta'_{d_extra/2}`` (equal to Liu et al.'s formula with the new base for NTK; ``s T_extra``
  for linear by ``s``): our generalisation, not theirs.
- :func:`logit_excess` and :func:`predict_break` (rule c, ropelab's predictor): from a model's own
  pre-rotation q and k on an input no longer than ``T``, the score each (query, key) pair would get
  at a distance ``Delta`` is ``q^T R(Delta theta') k / sqrt(Dh)``, computed analytically (no forward
  past ``T``). The pair's *seen envelope* is the highest score it gets at any distance below ``T``,
  with the trained frequencies and with the method's own. Its *excess* at ``Delta`` is how far its
  score rises above that envelope. Chen et al. 2023 (arXiv 2306.15595, Figure 2) show
  such scores "exploding" past the trained range on a LLaMA layer; Barbero et al. 2025 ("Round and
  Round We Go!", arXiv 2410.06205) find that Gemma 7B uses the lowest frequencies most (as
  semantic channels, not robust over long contexts). Those low-frequency pairs are exactly the ones
  that meet new angles, so every score here is weighted by the model's own ``|q_i| |k_i|`` per pair
  rather than counting pairs.

  From the same scores, :func:`far_mass` is the share of attention a query would give keys at unseen
  distances ``[T, n)`` when the sequence grows to ``n`` (each distance standing for one key, content
  averaged over the sample). It rises when far scores explode (the excess) and when many far keys
  share attention at ordinary scores.

  **Hypothesis** (ours, tested by ``benchmarks/break_validation.py``): perplexity breaks where the far
  mass, averaged over heads and queries and smoothed over ``T/8``, first exceeds ``phi``
  (:data:`FAR_MASS_THRESHOLD`, one constant calibrated on the lab split only), because from there on a
  query spends that share of its attention on keys at distances it never saw in training. The mean
  excess is reported beside it (its rise per ``T`` after the break says how steeply scores leave their
  envelope) but does not decide (:data:`EXCESS_THRESHOLD`, see its comment).
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
    "combine",
    "far_mass",
    "FAR_MASS_THRESHOLD",
    "method_frequencies",
]

#: phi, the share of attention on keys at unseen distances (:func:`far_mass`) at which perplexity is
#: predicted to break. Calibrated on the from-scratch lab models of benchmarks/break_validation.py only
#: (8 cases: bases 10, 500, 1e4, 1e6 at L = 32, 64; a grid search, `calibrate` there); the embedded
#: SmolLM2 cases are scored with it and never used to set it. See benchmarks/results/break_validation/.
FAR_MASS_THRESHOLD = 0.325
#: tau, the smoothed mean logit excess that would also decide a break. On the lab split every tau >= 0.2
#: gives the same error (the far mass always crosses first) and smaller ones are worse, so the excess is
#: reported (curve and slope), not used to decide: tau = inf.
EXCESS_THRESHOLD = math.inf

# Distances sampled below T for the seen envelope (besides every distance below 256), and past T per T.
_SEEN_POINTS = 1024
_PAST_POINTS_PER_T = 256
# The curves are smoothed over a window of T/8 distances before the thresholds (the measured break
# smooths over 1024 tokens = T/8 of SmolLM2), so one lucky distance does not read as a break.
_SMOOTH_FRACTION = 1 / 8


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
    first = (
        torch.floor(arc[open_pairs] / freq.to(torch.float64)[open_pairs] + 1e-9) + 1
    )  # 1e-9: float rounding of a ratio of 1
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
    """Every distance below 256 (where local attention puts its mass) and ``2048`` spread over ``[0, T)``."""
    spread = torch.linspace(0, trained - 1, min(trained, _SEEN_POINTS), dtype=torch.float64).round().long()
    return torch.unique(torch.cat((torch.arange(min(trained, 256)), spread)))


def _spans(distances: torch.Tensor, stop: int) -> torch.Tensor:
    """How many integer distances each of the sorted ``distances [D]`` stands for (up to ``stop``): ``[D]``."""
    edges = torch.cat(
        (distances[:1].double(), (distances[1:] + distances[:-1]).double() / 2, torch.tensor([float(stop)]))
    )
    return (edges[1:] - edges[:-1]).clamp(min=1.0)


def far_mass(
    seen: torch.Tensor, past: torch.Tensor, queries: int, seen_spans: torch.Tensor, past_spans: torch.Tensor
) -> torch.Tensor:
    """The share of attention a query would give keys at unseen distances ``[T, n)``, for each ``n``.

    ``A_q(Delta) = mean_k exp(score(q, k, Delta))`` over the sampled keys stands for a key at distance
    ``Delta`` (content averaged over the sample); ``F_q(n) = sum_{T <= Delta < n} A_q / sum_{Delta < n} A_q``,
    sums over the distance grids weighted by the distances each point stands for. It grows when far scores
    rise (the excess) and also when many far keys share attention at ordinary scores (the "unseen number
    of tokens" of Han et al. 2023, LM-Infinite, arXiv 2308.16137).

    The first key of the sample is left out: both gatherers put position 0 there, the attention sink
    (Xiao et al. 2023, arXiv 2309.17453), which a query meets at one distance only; spread over every
    distance it would stand for thousands of sinks.

    Args:
        seen: scores ``[H, Pq*Pk, Ds]`` at distances below ``T``; past: ``[H, Pq*Pk, Dp]`` past ``T``.
        seen_spans, past_spans: ``[Ds]``, ``[Dp]`` (:func:`_spans`).

    Returns:
        ``[H, Dp]``: ``F(n)`` at each past distance, averaged over queries.
    """
    heads = seen.shape[0]
    seen = seen.view(heads, queries, -1, seen.shape[-1])[
        :, :, 1:
    ]  # key 0 is the sink: it sits at one distance, not all
    past = past.view(heads, queries, -1, past.shape[-1])[:, :, 1:]
    near = (seen.logsumexp(2) + seen_spans.log().float()).logsumexp(-1)  # [H, Pq]
    far = torch.logcumsumexp(past.logsumexp(2) + past_spans.log().float(), -1)
    return torch.sigmoid(far - near[..., None]).mean(1)


def _past_distances(trained: int, target: int, past_points: int | None) -> torch.Tensor:
    count = min(target - trained, past_points or _PAST_POINTS_PER_T * max(1, math.ceil((target - trained) / trained)))
    return torch.unique(torch.linspace(trained, target - 1, count, dtype=torch.float64).round().long())


def _excess(products, envelope, trained_freq, freq, trained, target, scale, past_points, queries=None, constant=None):
    """Mean excess ``[H, D]`` of ``products`` at distances past ``T`` over ``envelope [H, P]`` (the trained
    one), the method's own in-context envelope added when its frequencies differ; with ``queries``, also
    :func:`far_mass` ``[H, D]`` (scores plus the non-rotary ``constant [H, P]``)."""
    seen_at = _seen_distances(trained)
    seen = _scores(products, freq, seen_at, scale)
    if not torch.equal(freq, trained_freq):
        envelope = torch.maximum(envelope, seen.amax(-1))
    distances = _past_distances(trained, target, past_points)
    past = _scores(products, freq, distances, scale)
    excess = (past - envelope[..., None]).clamp(min=0).mean(1)
    if queries is None:
        return distances, excess
    if constant is not None:
        seen, past = seen + constant[..., None], past + constant[..., None]
    return distances, excess, far_mass(seen, past, queries, _spans(seen_at, trained), _spans(distances, target))


def logit_excess(
    q: torch.Tensor,
    k: torch.Tensor,
    trained_freq: torch.Tensor,
    freq: torch.Tensor,
    trained: int,
    target: int,
    *,
    scale: float,
    past_points: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
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
        position: predicted break (first distance ``>= T`` whose smoothed far mass exceeds
            ``far_threshold``, or smoothed mean excess ``threshold``), ``None`` if none up to ``target``.
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
    far_mass: tuple[float, ...] = ()
    mechanism: str | None = None
    far_threshold: float = FAR_MASS_THRESHOLD

    def to_dict(self) -> dict:
        return {
            "position": self.position,
            "first_unseen_angle": self.first_unseen_angle,
            "extrapolation_bound": self.extrapolation_bound,
            "trained_length": self.trained_length,
            "target": self.target,
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "far_threshold": self.far_threshold,
            "mechanism": self.mechanism,
            "slope_per_T": self.slope,
            "distances": list(self.distances),
            "excess": [round(x, 5) for x in self.excess],
            "far_mass": [round(x, 5) for x in self.far_mass],
        }


def _smoothed(values: torch.Tensor, width: int) -> torch.Tensor:
    """Mean of each value and the next ``width - 1`` (fewer at the end): ``[D] -> [D]``."""
    sums = torch.cat((torch.zeros(1), values.cumsum(0)))
    stop = torch.clamp(torch.arange(values.numel()) + width, max=values.numel())
    return (sums[stop] - sums[:-1][: values.numel()]) / (stop - torch.arange(values.numel()))


def threshold_crossing(distances: torch.Tensor, values: torch.Tensor, threshold: float, window: int = 1) -> int | None:
    """First of ``distances [D]`` whose ``values [D]``, smoothed over ``window`` grid points, exceed
    ``threshold``; ``None`` if none does."""
    over = torch.nonzero(_smoothed(values, max(1, window)) > threshold).flatten()
    return int(distances[int(over[0])]) if over.numel() else None


def smoothing_window(distances: torch.Tensor, trained: int) -> int:
    """Grid points in a window of ``T/8`` distances (:data:`_SMOOTH_FRACTION`)."""
    if distances.numel() < 2:
        return 1
    step = float(distances[-1] - distances[0]) / (distances.numel() - 1)
    return max(1, round(_SMOOTH_FRACTION * trained / max(step, 1.0)))


def combine(
    distances: torch.Tensor, excess: torch.Tensor, mass: torch.Tensor, trained: int, tau: float, phi: float
) -> tuple[int | None, str | None]:
    """Rule (c)'s decision: the earlier of the smoothed excess crossing ``tau`` and the far mass crossing
    ``phi``; returns ``(position, "excess" | "far mass" | None)``."""
    window = smoothing_window(distances, trained)
    found = [
        (p, name)
        for p, name in (
            (threshold_crossing(distances, excess, tau, window), "excess"),
            (threshold_crossing(distances, mass, phi, window), "far mass"),
        )
        if p is not None
    ]
    return min(found) if found else (None, None)


def predict_breaks(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    trained_cfg: RopeConfig,
    configs: dict[str, RopeConfig],
    trained: int,
    target: int,
    *,
    threshold: float = EXCESS_THRESHOLD,
    far_threshold: float = FAR_MASS_THRESHOLD,
) -> dict[str, BreakPrediction]:
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
    masses = {name: [] for name in configs}
    for q, k in layers:
        if q.shape[0] % k.shape[0]:
            raise ValueError(f"query heads {q.shape[0]} is invalid: expected a multiple of key heads {k.shape[0]}")
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        scale = 1 / math.sqrt(q.shape[-1])
        products = _products(as_pairs(q[..., :rotary], layout), as_pairs(k[..., :rotary], layout))
        constant = (q[:, :, None, rotary:] * k[:, None, :, rotary:]).sum(-1).flatten(1, 2).float() * scale  # [H, P]
        envelope = _scores(products, theta, _seen_distances(trained), scale).amax(-1)
        for name, freq in freqs.items():
            distances, excess, mass = _excess(
                products, envelope, theta, freq, trained, target, scale, None, q.shape[1], constant
            )
            curves[name].append(excess)
            masses[name].append(mass)
    out = {}
    for name, freq in freqs.items():
        excess = torch.cat(curves[name]).mean(0)
        mass = torch.cat(masses[name]).mean(0)
        position, mechanism = combine(distances, excess, mass, trained, threshold, far_threshold)
        out[name] = BreakPrediction(
            position,
            first_unseen_angle(theta, freq, trained),
            extrapolation_bound(theta, freq, trained),
            trained,
            target,
            threshold,
            tuple(int(d) for d in distances),
            tuple(float(e) for e in excess),
            _slope(distances, excess, position, trained),
            tuple(float(m) for m in mass),
            mechanism,
            far_threshold,
        )
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


def predict_break(
    layers: list[tuple[torch.Tensor, torch.Tensor]],
    trained_cfg: RopeConfig,
    cfg: RopeConfig,
    trained: int,
    target: int,
    **thresholds: float,
) -> BreakPrediction:
    """:func:`predict_breaks` for one RoPE ``cfg``."""
    return predict_breaks(layers, trained_cfg, {"cfg": cfg}, trained, target, **thresholds)["cfg"]
