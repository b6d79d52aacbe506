"""Analysis of RoPE: pure functions returning tensors or dataclasses, one claim each.

- :mod:`.invariance`: the score depends on ``m - n`` only (and sinusoidal addition does not);
- :mod:`.decay`: the score against distance (RoFormer bound, expected score);
- :mod:`.wavelengths`: wavelengths, turns, critical dimension, out-of-range pairs;
- :mod:`.bounds`: Men et al. base lower bound, Chen et al. interpolation vs extrapolation bound;
- :mod:`.scaling`: per-pair scaling ratios and ramps.
"""

from ropelab.analysis.bounds import (
    InterpolationBound,
    cosine_sum,
    interpolation_vs_extrapolation,
    min_base_for_context,
    satisfies_base_criterion,
)
from ropelab.analysis.decay import DecayCurve, ScoreCurve, distance_grid, expected_score, roformer_decay_bound
from ropelab.analysis.invariance import InvarianceResult, relative_invariance
from ropelab.analysis.scaling import ScalingProfile, scaling_profile
from ropelab.analysis.wavelengths import (
    OutOfRange,
    critical_dimension,
    out_of_range_pairs,
    pair_turns,
    pair_wavelengths,
    unscaled,
)

__all__ = [
    "DecayCurve",
    "InterpolationBound",
    "InvarianceResult",
    "OutOfRange",
    "ScalingProfile",
    "ScoreCurve",
    "cosine_sum",
    "critical_dimension",
    "distance_grid",
    "expected_score",
    "interpolation_vs_extrapolation",
    "min_base_for_context",
    "out_of_range_pairs",
    "pair_turns",
    "pair_wavelengths",
    "relative_invariance",
    "roformer_decay_bound",
    "satisfies_base_criterion",
    "scaling_profile",
    "unscaled",
]
