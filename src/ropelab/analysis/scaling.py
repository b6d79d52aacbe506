"""What each scaling type does to each pair: the ratio to the unscaled frequency, and the ramp.

- linear (position interpolation, Chen et al. 2023): every pair divided by ``factor``;
- ntk (bloc97 2023): base raised to ``base * factor**(d/(d-2))``: the fastest pair kept, the slowest divided by ``factor``;
- yarn (Peng et al. 2023, section 3.2, eq. 17-20): pairs with more than ``beta_fast`` turns in the
  original context kept, fewer than ``beta_slow`` divided by ``factor``, a linear ramp between
  (linear in the pair index as in transformers; the paper's is linear in the number of turns);
- llama3 (Meta's Llama 3.1 reference): the same idea with wavelength thresholds
  ``original / high_freq_factor`` and ``original / low_freq_factor``;
- longrope (Ding et al. 2024): a searched factor per pair (``short_factor`` / ``long_factor``).

The ramps are the ones the frequencies use (:func:`ropelab.frequencies.yarn_ramp`,
:func:`ropelab.frequencies.llama3_ramp`), not re-derived here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ropelab.config import RopeConfig
from ropelab.frequencies import default_inv_freq, llama3_ramp, rope_frequencies, yarn_ramp

__all__ = ["ScalingProfile", "scaling_profile", "yarn_paper_ramp"]


@dataclass(frozen=True)
class ScalingProfile:
    """Per-pair view of a scaled variant.

    Attributes:
        default_inv_freq: float64 ``[R/2]``, ``base**(-2i/R)``.
        inv_freq: float64 ``[R/2]``, the variant's frequencies at ``seq_len``.
        ratio: float64 ``[R/2]``, ``inv_freq / default_inv_freq`` (1 = untouched, ``1/factor`` = interpolated).
        wavelengths: float64 ``[R/2]``, unscaled wavelengths ``2 pi / default_inv_freq``.
        ramp: float64 ``[R/2]`` or None: YaRN's ``gamma`` (1 keep, 0 interpolate) for yarn, the
            blend weight for llama3, None for the other types.
        attention_factor: the factor folded into cos and sin.
        seq_len: the length the frequencies were computed for.
    """

    default_inv_freq: torch.Tensor
    inv_freq: torch.Tensor
    ratio: torch.Tensor
    wavelengths: torch.Tensor
    ramp: torch.Tensor | None
    attention_factor: float
    seq_len: int | None


def scaling_profile(cfg: RopeConfig, seq_len: int | None = None) -> ScalingProfile:
    """Compare a variant's frequencies with the unscaled ones, pair by pair.

    Args:
        cfg: any variant.
        seq_len: the length dynamic / longrope variants see; default ``cfg.max_position_embeddings``
            (so longrope shows its long factors and dynamic its full stretch).

    Returns:
        :class:`ScalingProfile`.
    """
    length = seq_len if seq_len is not None else cfg.max_position_embeddings
    base_freq = default_inv_freq(cfg.rotary_dim, cfg.base)
    inv_freq, attention_factor = rope_frequencies(cfg, length)
    ramp = None
    if cfg.rope_type == "yarn":
        ramp = yarn_ramp(cfg)
    elif cfg.rope_type == "llama3":
        ramp = llama3_ramp(cfg)
    return ScalingProfile(
        default_inv_freq=base_freq,
        inv_freq=inv_freq,
        ratio=inv_freq / base_freq,
        wavelengths=2 * torch.pi / base_freq,
        ramp=ramp,
        attention_factor=float(attention_factor),
        seq_len=length,
    )


def yarn_paper_ramp(cfg: RopeConfig) -> torch.Tensor:
    """YaRN's ramp as the paper defines it (Peng et al. 2023, arXiv 2309.00071v2, section 3.2):
    ``gamma(r) = clamp((r - alpha) / (beta - alpha), 0, 1)`` (eq. 18) with ``r = L / lambda_i``
    turns of pair ``i`` in the original context ``L`` (eq. 17), ``alpha = beta_slow`` (default 1)
    and ``beta = beta_fast`` (default 32). Float64 ``[R/2]``; 1 keep, 0 interpolate.

    Linear in ``r``, hence exponential in the pair index, unlike
    :func:`ropelab.frequencies.yarn_ramp` (transformers' form, linear in the index, which is what
    the frequencies use). The two agree wherever the paper's ramp is exactly 0 or 1.
    """
    alpha, beta = cfg.beta_slow or 1.0, cfg.beta_fast or 32.0
    turns = cfg.original_max_position_embeddings * default_inv_freq(cfg.rotary_dim, cfg.base) / (2 * torch.pi)
    return ((turns - alpha) / (beta - alpha)).clamp(0.0, 1.0)
