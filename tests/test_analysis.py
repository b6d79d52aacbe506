"""Analysis: every function checked against the property or the published number it claims."""

import math

import numpy as np
import pytest
import torch

from ropelab import RopeConfig, rotate
from ropelab.analysis import (
    cosine_sum,
    critical_dimension,
    distance_grid,
    expected_score,
    interpolation_vs_extrapolation,
    min_base_for_context,
    out_of_range_pairs,
    pair_turns,
    pair_wavelengths,
    relative_invariance,
    roformer_decay_bound,
    satisfies_base_criterion,
    scaling_profile,
)
from ropelab.presets import preset

LLAMA2 = RopeConfig(head_dim=128, base=10000.0, max_position_embeddings=4096)


# ---------------------------------------------------------------- invariance
@pytest.fixture(scope="module")
def invariance():
    return relative_invariance(LLAMA2)


def test_ropelab_score_depends_on_distance_only_up_to_1e7(invariance):
    assert invariance.offsets.max() == 10_000_000
    assert float(invariance.errors["ropelab"].max()) < 1e-6  # float32 rounding of q, k, cos, sin


def test_naive_float32_angles_drift_at_large_offsets(invariance):
    naive = invariance.error_at("naive float32", 10_000_000)
    assert naive > 1e-3
    assert naive > 1000 * invariance.error_at("ropelab", 10_000_000)


def test_sinusoidal_addition_is_not_relative(invariance):
    errors = invariance.errors["sinusoidal addition"]
    assert float(errors[0]) == 0.0
    assert float(errors[1:].min()) > 1e-2  # already at offset 10, and at every offset after


@pytest.mark.parametrize("name", ["gpt-j-6b", "gpt-neox-20b", "llama-3.1-8b"])
def test_invariance_holds_for_interleaved_partial_and_scaled_heads(name):
    result = relative_invariance(preset(name), offsets=(0, 1_000_000), methods=("ropelab",))
    assert float(result.errors["ropelab"].max()) < 1e-6


# ---------------------------------------------------------------- score against distance
def test_roformer_bound_starts_at_its_closed_form_and_decays():
    curve = roformer_decay_bound(LLAMA2, torch.arange(0, 2000))
    assert curve.values[0] == pytest.approx((64 + 1) / 2)  # mean_j |S_j(0)| = mean_j j
    assert float(curve.values[1000:].mean()) < curve.values[0] / 5


def test_larger_base_decays_more_slowly():
    distances = torch.tensor([100, 1000])
    small = roformer_decay_bound(LLAMA2, distances).values
    large = roformer_decay_bound(LLAMA2.replace(base=500000.0), distances).values
    assert bool((large > small).all())


def test_expected_score_all_ones_matches_rotation():
    cfg = preset("gpt-neox-20b")  # partial rotation: 72 pass-through channels add a constant
    distances = torch.tensor([0, 1, 5, 300])
    curve = expected_score(cfg, distances, kind="ones")
    ones = torch.ones(1, 1, 1, cfg.head_dim, dtype=torch.float64)
    for distance, value in zip(distances.tolist(), curve.expected.tolist()):
        q = rotate(ones, torch.tensor([distance]), cfg)
        k = rotate(ones, torch.tensor([0]), cfg)
        assert float((q * k).sum()) == pytest.approx(value, rel=1e-9, abs=1e-9)
    assert curve.expected[0] == pytest.approx(cfg.head_dim)


def test_expected_score_random_mean_converges_to_trace():
    curve = expected_score(LLAMA2, torch.tensor([0, 10, 1000]), kind="random", samples=4000, seed=1)
    tolerance = 5 * curve.std / math.sqrt(4000)
    assert bool(((curve.mean - curve.expected).abs() < tolerance).all())


def test_distance_grid_is_sorted_and_bounded():
    grid = distance_grid(100_000, points=512)
    assert grid[0] == 0 and grid[-1] == 100_000 and bool((grid[1:] > grid[:-1]).all())
    assert torch.equal(distance_grid(10), torch.arange(11))


# ---------------------------------------------------------------- wavelengths
def test_wavelengths_and_turns():
    wavelengths = pair_wavelengths(LLAMA2)
    assert wavelengths[0] == pytest.approx(2 * math.pi)
    assert wavelengths[-1] == pytest.approx(2 * math.pi * 10000 ** (126 / 128))
    turns = pair_turns(LLAMA2, 4096)
    assert torch.allclose(turns, 4095 / wavelengths)


def test_critical_dimension_llama2_is_the_papers_92():
    assert critical_dimension(128, 10000.0, 4096) == 92


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-7b", "gpt-neox-20b", "gemma-7b", "falcon-7b"])
def test_critical_dimension_counts_the_pairs_that_break_at_L_plus_1(name):
    cfg = preset(name)
    length = cfg.trained_length
    assert out_of_range_pairs(cfg, length).count == 0
    broken = out_of_range_pairs(cfg, length + 1)
    assert cfg.rotary_dim - broken.dims == critical_dimension(cfg.rotary_dim, cfg.base, length)


def test_position_interpolation_keeps_every_pair_in_range():
    target = 4 * 4096
    plain = out_of_range_pairs(LLAMA2, target)
    interpolated = out_of_range_pairs(LLAMA2, target, target=LLAMA2.replace(rope_type="linear", factor=4.0))
    assert plain.count == 18 and interpolated.count == 0


# ---------------------------------------------------------------- bounds
# Lower bound of the base for d = 128 at L = 1k .. 16k (k = 1024), from two sources:
# - Men et al. 2024, "Base of RoPE Bounds Context Length" (arXiv 2405.14591), Table 2 (criterion eq. 11,
#   m in [0, L]); found by enumerating bases, which misses windows narrower than its spacing.
# - Su Jianlin, "Transformer升级之路：18、RoPE的底数选择原则" (kexue.fm/archives/10122), the table of the
#   section "数值求解" (criterion m in [0, L-1], a grid search refined 5 times by 10x).
MEN_TABLE_2 = {1024: 4.3e3, 2048: 1.6e4, 4096: 2.7e4, 8192: 8.4e4, 16384: 3.1e5}
SU_10122 = {1024: 4.3e3, 2048: 1.2e4, 4096: 2.7e4, 8192: 8.4e4, 16384: 2.3e5}


def _two_digits(x: float) -> float:
    return float(f"{x:.1e}")


@pytest.mark.parametrize("length", sorted(SU_10122))
def test_min_base_is_the_left_edge_of_the_first_admissible_window(length):
    bound = min_base_for_context(length)
    assert _two_digits(bound) == SU_10122[length]
    assert satisfies_base_criterion(length, 128, bound)
    assert not satisfies_base_criterion(length, 128, bound * (1 - 2e-4))


def test_min_base_agrees_with_men_et_al_table_2_except_where_their_enumeration_skipped_a_window():
    for length in (1024, 4096, 8192):
        assert _two_digits(min_base_for_context(length)) == MEN_TABLE_2[length]
    # 2k: 1.6e4 passes, but a window from 1.16e4 comes first; 16k: the first window is at 2.3e5, not 3.1e5.
    assert satisfies_base_criterion(2048, 128, MEN_TABLE_2[2048])
    for length in (2048, 16384):
        assert min_base_for_context(length) < 0.8 * MEN_TABLE_2[length]


def _least_cosine_sum(length: int, rotary_dim: int, base: float) -> float:
    """``min over m in [0, L] of B_m``, ``B_m = sum_{i < d/2} cos(m * base**(-2i/d))`` (Men et al. 2024,
    eq. 9 and 11), in numpy float64 straight from the formula: the test's own, not ropelab's."""
    theta = base ** (-np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)
    return float(np.cos(np.multiply.outer(np.arange(length + 1, dtype=np.float64), theta)).sum(axis=1).min())


def _first_window(length: int, low: float, high: float, step: float = 2.5e-4) -> tuple[float, float]:
    """The first admissible window of bases in ``[low, high]`` (``low`` must fail), found on a geometric
    grid of relative ``step`` and each edge bisected (log space) to 1e-7: ``(left, right)``. A window
    narrower than ``step`` could be missed, so callers check that the one found is wider."""
    admissible = lambda base: _least_cosine_sum(length, 128, base) >= 0  # noqa: E731
    grid = np.exp(np.arange(math.log(low), math.log(high), step))
    assert not admissible(grid[0]), "the scan must start at a base that fails"
    first = next(i for i, base in enumerate(grid) if admissible(base))
    after = next(i for i in range(first, len(grid)) if not admissible(grid[i]))

    def edge(good: float, bad: float) -> float:  # the admissible end of [good, bad] at the crossing
        while abs(math.log(good / bad)) > 1e-7:
            middle = math.sqrt(good * bad)
            good, bad = (middle, bad) if admissible(middle) else (good, middle)
        return good

    return edge(grid[first], grid[first - 1]), edge(grid[after - 1], grid[after])


def test_min_base_finds_windows_narrower_than_one_grid_step():
    """Each bound is checked against the first window an independent scan finds inside the interval
    that the sources' two digits allow (Men et al. 2024 Table 2 and Su Jianlin: 2.7e4 at L = 4096,
    4.3e3 at L = 1024, i.e. [2.65e4, 2.75e4) and [4.25e3, 4.35e3))."""
    grid_step = 10 ** (1 / 400) - 1  # min_base_for_context's steps_per_decade=400: 0.58%
    # L = 4096: the first window is far narrower than one grid step, and the search still finds its left edge.
    left, right = _first_window(4096, 2.65e4, 2.75e4)
    assert 2.5e-4 < right / left - 1 < grid_step / 5
    assert left <= min_base_for_context(4096) <= left * (1 + 1e-4)  # its relative_tolerance, from above
    assert not satisfies_base_criterion(4096, 128, right * (1 + 1e-5))  # just past the window's right edge
    # L = 1024: the bound is the left edge of the first window, and the admissible set is not an interval.
    left, right = _first_window(1024, 4.25e3, 4.35e3)
    assert left <= min_base_for_context(1024) <= left * (1 + 1e-4)
    bases = (left * (1 + 1e-3), right * (1 + 1e-3), 6.1e3)  # inside the window, just past it, far above
    independent = [_least_cosine_sum(1024, 128, b) >= 0 for b in bases]
    assert independent == [True, False, True]
    assert [satisfies_base_criterion(1024, 128, b) for b in bases] == independent
    assert float(cosine_sum(torch.arange(0, 1025), 128, 4000.0).min()) < 0


def test_min_base_is_monotone_in_context_length():
    bounds = [min_base_for_context(length) for length in (512, 1024, 2048, 4096)]
    assert bounds == sorted(bounds) and len(set(bounds)) == 4


def test_interpolation_bound_is_hundreds_of_times_below_extrapolation():
    result = interpolation_vs_extrapolation(LLAMA2, 8192)
    assert result.interpolation == pytest.approx(128 / (32 * math.log(10000)))  # 0.434 max|h|
    assert result.ratio > 2 * 32 * math.log(10000)  # Chen et al.: "at least ~600x"


# ---------------------------------------------------------------- scaling
def test_linear_scaling_divides_every_pair():
    profile = scaling_profile(LLAMA2.replace(rope_type="linear", factor=4.0))
    assert torch.allclose(profile.ratio, torch.full_like(profile.ratio, 0.25))
    assert profile.ramp is None


def test_llama3_keeps_fast_pairs_and_interpolates_slow_ones():
    profile = scaling_profile(preset("llama-3.1-8b"))
    assert profile.ratio[0] == pytest.approx(1.0) and profile.ratio[-1] == pytest.approx(1 / 8)
    assert bool((profile.ratio[1:] <= profile.ratio[:-1] + 1e-12).all())
    assert profile.ramp[0] == 1.0 and profile.ramp[-1] == 0.0


def test_yarn_ramp_and_ratio():
    profile = scaling_profile(preset("deepseek-v3"))
    assert profile.ramp[0] == 1.0 and profile.ramp[-1] == 0.0
    expected = profile.ramp + (1 - profile.ramp) / 40.0
    assert torch.allclose(profile.ratio, expected)


def test_longrope_ratio_is_the_long_factor_past_the_original_length():
    cfg = preset("phi-3-mini-128k-instruct")
    profile = scaling_profile(cfg)
    assert torch.allclose(profile.ratio, 1 / torch.tensor(cfg.long_factor, dtype=torch.float64))


def test_yarn_paper_ramp_matches_the_transformers_ramp_at_its_ends():
    from ropelab.analysis.scaling import yarn_paper_ramp
    from ropelab.frequencies import yarn_ramp

    cfg = LLAMA2.replace(rope_type="yarn", factor=16.0, original_max_position_embeddings=4096)
    paper, transformers = yarn_paper_ramp(cfg), yarn_ramp(cfg)
    ends = (paper == 0) | (paper == 1)
    assert bool(ends.any()) and bool((~ends).any())
    assert torch.equal(paper[ends], transformers[ends])
    assert not torch.allclose(paper[~ends], transformers[~ends])  # linear in r vs linear in the index


# ---------------------------------------------------------------- layering
def test_analysis_imports_no_presentation():
    """analysis is pure maths: importing it pulls in no printing, figures, CLI or explain package."""
    import subprocess
    import sys

    code = "import sys, ropelab.analysis; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    forbidden = {"rich", "matplotlib", "ropelab.plots", "ropelab.cli", "ropelab.explain", "ropelab.lab"}
    assert not forbidden & loaded
