"""``ropelab tour``: the geometry of RoPE in 14 steps, each one checked by running it.

Every step has a paragraph, a check that computes numbers and asserts the claim, and a figure.
:func:`run_steps` runs the checks and saves the figures as PNG, :func:`write_html` writes
``tour.html``, a single file with the images embedded (base64), so it opens in a browser without a
server; :func:`run_tour` does both. Nothing here prints: ``ropelab tour``
(:mod:`ropelab.explain.cli`) shows each step as it finishes.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ropelab.analysis.bounds import interpolation_vs_extrapolation, min_base_for_context
from ropelab.analysis.decay import expected_score, roformer_decay_bound
from ropelab.analysis.invariance import relative_invariance
from ropelab.analysis.wavelengths import critical_dimension, out_of_range_pairs, pair_turns, pair_wavelengths
from ropelab.config import RopeConfig
from ropelab.encodings.sinusoidal import sinusoidal_table
from ropelab.explain.cards import card_summary, compare_rows
from ropelab.io import atomic_write_text
from ropelab.presets import preset
from ropelab.rotary import rotate

__all__ = ["Step", "StepResult", "STEPS", "assert_all_passed", "run_step", "run_steps", "run_tour", "write_html"]

LLAMA2 = preset("llama-2-7b")  # head_dim 128, base 1e4, half layout, 4,096 trained positions


@dataclass(frozen=True)
class Step:
    """One stop of the tour: ``check()`` returns ``(lines, passed)``; ``figure()`` a Figure."""

    title: str
    text: str
    check: Callable[[], tuple[list[str], bool]]
    figure: Callable[[], object]


@dataclass(frozen=True)
class StepResult:
    number: int
    step: Step
    lines: list[str]
    passed: bool
    figure_path: str


def _rotation(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


# ----------------------------------------------------------------------------- checks
def _check_absolute() -> tuple[list[str], bool]:
    dim, trained = 64, 512
    table = sinusoidal_table(torch.arange(2 * trained), dim)
    slow = table[:, dim - 2]  # the slowest sine channel
    seen_max = float(slow[:trained].max())
    beyond_max = float(slow[trained:].max())
    lines = [
        f"slowest sine channel over trained positions 0..{trained - 1}: max {seen_max:.3f}",
        f"same channel over positions {trained}..{2 * trained - 1}: max {beyond_max:.3f} (never seen)",
        "a learned table has no row at all for position 512",
    ]
    return lines, beyond_max > seen_max


def _check_planes() -> tuple[list[str], bool]:
    lines, ok = [], True
    for layout, partner in (("half", 64), ("interleaved", 1)):
        cfg = LLAMA2.replace(layout=layout)
        x = torch.zeros(1, 1, 1, 128, dtype=torch.float64)
        x[..., 0] = 1.0
        y = rotate(x, torch.tensor([1]), cfg)[0, 0, 0]
        moved = (y.abs() > 1e-12).nonzero().flatten().tolist()
        lines.append(f"{layout}: one-hot channel 0 rotated by position 1 lands in channels {moved}")
        ok &= moved == [0, partner]
    lines.append("128 channels = 64 independent 2D planes; only the pairing differs between layouts")
    return lines, ok


def _check_distance() -> tuple[list[str], bool]:
    result = relative_invariance(LLAMA2, offsets=(0, 10, 100, 1000), methods=("ropelab", "sinusoidal addition"))
    rope, sinus = result.errors["ropelab"], result.errors["sinusoidal addition"]
    lines = [f"offset {o:>5}: RoPE drift {r:.1e}, sinusoidal-addition drift {s:.1e}"
             for o, r, s in zip(result.offsets.tolist(), rope.tolist(), sinus.tolist())]  # fmt: skip
    return lines, float(rope.max()) < 1e-6 and float(sinus[1:].min()) > 1e-2


def _check_speeds() -> tuple[list[str], bool]:
    wavelengths = pair_wavelengths(LLAMA2)
    turns = pair_turns(LLAMA2, 4096)
    lines = [
        f"pair 0: wavelength {wavelengths[0]:.2f} positions, {turns[0]:.0f} turns in 4096 tokens",
        f"pair 32: wavelength {wavelengths[32]:.0f}, {turns[32]:.2f} turns",
        f"pair 63: wavelength {wavelengths[63]:.0f}, {turns[63]:.3f} turns (not even one)",
    ]
    return lines, bool(turns[0] > 600 and turns[63] < 1)


def _check_rotation_matrix() -> tuple[list[str], bool]:
    a, b = 0.7, 1.9
    composed = _rotation(a) @ _rotation(b)
    orthogonal = _rotation(a).T @ _rotation(a)
    error_compose = float((composed - _rotation(a + b)).abs().max())
    error_orth = float((orthogonal - torch.eye(2, dtype=torch.float64)).abs().max())
    det = float(torch.linalg.det(_rotation(a)))
    lines = [
        f"|R(a) R(b) - R(a+b)| = {error_compose:.1e}",
        f"|R(a)^T R(a) - I| = {error_orth:.1e}",
        f"det R(a) = {det:.6f}",
    ]
    return lines, error_compose < 1e-12 and error_orth < 1e-12 and abs(det - 1) < 1e-12


def _check_one_pair() -> tuple[list[str], bool]:
    cfg = RopeConfig(head_dim=2, base=10000.0)  # one pair, theta = 1 rad per position
    q = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2)
    k = torch.tensor([0.6, 0.8], dtype=torch.float64).view(1, 1, 1, 2)
    m, n = 5, 2
    score = float((rotate(q, torch.tensor([m]), cfg) * rotate(k, torch.tensor([n]), cfg)).sum())
    closed = math.cos(math.atan2(0.8, 0.6) + n - m)  # |q||k| cos(angle_k + n*theta - m*theta)
    lines = [f"q at m={m}, k at n={n}: score {score:.6f}", f"|q||k| cos(phi_k - phi_q + (n - m) theta) = {closed:.6f}"]
    return lines, abs(score - closed) < 1e-12


def _check_dot_product() -> tuple[list[str], bool]:
    result = relative_invariance(LLAMA2, methods=("ropelab", "naive float32"))
    top = int(result.offsets.max())
    rope, naive = result.error_at("ropelab", top), result.error_at("naive float32", top)
    lines = [f"offset {top:,}: ropelab drift {rope:.1e} (float32 rounding of q, k, cos, sin)",
             f"offset {top:,}: naive float32 angles drift {naive:.1e}"]  # fmt: skip
    return lines, rope < 1e-6 and naive > 100 * rope


def _check_full_head() -> tuple[list[str], bool]:
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(1, 1, 1, 128, generator=generator, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 128, generator=generator, dtype=torch.float64)
    m, n = 700, 123
    head = float((rotate(q, torch.tensor([m]), LLAMA2) * rotate(k, torch.tensor([n]), LLAMA2)).sum())
    inv_freq = 10000.0 ** (-torch.arange(0, 128, 2, dtype=torch.float64) / 128)
    pairs = 0.0
    for i in range(64):
        qi = torch.stack((q[0, 0, 0, i], q[0, 0, 0, i + 64]))
        ki = torch.stack((k[0, 0, 0, i], k[0, 0, 0, i + 64]))
        pairs += float((_rotation(m * float(inv_freq[i])) @ qi) @ (_rotation(n * float(inv_freq[i])) @ ki))
    lines = [f"rotate() on the full head: {head:.9f}", f"sum over 64 separate 2x2 rotations: {pairs:.9f}"]
    return lines, abs(head - pairs) < 1e-9


def _check_score_shape() -> tuple[list[str], bool]:
    distances = torch.tensor([0, 10, 100, 1000, 4000])
    bound = roformer_decay_bound(LLAMA2, distances).values
    ones = expected_score(LLAMA2, distances, kind="ones").expected
    lines = [f"distance {d:>4}: RoFormer bound {b:6.2f}, all-ones score {s:8.2f}"
             for d, b, s in zip(distances.tolist(), bound.tolist(), ones.tolist())]  # fmt: skip
    return lines, bool(bound[0] == 32.5 and bound[-1] < bound[0] / 3 and ones[0] == 128)


def _check_encodings() -> tuple[list[str], bool]:
    generator = torch.Generator().manual_seed(0)
    q, k = (torch.randn(64, generator=generator, dtype=torch.float64) for _ in range(2))
    delta = 7

    def sinusoidal(offset):
        pos = torch.tensor([offset + delta, offset])
        pe = sinusoidal_table(pos, 64)
        return float((q + pe[0]) @ (k + pe[1]))

    rope = relative_invariance(RopeConfig(head_dim=64), offsets=(0, 1000), distances=(delta,), methods=("ropelab",))
    alibi = lambda offset: float(q @ k) - 0.5 * delta  # noqa: E731  (Press et al. 2022: bias -slope * distance)
    lines = [
        f"sinusoidal: score at (7, 0) {sinusoidal(0):.3f}, at (1007, 1000) {sinusoidal(1000):.3f}",
        f"RoPE: drift between the two {rope.error_at('ropelab', 1000):.1e}",
        f"ALiBi: {alibi(0):.3f} and {alibi(1000):.3f} (a bias on distance only)",
    ]
    return lines, abs(sinusoidal(0) - sinusoidal(1000)) > 1e-2 and rope.error_at("ropelab", 1000) < 1e-6


def _check_metric() -> tuple[list[str], bool]:
    bound = min_base_for_context(4096)
    lines = [
        f"critical dimension of LLaMA-2 (d=128, base 1e4, T=4096): {critical_dimension(128, 1e4, 4096)}",
        f"Men et al. lower bound of the base for 4096 tokens: {bound:.3g} (LLaMA-2 uses 1e4)",
        f"pairs out of range at 8192: {out_of_range_pairs(LLAMA2, 8192).count} of 64",
    ]
    return lines, critical_dimension(128, 1e4, 4096) == 92


def _check_failure() -> tuple[list[str], bool]:
    at_l = out_of_range_pairs(LLAMA2, 4096)
    past = out_of_range_pairs(LLAMA2, 4097)
    lines = [f"out-of-range pairs at 4096: {at_l.count}", f"out-of-range pairs at 4097: {past.count} (pairs {past.indices[0]}..{past.indices[-1]})",
             f"128 - 2 * {past.count} = {128 - past.dims} = the critical dimension"]  # fmt: skip
    return lines, at_l.count == 0 and past.count == 18 and 128 - past.dims == 92


def _check_meanings() -> tuple[list[str], bool]:
    names = ("gpt-j-6b", "gpt-neox-20b", "llama-2-7b")
    summaries = [card_summary(preset(n), preset(n).trained_length, with_base_bound=False) for n in names]
    rows = compare_rows(summaries)
    lines = [f"{name}: " + " | ".join(values) for name, values, differs in rows if differs][:6]
    lines.append(
        "scaled cards: "
        + ", ".join(f"{n} = {preset(n).rope_type}" for n in ("llama-3.1-8b", "deepseek-v3", "phi-3-mini-128k-instruct"))
    )
    differing = {name for name, _, differs in rows if differs}
    return lines, {"layout", "head_dim", "rotary_dim"} <= differing


def _check_interpolation() -> tuple[list[str], bool]:
    bounds = interpolation_vs_extrapolation(LLAMA2, 8192)
    interpolated = out_of_range_pairs(LLAMA2, 8192, target=LLAMA2.replace(rope_type="linear", factor=2.0))
    lines = [
        f"interpolation bound d / (32 ln c) = {bounds.interpolation:.3f} max|h|",
        f"extrapolation bound 2 max B(s) over 4096..8191 = {bounds.extrapolation:.0f} max|h| (B/d = {bounds.extrapolation_per_dim:.2f})",
        f"ratio {bounds.ratio:.0f}x (Chen et al.: at least ~600x)",
        f"out-of-range pairs at 8192 with interpolation factor 2: {interpolated.count}",
    ]
    return lines, bounds.ratio > 589 and interpolated.count == 0


# ----------------------------------------------------------------------------- figures
def _figures():
    from ropelab import plots

    base_lengths = [512, 1024, 2048, 4096, 8192]
    return {
        "absolute": lambda: plots.plot_absolute_embeddings(64, 512, 1024),
        "planes": lambda: plots.plot_pair_rotation(LLAMA2, pair=0, positions=(0, 1), vector=(0.8, 0.6)),
        "distance": lambda: plots.plot_invariance(
            relative_invariance(LLAMA2, offsets=(0, 10, 100, 1000, 10000), methods=("ropelab", "sinusoidal addition"))),
        "speeds": lambda: plots.plot_wavelength_ladder(LLAMA2, {"trained length": 4096}),
        "matrix": lambda: plots.plot_pair_rotation(LLAMA2, pair=0, positions=(0, 1, 2, 3, 4, 5)),
        "one_pair": lambda: plots.plot_pair_rotation(RopeConfig(head_dim=2), pair=0, positions=(2, 5), vector=(0.6, 0.8)),
        "dot": lambda: plots.plot_invariance(relative_invariance(LLAMA2)),
        "head": lambda: plots.plot_frequency_comparison({"base 1e4 (LLaMA-2)": LLAMA2, "base 5e5 (LLaMA-3)": preset("llama-3-8b")}),
        "shape": lambda: plots.plot_score_vs_distance({"base 1e4": LLAMA2, "base 5e5": LLAMA2.replace(base=5e5),
                                                       "llama-3.1 (llama3 x8)": preset("llama-3.1-8b")}),
        "encodings": lambda: plots.plot_encoding_comparison(),
        "metric": lambda: plots.plot_base_bound(base_lengths, [min_base_for_context(n) for n in base_lengths],
                                                {"llama-2-7b": preset("llama-2-7b"), "llama-7b": preset("llama-7b"),
                                                 "llama-3-8b": preset("llama-3-8b")}),
        "failure": lambda: plots.plot_out_of_range_vs_length(LLAMA2),
        "meanings": lambda: plots.plot_scaling({"llama-3.1-8b": preset("llama-3.1-8b"), "deepseek-v3": preset("deepseek-v3"),
                                                "phi-3-mini-128k": preset("phi-3-mini-128k-instruct")}),
        "interpolation": lambda: plots.plot_angle_coverage(LLAMA2, 16384),
    }  # fmt: skip


def _fig(key: str) -> Callable[[], object]:
    """The figure of step ``key``, built only when called (importing the tour does not import matplotlib)."""
    return lambda: _figures()[key]()


STEPS: tuple[Step, ...] = (
    Step("Absolute positions cannot extrapolate",
         "An absolute encoding gives each position its own vector: a learned table has a row per trained "
         "position and nothing after it, and even the sinusoids of Vaswani et al. have slow channels that, past "
         "the training length, take values the network never saw. The network must then map an unseen input.",
         _check_absolute, _fig("absolute")),
    Step("Pairs of dimensions as 2D planes",
         "RoPE reads a head of D channels as D/2 planes. Each plane holds two channels and is rotated on its own. "
         "Which two channels form a plane is a convention: GPT-NeoX and HF Llama pair channel i with i + D/2 "
         "('half'), GPT-J and Meta's Llama pair 2i with 2i+1 ('interleaved').",
         _check_planes, _fig("planes")),
    Step("Scores need distance, not position",
         "What attention should care about is how far apart two tokens are. Adding a position vector to q and k "
         "mixes absolute positions into the score (q.PE(n) + PE(m).k terms); a rotation does not.",
         _check_distance, _fig("distance")),
    Step("Pairs spinning at different speeds",
         "Plane i turns by theta_i = base^(-2i/d) radians per position: the first plane once every 6.3 tokens, the "
         "last once every ~54,000 for base 10000 and d = 128. Fast planes resolve nearby order, slow planes "
         "tell far from near.",
         _check_speeds, _fig("speeds")),
    Step("A 2x2 rotation",
         "R(a) = [[cos a, -sin a], [sin a, cos a]] turns a plane by a. Rotations compose by adding angles and are "
         "orthogonal, R(a)^T = R(-a), so they keep lengths; these two facts are all RoPE needs.",
         _check_rotation_matrix, _fig("matrix")),
    Step("RoPE on one (q, k) pair",
         "Rotate q by m*theta and k by n*theta. Their dot product is |q||k| times the cosine of the angle between "
         "them, and the rotations change that angle by (n - m)*theta: the score sees the positions only through "
         "their difference (RoFormer eq. 16).",
         _check_one_pair, _fig("one_pair")),
    Step("Rotating both vectors leaves the dot product unchanged",
         "Shift both positions by the same offset and the score must not move. In exact arithmetic it does not; "
         "in floating point it depends on how the angle is formed. ropelab forms position * theta in float64, a "
         "naive float32 product loses the angle at large positions.",
         _check_dot_product, _fig("dot")),
    Step("From one pair to a full head",
         "A head is the sum of its planes: the score of a 128-channel head is the sum of 64 independent 2D scores, "
         "each with its own speed. The base sets how widely the speeds are spread.",
         _check_full_head, _fig("head")),
    Step("The shape of the score against distance",
         "Summing planes that turn at different speeds makes the score of similar vectors fall, with ripples, as "
         "distance grows: RoFormer's long-term decay bound, and the exact score of q = k. A larger base or "
         "scaling stretches the curve.",
         _check_score_shape, _fig("shape")),
    Step("Sinusoidal vs RoPE vs ALiBi",
         "Place the same (q, k) at two absolute offsets and draw the score against distance: the sinusoidal curves "
         "move with the offset, RoPE's and ALiBi's (a bias -slope * distance on the score) coincide.",
         _check_encodings, _fig("encodings")),
    Step("The metric nobody tracks (extrapolation)",
         "Perplexity inside the training length says nothing about position L + 1. Two numbers do: the critical "
         "dimension (Liu et al. 2023), above which planes never completed a turn in training, and the smallest "
         "base for a context (Men et al. 2024), below which similar tokens lose to random ones at some distance.",
         _check_metric, _fig("metric")),
    Step("Failure at exactly trained length + 1",
         "A plane that never completed a turn has seen only the arc [0, L theta). At position L it meets a new "
         "angle, for every such plane at once: nothing is out of range at 4096, 18 planes are at 4097.",
         _check_failure, _fig("failure")),
    Step("Three meanings of 'RoPE'",
         "Model cards say 'RoPE' and mean different things: which channels pair up, how many rotate, the base, "
         "and, for long-context models, a scaling rule (llama3, YaRN, LongRoPE) that changes each plane's speed "
         "differently. Porting one as another gives wrong scores without an error.",
         _check_meanings, _fig("meanings")),
    Step("Why position interpolation works",
         "Position interpolation divides positions by L'/L, so every plane stays inside the arc it was trained on. "
         "Chen et al. (2023, section 2.3) bound the error of the interpolated score by d/(32 ln c) max|h|, hundreds "
         "of times below the extrapolation bound.",
         _check_interpolation, _fig("interpolation")),
)  # fmt: skip


def run_step(number: int, step: Step, out_dir: str) -> StepResult:
    """Run one step's check and save its figure as ``step_NN.png`` in ``out_dir``."""
    from ropelab.plots import save_figure

    lines, passed = step.check()
    path = save_figure(step.figure(), os.path.join(out_dir, f"step_{number:02d}.png"))
    return StepResult(number, step, lines, bool(passed), path)


EXPLORER_FILE = "explorer.html"  # written beside tour.html, and linked from it


def write_html(results: list[StepResult], path: str) -> str:
    """Write a self-contained HTML page (figures embedded as base64 PNG); returns ``path``.

    The page links to the interactive explorer, which :func:`write_explorer_beside` writes next to it.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>ropelab tour: the geometry of RoPE</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:auto;padding:1em;line-height:1.45}"
        "pre{background:#f4f4f4;padding:.6em}img{max-width:100%}.ok{color:#070}.fail{color:#b00}</style>",
        "</head><body><h1>The geometry of RoPE, in 14 runnable steps</h1>",
        f"<p>Turn the knobs yourself: <a href='{EXPLORER_FILE}'>the RoPE explorer</a> (same folder; the LLaMA-2 card "
        "of these steps, every number computed with the library's formulas).</p>",
    ]
    for result in results:
        with open(result.figure_path, "rb") as handle:
            image = base64.b64encode(handle.read()).decode("ascii")
        status = "<span class='ok'>check passed</span>" if result.passed else "<span class='fail'>check FAILED</span>"
        parts.append(f"<h2>{result.number}. {html.escape(result.step.title)}</h2>")
        parts.append(f"<p>{html.escape(result.step.text)}</p>")
        parts.append(f"<pre>{html.escape(chr(10).join(result.lines))}</pre><p>{status}</p>")
        parts.append(f"<img alt='{html.escape(result.step.title)}' src='data:image/png;base64,{image}'>")
    parts.append("</body></html>")
    atomic_write_text(path, "\n".join(parts))
    return path


def write_explorer_beside(tour_page: str) -> str:
    """Write the explorer page, with the tour's LLaMA-2 card selected, next to ``tour_page``; returns its path."""
    from ropelab.explain.explorer import write_explorer

    return str(write_explorer(LLAMA2, os.path.join(os.path.dirname(tour_page), EXPLORER_FILE)))


def run_steps(
    out_dir: str, steps: tuple[Step, ...] = STEPS, on_step: Callable[[StepResult], None] | None = None
) -> list[StepResult]:
    """Run every step in order, saving figures into ``out_dir`` (created if missing).

    ``on_step(result)`` is called after each step, so a caller can show progress.
    """
    os.makedirs(out_dir, exist_ok=True)
    results = []
    for number, step in enumerate(steps, start=1):
        results.append(run_step(number, step, out_dir))
        if on_step is not None:
            on_step(results[-1])
    return results


def assert_all_passed(results: list[StepResult]) -> None:
    """Raise ``AssertionError`` naming the steps whose check failed; a failed check is a bug, not bad input."""
    failed = [r.number for r in results if not r.passed]
    if failed:
        raise AssertionError(f"tour steps {failed} failed their checks")


def run_tour(out_dir: str, steps: tuple[Step, ...] = STEPS) -> list[StepResult]:
    """Run every step, save figures and ``tour.html`` into ``out_dir``; returns the results.

    Raises ``OSError`` if ``out_dir`` cannot be created, and ``AssertionError`` naming the steps
    whose check failed (after writing everything).
    """
    results = run_steps(out_dir, steps)
    write_explorer_beside(write_html(results, os.path.join(out_dir, "tour.html")))
    assert_all_passed(results)
    return results
