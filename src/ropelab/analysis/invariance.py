"""Relative-position invariance: does the score of q and k depend on ``m - n`` only?

RoFormer (Su et al. 2021, eq. 16) shows that rotating ``q`` by ``m * theta`` and ``k`` by
``n * theta`` gives ``<R_m q, R_n k> = <q, R_{n-m} k>``: shifting both positions by the same offset
leaves the score unchanged. This module measures how well that holds *in floating point* at
offsets up to 10**7, for three ways of putting position in:

- ``ropelab``: :func:`ropelab.rotate` (angles formed exactly in float64, rounded once);
- ``naive float32``: the same rotation with angles ``float32(position) * float32(inv_freq)``, the
  way many reference implementations compute them;
- ``sinusoidal addition``: Vaswani et al. (2017, section 3.5) sinusoids *added* to q and k, which
  is not relative at all (the table is :func:`ropelab.encodings.sinusoidal.sinusoidal_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ropelab.config import RopeConfig
from ropelab.encodings.sinusoidal import sinusoidal_table
from ropelab.frequencies import rope_frequencies
from ropelab.rotary import apply_rotary, rotate

__all__ = ["InvarianceResult", "relative_invariance", "DEFAULT_OFFSETS", "METHODS"]

DEFAULT_OFFSETS = (0, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000)
DEFAULT_DISTANCES = (0, 1, 3, 17, 100, 1000)
#: The ways of adding position that :func:`relative_invariance` compares.
METHODS = ("ropelab", "naive float32", "sinusoidal addition")


@dataclass(frozen=True)
class InvarianceResult:
    """Score drift when both positions move by the same offset.

    Attributes:
        offsets: int64 ``[K]``, the common shift ``o`` of both positions.
        distances: int64 ``[M]``, the relative distances ``m - n`` tried.
        errors: method name -> float64 ``[K]``:
            ``max_over_distances |s(o + m - n, o) - s(m - n, 0)| / (|q| |k|)``, the drift of the
            score of one (q, k) pair, normalised so 1.0 means "as large as the score can be".
    """

    offsets: torch.Tensor
    distances: torch.Tensor
    errors: dict[str, torch.Tensor]

    def error_at(self, method: str, offset: int) -> float:
        """The drift of ``method`` at one of :attr:`offsets`."""
        index = (self.offsets == offset).nonzero()
        if index.numel() == 0:
            raise ValueError(f"offset={offset} is invalid: expected one of {self.offsets.tolist()}")
        return float(self.errors[method][index[0, 0]])


def _pair_positions(offsets: torch.Tensor, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Query positions ``o + delta`` and key positions ``o``, flattened to ``[K * M]``."""
    query = (offsets[:, None] + distances[None, :]).flatten()
    key = offsets[:, None].expand(-1, distances.numel()).flatten()
    return query, key


def _scores_ropelab(q, k, query_pos, key_pos, cfg) -> torch.Tensor:
    seq_len = int(max(query_pos.max(), key_pos.max())) + 1
    rq = rotate(q.expand(1, 1, query_pos.numel(), -1), query_pos, cfg, seq_len=seq_len)
    rk = rotate(k.expand(1, 1, key_pos.numel(), -1), key_pos, cfg, seq_len=seq_len)
    return (rq.double() * rk.double()).sum(-1).flatten()


def _naive_float32_tables(positions: torch.Tensor, cfg: RopeConfig, seq_len: int):
    inv_freq, attention_factor = rope_frequencies(cfg, seq_len)
    angles = positions.to(torch.float32)[:, None] * inv_freq.to(torch.float32)[None, :]  # rounded twice
    return torch.cos(angles) * attention_factor, torch.sin(angles) * attention_factor


def _scores_naive(q, k, query_pos, key_pos, cfg) -> torch.Tensor:
    seq_len = int(max(query_pos.max(), key_pos.max())) + 1
    cos_q, sin_q = _naive_float32_tables(query_pos, cfg, seq_len)
    cos_k, sin_k = _naive_float32_tables(key_pos, cfg, seq_len)
    rq = apply_rotary(q.expand(query_pos.numel(), -1), cos_q, sin_q, layout=cfg.layout)
    rk = apply_rotary(k.expand(key_pos.numel(), -1), cos_k, sin_k, layout=cfg.layout)
    return (rq.double() * rk.double()).sum(-1)


def _scores_sinusoidal(q, k, query_pos, key_pos, cfg) -> torch.Tensor:
    dim = cfg.head_dim - cfg.head_dim % 2
    q_in = q.double().expand(query_pos.numel(), -1).clone()
    k_in = k.double().expand(key_pos.numel(), -1).clone()
    q_in[:, :dim] += sinusoidal_table(query_pos, dim)
    k_in[:, :dim] += sinusoidal_table(key_pos, dim)
    return (q_in * k_in).sum(-1)  # float64: the drift is the encoding's, not rounding


_SCORERS = {"ropelab": _scores_ropelab, "naive float32": _scores_naive, "sinusoidal addition": _scores_sinusoidal}


def relative_invariance(
    cfg: RopeConfig,
    offsets: Sequence[int] = DEFAULT_OFFSETS,
    distances: Sequence[int] = DEFAULT_DISTANCES,
    *,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
) -> InvarianceResult:
    """Measure how much ``q . k`` changes when both positions shift by the same offset.

    One random pair ``q, k ~ N(0, I_D)`` (float32, ``D = cfg.head_dim``) is scored at query
    position ``o + delta`` and key position ``o`` for every offset ``o`` and distance ``delta``,
    and compared with its score at ``(delta, 0)``. For RoPE the two are equal in exact arithmetic
    (RoFormer eq. 16), so what remains is rounding; for sinusoidal addition the score contains
    ``q . PE(n) + PE(m) . k + PE(m) . PE(n)``, whose first two terms depend on the absolute positions.

    Args:
        cfg: the RoPE variant (its frequencies and layout; the sinusoids use base 10000).
        offsets: common shifts, non-negative, up to ~10**15 (positions stay exact in float64).
        distances: relative distances ``m - n >= 0``.
        seed: seed of the random ``q, k``.
        methods: a subset of :data:`METHODS`.

    Returns:
        :class:`InvarianceResult` with one drift curve ``[len(offsets)]`` per method.
    """
    unknown = [m for m in methods if m not in _SCORERS]
    if unknown:
        raise ValueError(f"methods={unknown!r} is invalid: expected a subset of {', '.join(METHODS)}")
    offsets_t = torch.tensor(list(offsets), dtype=torch.int64)
    distances_t = torch.tensor(list(distances), dtype=torch.int64)
    if (offsets_t < 0).any() or (distances_t < 0).any():
        raise ValueError("offsets and distances must be non-negative")
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(cfg.head_dim, generator=generator)
    k = torch.randn(cfg.head_dim, generator=generator)
    scale = float(q.double().norm() * k.double().norm())
    query_pos, key_pos = _pair_positions(offsets_t, distances_t)
    ref_query, ref_key = _pair_positions(torch.zeros(1, dtype=torch.int64), distances_t)
    errors = {}
    for method in methods:
        scorer = _SCORERS[method]
        shifted = scorer(q, k, query_pos, key_pos, cfg).reshape(len(offsets_t), len(distances_t))
        reference = scorer(q, k, ref_query, ref_key, cfg).reshape(1, len(distances_t))
        errors[method] = (shifted - reference).abs().amax(dim=1) / scale
    return InvarianceResult(offsets=offsets_t, distances=distances_t, errors=errors)
