"""Rotary frequencies: a registry of pure functions ``rope_type -> (inv_freq, attention_factor)``.

Each function takes a :class:`~ropelab.config.RopeConfig` and the current sequence length and
returns ``inv_freq`` (float64, shape ``[rotary_dim // 2]``) and the attention factor that scales
cos and sin. ``proportional`` (p-RoPE) returns zeros for the pairs it leaves unrotated: angle 0,
cos 1, sin 0, so every consumer of ``inv_freq`` passes those channels through unchanged. Nothing here holds state: the dynamic types take ``seq_len`` as an argument (a Python
int or a 0-d integer tensor, so a compiled graph can pass ``positions.max() + 1`` without a graph
break) instead of mutating a buffer during the forward pass.

The semantics are those of transformers' ``modeling_rope_utils`` (the golden reference), computed
in float64 rather than float32.

Frequencies are returned in *pair order*: entry ``i`` belongs to pair ``i``, which reads position row
``cfg.pair_axes[i]`` (multi-axis RoPE). M-RoPE keeps the one-axis ladder (its sections only choose
the rows); axial RoPE lays two ladders side by side (:func:`axial_inv_freq`), or one ladder per slot with its own
size and base (:func:`axial_slot_inv_freq`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ropelab.config import RopeConfig

__all__ = [
    "rope_frequencies",
    "FREQUENCY_FUNCTIONS",
    "default_inv_freq",
    "axial_inv_freq",
    "axial_slot_inv_freq",
    "yarn_ramp",
    "yarn_mscale",
    "llama3_ramp",
]

SeqLen = int | torch.Tensor | None
FrequencyFn = Callable[[RopeConfig, SeqLen], tuple[torch.Tensor, float]]


def default_inv_freq(rotary_dim: int, base: float | torch.Tensor) -> torch.Tensor:
    """``theta_i = base ** (-2i / rotary_dim)`` for ``i = 0 .. rotary_dim/2 - 1`` (RoFormer eq. 15).

    Returns float64 ``[rotary_dim // 2]``. ``base`` may be a 0-d tensor (dynamic NTK).
    """
    if isinstance(base, torch.Tensor):
        exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float64, device=base.device) / rotary_dim
        return torch.pow(base.to(torch.float64), -exponents)
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim
    return torch.pow(torch.tensor(float(base), dtype=torch.float64), -exponents)


def _default(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    return default_inv_freq(cfg.rotary_dim, cfg.base), 1.0


def _linear(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    # Position interpolation (Chen et al. 2023, eq. 4): f'(x, m) = f(x, m / factor); dividing the
    # frequencies by the factor is the same rotation.
    return default_inv_freq(cfg.rotary_dim, cfg.base) / cfg.factor, 1.0


def _ntk_base(base: float | torch.Tensor, scale: float | torch.Tensor, rotary_dim: int) -> float | torch.Tensor:
    # "NTK-aware scaled RoPE" (bloc97, 2023): base' = base * scale ** (d / (d - 2)) stretches the
    # lowest frequency by exactly `scale` while leaving the highest almost unchanged.
    return base * scale ** (rotary_dim / (rotary_dim - 2))


def _ntk(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    if cfg.rotary_dim == 2:
        return _linear(cfg, seq_len)  # one pair: the NTK exponent d / (d - 2) is undefined
    return default_inv_freq(cfg.rotary_dim, _ntk_base(cfg.base, cfg.factor, cfg.rotary_dim)), 1.0


def _dynamic(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    # Dynamic NTK (transformers `_compute_dynamic_ntk_parameters`): the NTK scale grows with the
    # current length and is 1 (the default frequencies) up to max_position_embeddings.
    max_positions = cfg.max_position_embeddings
    if seq_len is None:
        length: float | torch.Tensor = float(max_positions)
    elif isinstance(seq_len, torch.Tensor):
        length = torch.clamp(seq_len.to(torch.float64), min=float(max_positions))
    else:
        length = float(max(int(seq_len), max_positions))
    scale = cfg.factor * length / max_positions - (cfg.factor - 1)
    if cfg.rotary_dim == 2:
        return default_inv_freq(2, cfg.base) / scale, 1.0
    return default_inv_freq(cfg.rotary_dim, _ntk_base(cfg.base, scale, cfg.rotary_dim)), 1.0


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN attention temperature ``0.1 * mscale * ln(scale) + 1`` (Peng et al. 2023, eq. 22; the
    ``mscale`` multiplier is DeepSeek-V2's generalisation). 1 for ``scale <= 1``."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_correction_dim(rotations: float, rotary_dim: int, base: float, length: int) -> float:
    # The pair index whose wavelength fits `rotations` full turns into `length` (YaRN, eq. 17 inverted).
    return rotary_dim * math.log(length / (rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_ramp(cfg: RopeConfig) -> torch.Tensor:
    """The YaRN ramp ``gamma`` per pair, float64 ``[rotary_dim // 2]``, in transformers' form.

    0 where the pair is interpolated (low frequencies, fewer than ``beta_slow`` turns in the
    original context), 1 where it is left alone (more than ``beta_fast`` turns).

    Between the two it is linear in the *pair index* ``i``: from the pair whose wavelength fits
    ``beta_fast`` turns into the original context to the one that fits ``beta_slow`` turns (eq. 17
    solved for the index), rounded outwards to whole pairs (floor and ceiling) unless
    ``truncate=False``. This is transformers' ``_compute_yarn_parameters`` (``find_correction_range``
    and ``linear_ramp_factor``), followed here because transformers is the golden reference: a
    ported model must get the same cos and sin. The paper (Peng et al. 2023, arXiv 2309.00071v2,
    section 3.2, eq. 17-20) defines the ramp as linear in the *number of turns*
    ``r = L / lambda_i``: ``gamma = (r - alpha) / (beta - alpha)`` clamped to [0, 1] (eq. 18), used
    in ``h(theta) = (1 - gamma) theta / s + gamma theta`` (eq. 20). Both forms are 0 and 1 at the
    same ends (up to the rounding to whole pairs); in between they differ, since ``r`` is
    exponential in ``i``.
    """
    beta_fast = cfg.beta_fast or 32.0  # YaRN paper, section 3.2 after Definition 2: alpha=1, beta=32 for Llama
    beta_slow = cfg.beta_slow or 1.0
    original = cfg.original_max_position_embeddings
    low = _yarn_correction_dim(beta_fast, cfg.rotary_dim, cfg.base, original)
    high = _yarn_correction_dim(beta_slow, cfg.rotary_dim, cfg.base, original)
    if cfg.truncate is None or cfg.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, cfg.rotary_dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = (torch.arange(cfg.rotary_dim // 2, dtype=torch.float64) - low) / (high - low)
    return 1.0 - ramp.clamp(0.0, 1.0)


def _yarn_factor(cfg: RopeConfig) -> float:
    if cfg.factor is not None:
        return cfg.factor
    return cfg.max_position_embeddings / cfg.original_max_position_embeddings


def _yarn(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    factor = _yarn_factor(cfg)
    if cfg.attention_factor is not None:
        attention_factor = cfg.attention_factor
    elif cfg.mscale and cfg.mscale_all_dim:
        attention_factor = yarn_mscale(factor, cfg.mscale) / yarn_mscale(factor, cfg.mscale_all_dim)
    else:
        attention_factor = yarn_mscale(factor)
    extrapolated = default_inv_freq(cfg.rotary_dim, cfg.base)
    keep = yarn_ramp(cfg)  # 1: keep the original frequency, 0: divide it by the factor
    inv_freq = extrapolated / factor * (1.0 - keep) + extrapolated * keep
    return inv_freq, float(attention_factor)


def _longrope(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    # LongRoPE (Ding et al. 2024): per-pair rescale factors, `long_factor` once the sequence is
    # longer than the pretraining context, `short_factor` otherwise.
    original = cfg.original_max_position_embeddings
    factor = cfg.factor if cfg.factor is not None else 1.0
    if cfg.attention_factor is not None:
        attention_factor = cfg.attention_factor
    elif factor <= 1.0:
        attention_factor = 1.0
    else:
        attention_factor = math.sqrt(1 + math.log(factor) / math.log(original))
    device = seq_len.device if isinstance(seq_len, torch.Tensor) else None
    short = torch.tensor(cfg.short_factor, dtype=torch.float64, device=device)
    long = torch.tensor(cfg.long_factor, dtype=torch.float64, device=device)
    if isinstance(seq_len, torch.Tensor):
        rescale = torch.where(seq_len.to(torch.int64) > original, long, short)
    else:
        rescale = long if seq_len is not None and int(seq_len) > original else short
    return default_inv_freq(cfg.rotary_dim, cfg.base).to(rescale.device) / rescale, float(attention_factor)


def llama3_ramp(cfg: RopeConfig) -> torch.Tensor:
    """Llama 3.1's blend weight per pair, float64 ``[rotary_dim // 2]`` (see :func:`_llama3`): 1 where
    the wavelength is below ``original / high_freq_factor`` (kept), 0 above ``original /
    low_freq_factor`` (divided by ``factor``), ``(original / wavelength - low) / (high - low)`` between.
    """
    wavelength = 2 * math.pi / default_inv_freq(cfg.rotary_dim, cfg.base)
    smooth = (cfg.original_max_position_embeddings / wavelength - cfg.low_freq_factor) / (
        cfg.high_freq_factor - cfg.low_freq_factor
    )
    return smooth.clamp(0.0, 1.0)


def _llama3(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    # Llama 3.1 frequency scaling (Meta's reference `apply_scaling`; values such as factor 8,
    # low 1, high 4, original 8192 come from each model's config): wavelengths shorter than
    # original/high_freq_factor are kept, longer than original/low_freq_factor are divided by
    # `factor`, and the band between is blended linearly in original/wavelength.
    inv_freq = default_inv_freq(cfg.rotary_dim, cfg.base)
    keep = llama3_ramp(cfg)
    return (1 - keep) * inv_freq / cfg.factor + keep * inv_freq, 1.0


def axial_inv_freq(rotary_dim: int, base: float, frequencies: str, num_axes: int = 2) -> torch.Tensor:
    """Axial RoPE frequencies by slot, float64 ``[rotary_dim // 2]``: the ladder of slot 0 (pairs
    ``[0, P/A)`` of a contiguous config, reading axis ``axial_order[0]``), then slot 1, ...;
    ``P = rotary_dim // 2``, ``A = num_axes``. An interleaved composition deals them out in turn
    (see ``RopeConfig.axial_composition``).

    ``"repeated"``: every slot gets the ladder of a RoPE over ``R/A`` channels,
    ``base ** (-2k / (R/A))`` (transformers' ``Qwen2VLVisionRotaryEmbedding``: ``head_dim // 2``
    channels per axis; ``MiniMaxM3VLVisionRotaryEmbedding``: ``2 * ((head_dim // 3) // 2)`` for each
    of t, h, w). ``"alternating"``: the ladder of a RoPE over ``R`` channels dealt out in turn,
    slot ``s`` taking entries ``s, s + A, ...`` (``PixtralVisionRotaryEmbedding``: ``inv_freq[0::2]``
    for the row, ``inv_freq[1::2]`` for the column).
    """
    if frequencies == "repeated":
        return default_inv_freq(rotary_dim // num_axes, base).repeat(num_axes)
    ladder = default_inv_freq(rotary_dim, base)
    return torch.cat([ladder[axis::num_axes] for axis in range(num_axes)])


def axial_slot_inv_freq(pairs: tuple[int, ...], bases: tuple[float, ...], num_pairs: int) -> torch.Tensor:
    """Repeated axial frequencies with a size and a base per slot, float64 ``[num_pairs]``: slot ``s``
    gets the ladder of a RoPE over ``2 * pairs[s]`` channels at ``bases[s]``, ``bases[s] ** (-k /
    pairs[s])``; the pairs past ``sum(pairs)`` get 0 and never turn (transformers'
    ``EsmFold2RotaryEmbedding``: spatial and space-uid ladders, then its inactive channels)."""
    ladders = [default_inv_freq(2 * size, base) for size, base in zip(pairs, bases)]
    return torch.cat([*ladders, torch.zeros(num_pairs - sum(pairs), dtype=torch.float64)])


def _axial(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    slots = cfg.num_axes
    if cfg.axial_frequencies == "repeated":
        # Without axial_pairs / axial_bases: the even split (RopeConfig checks num_pairs % slots == 0) at
        # one base, the same ladders as axial_inv_freq's "repeated" (2 * (num_pairs // slots) == rotary_dim // slots).
        pairs = cfg.axial_pairs or (cfg.num_pairs // slots,) * slots
        inv_freq = axial_slot_inv_freq(pairs, cfg.axial_bases or (cfg.base,) * slots, cfg.num_pairs)
    else:  # alternating (RopeConfig allows axial_pairs / axial_bases only with repeated)
        inv_freq = axial_inv_freq(cfg.rotary_dim, cfg.base, cfg.axial_frequencies, slots)
    if cfg.axial_composition == "interleaved":
        # The axes take pairs in turn: entry k of slot s's ladder goes to pair k * A + s (Kimi-K2.5's vision tower).
        inv_freq = inv_freq.view(cfg.num_axes, -1).T.flatten()
    return inv_freq, 1.0


def _proportional(cfg: RopeConfig, seq_len: SeqLen) -> tuple[torch.Tensor, float]:
    # p-RoPE (Barbero et al. 2025, "Round and Round We Go!", arXiv 2410.06205; transformers
    # `_compute_proportional_rope_parameters`, used by Gemma 4): the first `rotated_pairs` pairs keep
    # RoFormer's frequencies over the whole head width, base ** (-2i / head_dim); the others get
    # frequency 0 and carry no position. All are divided by `factor` (default 1).
    pair = torch.arange(cfg.head_dim // 2)
    inv_freq = torch.where(pair < cfg.rotated_pairs, default_inv_freq(cfg.head_dim, cfg.base), 0.0)
    return inv_freq / (cfg.factor or 1.0), 1.0


FREQUENCY_FUNCTIONS: dict[str, FrequencyFn] = {
    "default": _default,
    "linear": _linear,
    "ntk": _ntk,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "longrope": _longrope,
    "llama3": _llama3,
    "axial": _axial,
    "proportional": _proportional,
}


def rope_frequencies(cfg: RopeConfig, seq_len: SeqLen = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies and attention factor of a RoPE variant.

    Args:
        cfg: the variant.
        seq_len: current sequence length (``max(position) + 1``); used only by ``dynamic`` and
            ``longrope``. An int, a 0-d integer tensor, or None (the type's static default).

    Returns:
        ``(inv_freq, attention_factor)``: ``inv_freq`` is float64 ``[cfg.rotary_dim // 2]`` on
        the CPU (on ``seq_len``'s device when that is a tensor); ``attention_factor`` multiplies cos and sin (transformers' ``attention_scaling``).
    """
    return FREQUENCY_FUNCTIONS[cfg.rope_type](cfg, seq_len)
