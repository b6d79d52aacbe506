"""Figures of RoPE's geometry: one function per figure, each returning a matplotlib Figure.

Every function is pure (it builds and returns a new Figure on the Agg backend; nothing is shown
or saved). Save with ``fig.savefig(path, dpi=..., bbox_inches="tight")`` or :func:`save_figure`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ropelab.analysis import (  # noqa: E402
    InvarianceResult,
    distance_grid,
    expected_score,
    out_of_range_pairs,
    roformer_decay_bound,
    scaling_profile,
)
from ropelab.config import RopeConfig  # noqa: E402
from ropelab.encodings.sinusoidal import sinusoidal_table  # noqa: E402
from ropelab.frequencies import default_inv_freq, rope_frequencies  # noqa: E402
from ropelab.io import atomic_write  # noqa: E402

__all__ = [
    "save_figure",
    "plot_pair_rotation",
    "plot_score_vs_distance",
    "plot_wavelength_ladder",
    "plot_angle_coverage",
    "plot_scaling",
    "plot_frequency_comparison",
    "plot_invariance",
    "plot_encoding_comparison",
    "plot_out_of_range_vs_length",
    "plot_absolute_embeddings",
    "plot_base_bound",
]

TWO_PI = 2 * math.pi


def save_figure(fig: Figure, path: str, dpi: int = 110) -> str:
    """Write ``fig`` as PNG (tight bounding box, so nothing is cut off), close it, return ``path``.

    The file is written atomically (:func:`ropelab.io.atomic_write`); missing folders are created.
    The format follows the extension, as with ``fig.savefig(path)`` (PNG when there is none).
    """
    image_format = os.path.splitext(path)[1][1:].lower() or "png"
    try:
        atomic_write(path, lambda handle: fig.savefig(handle, format=image_format, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes (tight bounding box), for embedding in a self-contained page; closes ``fig``."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _figure(width: float = 7.0, height: float = 4.2, ncols: int = 1) -> tuple[Figure, list]:
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False, layout="constrained")
    return fig, list(axes[0])


def plot_pair_rotation(
    cfg: RopeConfig, pair: int = 0, positions: Sequence[int] = (0, 1, 2, 3, 4, 5), vector=(1.0, 0.0)
) -> Figure:
    """One pair ``(a, b)`` of a vector rotated to several positions on the unit circle.

    At position ``m`` pair ``i`` is turned by ``m * theta_i`` (RoFormer eq. 13): the arrows for
    consecutive positions are ``theta_i`` radians apart.
    """
    inv_freq, _ = rope_frequencies(cfg)
    theta = float(inv_freq[pair])
    fig, (ax,) = _figure(5.2, 5.0)
    circle = torch.linspace(0, TWO_PI, 200)
    ax.plot(torch.cos(circle), torch.sin(circle), color="0.8", lw=1)
    a, b = vector
    colors = plt.cm.viridis(torch.linspace(0, 0.9, len(positions)).numpy())
    for color, m in zip(colors, positions):
        angle = m * theta
        x, y = a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle)
        ax.annotate("", xy=(x, y), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": color, "lw": 2})
        ax.text(1.12 * x, 1.12 * y, f"m={m}", color=color, ha="center", va="center", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_xlabel("first channel of the pair (a)")
    ax.set_ylabel("second channel of the pair (b)")
    ax.set_title(f"pair {pair}: theta = {theta:.3g} rad per position")
    return fig


def plot_score_vs_distance(configs: Mapping[str, RopeConfig], max_distance: int = 20000) -> Figure:
    """Left: RoFormer's relative upper bound (section 3.4.3); right: the score of q = k = all ones,
    divided by its value at distance 0. One curve per config, log-scaled distance."""
    distances = distance_grid(max_distance, points=1500)
    fig, (left, right) = _figure(11.0, 4.2, ncols=2)
    for label, cfg in configs.items():
        bound = roformer_decay_bound(cfg, distances)
        left.plot(distances[1:], bound.values[1:], label=label, lw=1)
        score = expected_score(cfg, distances, kind="ones")
        right.plot(distances[1:], score.expected[1:] / score.expected[0], label=label, lw=1)
    left.set_title("RoFormer bound (1/(d/2)) sum_j |S_j|")
    left.set_ylabel("relative upper bound")
    right.set_title("score of q = k = all ones")
    right.set_ylabel("score / score at distance 0")
    right.axhline(0, color="0.5", lw=0.8)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("relative distance m - n (tokens)")
        ax.legend(fontsize=8)
    return fig


def plot_wavelength_ladder(cfg: RopeConfig, contexts: Mapping[str, int], title: str = "") -> Figure:
    """Wavelength ``2 pi / theta_i`` of every pair (log scale) against horizontal context lengths:
    pairs above a line have not made one full turn within that context."""
    inv_freq, _ = rope_frequencies(cfg, max(contexts.values()))
    wavelengths = TWO_PI / inv_freq
    fig, (ax,) = _figure()
    ax.semilogy(range(len(wavelengths)), wavelengths, "o", ms=3, label="wavelength of pair i")
    for (label, length), color in zip(contexts.items(), ("C1", "C2", "C3", "C4")):
        ax.axhline(length, color=color, ls="--", lw=1.2, label=f"{label} = {length:,}")
    ax.set_xlabel("pair index i (channels 2i, 2i+1 of the rotated part)")
    ax.set_ylabel("wavelength (positions per full turn)")
    ax.set_title(title or f"wavelength ladder: rotary_dim {cfg.rotary_dim}, base {cfg.base:g}")
    ax.legend(fontsize=8)
    return fig


def plot_angle_coverage(cfg: RopeConfig, target_length: int, trained_length: int | None = None) -> Figure:
    """Per pair, the angle reached at the last position, in turns: trained (``L``), target without
    interpolation, and target with position interpolation by ``L'/L``. Pairs whose target reach
    passes the trained reach (and whose training arc was under one turn) are out of range."""
    length = trained_length or cfg.trained_length
    interpolated = cfg.replace(rope_type="linear", factor=target_length / length)
    plain = out_of_range_pairs(cfg, target_length, trained_length=length)
    rescued = out_of_range_pairs(cfg, target_length, trained_length=length, target=interpolated)
    pairs = range(cfg.num_pairs)
    fig, (ax,) = _figure(7.5, 4.4)
    ax.semilogy(pairs, plain.trained_reach / TWO_PI, "k-", lw=2, label=f"trained edge (L = {length:,})")
    ax.semilogy(pairs, plain.target_reach / TWO_PI, "C3--", lw=1.5, label=f"extrapolated to L' = {target_length:,}")
    ax.semilogy(
        pairs, rescued.target_reach / TWO_PI, "C2:", lw=2, label=f"interpolated (factor {target_length / length:g})"
    )
    ax.axhline(1.0, color="0.5", lw=0.8)
    if plain.count:
        first = plain.indices[0]
        ax.axvspan(first - 0.5, cfg.num_pairs - 0.5, color="C3", alpha=0.1, label=f"{plain.count} pairs out of range")
    ax.set_xlabel("pair index i")
    ax.set_ylabel("angle at the last position (full turns)")
    ax.set_title(f"angle coverage, rotary_dim {cfg.rotary_dim}, base {cfg.base:g}")
    ax.legend(fontsize=8)
    return fig


def plot_scaling(configs: Mapping[str, RopeConfig]) -> Figure:
    """Left: each pair's frequency divided by the unscaled one, against the pair's unscaled
    wavelength; right: the YaRN ramp / llama3 blend weight where the type has one."""
    fig, (left, right) = _figure(11.0, 4.2, ncols=2)
    for label, cfg in configs.items():
        profile = scaling_profile(cfg)
        left.loglog(profile.wavelengths, profile.ratio, ".-", lw=1, ms=3, label=f"{label} ({cfg.rope_type})")
        if profile.ramp is not None:
            right.semilogx(profile.wavelengths, profile.ramp, ".-", lw=1, ms=3, label=f"{label} ({cfg.rope_type})")
    left.set_title("per-pair frequency ratio to unscaled")
    left.set_ylabel("scaled theta_i / unscaled theta_i")
    right.set_title("ramp: 1 = keep, 0 = interpolate")
    right.set_ylabel("YaRN gamma / llama3 blend weight")
    right.set_ylim(-0.05, 1.05)
    for ax in (left, right):
        ax.set_xlabel("unscaled wavelength of the pair (positions)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def plot_frequency_comparison(configs: Mapping[str, RopeConfig], seq_len: int | None = None) -> Figure:
    """``theta_i`` of several configs against the pair's relative position ``2i / R`` in the
    rotated block, so heads of different widths line up."""
    fig, (ax,) = _figure()
    for label, cfg in configs.items():
        inv_freq, _ = rope_frequencies(cfg, seq_len or cfg.max_position_embeddings)
        x = torch.arange(cfg.num_pairs, dtype=torch.float64) * 2 / cfg.rotary_dim
        ax.semilogy(x, inv_freq, ".-", lw=1, ms=3, label=f"{label} (R={cfg.rotary_dim}, base {cfg.base:g})")
    ax.set_xlabel("relative pair position 2i / rotary_dim")
    ax.set_ylabel("theta_i (radians per position)")
    ax.set_title("per-pair frequencies")
    ax.legend(fontsize=8)
    return fig


def plot_invariance(result: InvarianceResult) -> Figure:
    """Score drift against the common offset of both positions, one line per method (log-log;
    zero drift is drawn at the bottom of the axis)."""
    fig, (ax,) = _figure()
    floor = 1e-12
    offsets = result.offsets.clamp(min=1).double()
    for method, errors in result.errors.items():
        ax.loglog(offsets[1:], errors[1:].clamp(min=floor), "o-", label=method)
    ax.set_xlabel("offset added to both positions")
    ax.set_ylabel("|score drift| / (|q| |k|)")
    ax.set_title("does q.k depend on m - n only?")
    ax.legend(fontsize=8)
    return fig


def _alibi_bias(distances: torch.Tensor, slope: float) -> torch.Tensor:
    # ALiBi (Press et al. 2022, section 3): a causal bias -slope * (i - j) added to the score.
    return -slope * distances.double()


def plot_encoding_comparison(dim: int = 64, max_distance: int = 64, offsets: Sequence[int] = (0, 1000)) -> Figure:
    """The score of one random (q, k) pair against distance for three encodings, with the pair
    placed at two absolute offsets: sinusoidal addition (curves differ), RoPE and ALiBi (curves coincide)."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(dim, generator=generator, dtype=torch.float64)
    k = torch.randn(dim, generator=generator, dtype=torch.float64)
    distances = torch.arange(max_distance + 1)
    inv_freq = default_inv_freq(dim, 10000.0)
    fig, axes = _figure(12.0, 3.8, ncols=3)
    for offset, style in zip(offsets, ("-", "--")):
        query_pos, key_pos = offset + distances, torch.full_like(distances, offset)
        sin_scores = ((q + sinusoidal_table(query_pos, dim)) * (k + sinusoidal_table(key_pos, dim))).sum(-1)
        angles = distances.double()[:, None] * inv_freq  # the RoPE score depends on m - n (RoFormer eq. 16)
        half = dim // 2
        qa, qb, ka, kb = q[:half], q[half:], k[:half], k[half:]
        rope_scores = (torch.cos(angles) * (qa * ka + qb * kb) + torch.sin(angles) * (qa * kb - qb * ka)).sum(-1)
        alibi_scores = (q * k).sum() + _alibi_bias(distances, 0.5)
        for ax, scores in zip(axes, (sin_scores, rope_scores, alibi_scores)):
            ax.plot(distances, scores, style, label=f"both positions + {offset}")
    for ax, title in zip(axes, ("sinusoidal addition", "RoPE (rotation)", "ALiBi (bias, slope 1/2)")):
        ax.set_title(title)
        ax.set_xlabel("relative distance m - n")
        ax.set_ylabel("score q.k")
        ax.legend(fontsize=8)
    return fig


def plot_out_of_range_vs_length(cfg: RopeConfig, max_factor: float = 4.0, trained_length: int | None = None) -> Figure:
    """Number of out-of-range pairs against the target length: zero up to ``L``, a jump at ``L + 1``."""
    length = trained_length or cfg.trained_length
    targets = sorted({*range(length - 64, length + 65, 4), length, length + 1,
                      *torch.linspace(length, int(max_factor * length), 60).round().long().tolist()})  # fmt: skip
    counts = [out_of_range_pairs(cfg, t, trained_length=length).count for t in targets]
    fig, (ax,) = _figure()
    ax.step(targets, counts, where="post")
    ax.axvline(length, color="C3", ls="--", lw=1, label=f"trained length L = {length:,}")
    ax.set_xscale("log")
    ax.set_xlabel("context length L' (tokens)")
    ax.set_ylabel("pairs meeting unseen angles")
    ax.set_title(f"out-of-range pairs, rotary_dim {cfg.rotary_dim}, base {cfg.base:g}")
    ax.legend(fontsize=8)
    return fig


def plot_absolute_embeddings(dim: int = 64, trained_length: int = 512, shown_length: int = 1024) -> Figure:
    """Left: sinusoidal absolute embeddings (channels against position) with the trained length
    marked; right: the slowest channels never complete a period inside the trained range, so
    positions past it are new inputs to the network."""
    positions = torch.arange(shown_length)
    table = sinusoidal_table(positions, dim)
    fig, (left, right) = _figure(11.0, 4.0, ncols=2)
    image = left.imshow(table.T.numpy(), aspect="auto", cmap="RdBu", origin="lower", extent=(0, shown_length, 0, dim))
    left.axvline(trained_length, color="k", ls="--", lw=1.2)
    left.set_xlabel("absolute position")
    left.set_ylabel("embedding channel")
    left.set_title(f"sinusoidal embedding (trained up to {trained_length})")
    fig.colorbar(image, ax=left, label="value")
    for channel in (dim - 2, dim - 6, dim - 12):
        right.plot(positions, table[:, channel], lw=1, label=f"channel {channel}")
    right.axvspan(trained_length, shown_length, color="C3", alpha=0.1, label="never seen in training")
    right.set_xlabel("absolute position")
    right.set_ylabel("embedding value")
    right.set_title("slow channels leave the trained range")
    right.legend(fontsize=8)
    return fig


def plot_base_bound(lengths: Sequence[int], bounds: Sequence[float], presets: Mapping[str, RopeConfig] = ()) -> Figure:
    """Men et al. (2024) lower bound on the base against context length (log-log), with presets
    drawn at (trained length, base)."""
    fig, (ax,) = _figure()
    ax.loglog(lengths, bounds, "o-", label="lower bound of the base (Men et al. 2024)")
    for label, cfg in dict(presets).items():
        ax.loglog([cfg.trained_length], [cfg.base], "s", label=label)
    ax.set_xlabel("context length")
    ax.set_ylabel("RoPE base")
    ax.set_title("smallest base with sum_i cos(m theta_i) >= 0 for all m <= L")
    ax.legend(fontsize=7)
    return fig
