"""``ropelab explain``, ``ropelab compare`` and ``ropelab tour``.

- ``explain <preset | config.json> [--context N] [--plot FILE.png]``: a table of what this card's
  "RoPE" is, then a verdict in plain words: what breaks at ``--context`` and what would rescue it.
- ``compare A B [C ...]``: the cards side by side, every differing row highlighted.
- ``tour [--out DIR]``: the learning path, 14 steps, each a paragraph, a check with numbers and a
  figure, collected into a self-contained ``tour.html``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from ropelab.analysis.bounds import min_base_for_context
from ropelab.analysis.wavelengths import critical_dimension, out_of_range_pairs, pair_wavelengths, unscaled
from ropelab.config import RopeConfig
from ropelab.errors import CliError
from ropelab.frequencies import rope_frequencies

__all__ = ["register", "demo", "load_config", "card_summary", "verdict", "CardSummary"]

# Above this context the base bound is skipped by default (it scans every position, ~seconds per 10**5).
_BASE_BOUND_LIMIT = 1 << 20


def load_config(spec: str) -> RopeConfig:
    """A preset name or a path to a ``config.json`` as a :class:`RopeConfig`; a user error otherwise."""
    from ropelab.presets import preset

    looks_like_path = spec.endswith(".json") or os.sep in spec or os.path.exists(spec)
    return RopeConfig.from_hf(spec) if looks_like_path else preset(spec)


@dataclass(frozen=True)
class CardSummary:
    """The numbers ``explain`` prints for one config at one context length."""

    cfg: RopeConfig
    context: int
    trained_length: int | None
    attention_factor: float
    shortest_wavelength: float
    longest_wavelength: float
    critical_dimension: int | None
    out_of_range: int | None
    out_of_range_unscaled: int | None
    min_base: float | None


def card_summary(cfg: RopeConfig, context: int, *, with_base_bound: bool = True) -> CardSummary:
    """Everything ``explain`` reports for ``cfg`` at ``context`` tokens."""
    _, attention_factor = rope_frequencies(cfg, context)
    wavelengths = pair_wavelengths(cfg, context)
    trained = cfg.trained_length
    critical = critical_dimension(cfg.rotary_dim, cfg.base, trained) if trained else None
    out, out_plain = None, None
    if trained:
        base_cfg = unscaled(cfg)
        out = out_of_range_pairs(base_cfg, context, trained_length=trained, target=cfg).count
        out_plain = out_of_range_pairs(base_cfg, context, trained_length=trained).count
    min_base = min_base_for_context(context, cfg.rotary_dim) if with_base_bound and context <= _BASE_BOUND_LIMIT else None
    return CardSummary(
        cfg=cfg,
        context=context,
        trained_length=trained,
        attention_factor=float(attention_factor),
        shortest_wavelength=float(wavelengths.min()),
        longest_wavelength=float(wavelengths.max()),
        critical_dimension=critical,
        out_of_range=out,
        out_of_range_unscaled=out_plain,
        min_base=min_base,
    )


def _scaling_text(cfg: RopeConfig) -> str:
    keys = ("factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor",
            "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor")  # fmt: skip
    parts = [f"{key}={getattr(cfg, key):g}" for key in keys if getattr(cfg, key) is not None]
    if cfg.short_factor is not None:
        parts.append(f"short_factor[{len(cfg.short_factor)}] {min(cfg.short_factor):.3g}..{max(cfg.short_factor):.3g}")
        parts.append(f"long_factor[{len(cfg.long_factor)}] {min(cfg.long_factor):.3g}..{max(cfg.long_factor):.3g}")
    return cfg.rope_type + (" (" + ", ".join(parts) + ")" if parts else "")


def _layout_text(cfg: RopeConfig) -> str:
    if cfg.layout == "half":
        return "half (pair i = channels i, i + R/2; GPT-NeoX / HF Llama)"
    return "interleaved (pair i = channels 2i, 2i+1; GPT-J / Meta Llama)"


def summary_rows(summary: CardSummary) -> list[tuple[str, str]]:
    """The table rows of ``explain`` as (name, value) strings."""
    cfg = summary.cfg
    rows = [
        ("source", cfg.source or "-"),
        ("layout", _layout_text(cfg)),
        ("head_dim / rotary_dim", f"{cfg.head_dim} / {cfg.rotary_dim} ({cfg.partial_rotary_factor:.0%} rotated)"),
        ("base (rope_theta)", f"{cfg.base:g}"),
        ("scaling", _scaling_text(cfg)),
        ("trained length", f"{summary.trained_length:,}" if summary.trained_length else "unknown"),
        ("extended length", f"{cfg.max_position_embeddings:,}" if cfg.max_position_embeddings else "unknown"),
        ("attention factor", f"{summary.attention_factor:.4g} at {summary.context:,} tokens"),
        ("shortest wavelength", f"{summary.shortest_wavelength:.4g} positions"),
        ("longest wavelength", f"{summary.longest_wavelength:.4g} positions"),
        ("critical dimension", _optional(summary.critical_dimension, f" of {cfg.rotary_dim} (Liu et al. 2023)")),
        (f"pairs out of range at {summary.context:,}", _out_of_range_text(summary)),
        (f"min base for {summary.context:,}", _optional(summary.min_base, " (Men et al. 2024)", fmt="{:.3g}")),
    ]
    return rows


def _optional(value, suffix: str = "", fmt: str = "{}") -> str:
    return "not computed" if value is None else fmt.format(value) + suffix


def _out_of_range_text(summary: CardSummary) -> str:
    if summary.out_of_range is None:
        return "unknown (no trained length)"
    text = f"{summary.out_of_range} of {summary.cfg.num_pairs}"
    if summary.cfg.rope_type != "default":
        text += f" (unscaled: {summary.out_of_range_unscaled})"
    return text


def verdict(summary: CardSummary) -> str:
    """A plain-words paragraph: what this card's RoPE is, what breaks at the context, what rescues it."""
    cfg, context, trained = summary.cfg, summary.context, summary.trained_length
    partial = "" if cfg.rotary_dim == cfg.head_dim else f" (only {cfg.rotary_dim} of {cfg.head_dim} channels; the rest carry no position)"
    sentences = [
        f"'RoPE' here means: rotate {cfg.num_pairs} pairs{partial} in the {cfg.layout} layout, "
        f"base {cfg.base:g}, frequencies {_scaling_text(cfg)}."
    ]
    if not trained:
        sentences.append("The config names no trained length, so nothing can be said about extrapolation.")
        return " ".join(sentences)
    if context <= trained:
        sentences.append(
            f"At {context:,} tokens every position is within the pretraining length {trained:,}: each pair "
            "only meets angles it saw in training. Nothing breaks and nothing needs rescuing."
        )
    elif summary.out_of_range == 0:
        sentences.append(
            f"At {context:,} tokens (past the pretraining length {trained:,}) the {cfg.rope_type} scaling keeps "
            f"every pair inside its trained arc (without it {summary.out_of_range_unscaled} pairs would leave it)."
        )
    else:
        factor = context / trained
        scaled = cfg.rope_type != "default"
        claim = (
            f" The card claims {cfg.max_position_embeddings:,} tokens after {cfg.rope_type} scaling, so these "
            "angles are expected to be covered by its long-context training."
            if scaled and cfg.max_position_embeddings and context <= cfg.max_position_embeddings
            else ""
        )
        sentences.append(
            f"At {context:,} tokens, {summary.out_of_range} of {cfg.num_pairs} pairs (the slowest, above the "
            f"critical dimension {summary.critical_dimension}) reach angles never seen in the first {trained:,} "
            f"positions: without long-context training, expect attention to degrade from position {trained + 1:,} on."
            + claim
        )
        if not claim:
            sentences.append(
                f"Rescue: position interpolation (rope_type linear, factor {factor:g}) maps every position back "
                f"into the trained range (Chen et al. 2023: ~1000 fine-tuning steps); YaRN (factor {factor:g}, "
                f"original {trained:,}) interpolates only the slow pairs and works with little or no fine-tuning."
            )
    if summary.min_base is not None:
        if cfg.base >= summary.min_base:
            sentences.append(
                f"Its base {cfg.base:g} is above the {summary.min_base:.3g} that Men et al. (2024) require for "
                f"{context:,} tokens, so similar tokens stay distinguishable from random ones at every distance."
            )
        else:
            sentences.append(
                f"Its base {cfg.base:g} is below the {summary.min_base:.3g} that Men et al. (2024) require for "
                f"{context:,} tokens: at some distances a similar token scores lower than a random one "
                "(a superficial long context), whatever the perplexity says."
            )
    return " ".join(sentences)


def _context_from(args, cfg: RopeConfig) -> int:
    if args.context is None:
        return cfg.max_position_embeddings or cfg.trained_length or 4096
    if args.context <= 0:
        raise CliError(f"--context={args.context} is invalid: expected a positive number of tokens")
    return args.context


def _explain(args: argparse.Namespace) -> None:
    if args.context is not None and args.context <= 0:
        raise CliError(f"--context={args.context} is invalid: expected a positive number of tokens")
    cfg = load_config(args.config)
    context = _context_from(args, cfg)
    summary = card_summary(cfg, context)
    console = Console()
    table = Table(title=f"RoPE of {args.config}", show_header=True, header_style="bold")
    table.add_column("property")
    table.add_column("value")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    console.print(table)
    console.print(verdict(summary))
    if args.plot:
        from ropelab.plots import plot_angle_coverage, plot_wavelength_ladder, save_figure

        trained = summary.trained_length
        if trained and context > trained:
            fig = plot_angle_coverage(unscaled(cfg), context, trained_length=trained)
        else:
            fig = plot_wavelength_ladder(cfg, {"context": context, **({"trained": trained} if trained else {})})
        try:
            save_figure(fig, args.plot)
        except OSError as error:
            raise CliError(f"--plot={args.plot!r} could not be written: {error.strerror}") from None
        console.print(f"figure: {args.plot}")


_COMPARE_FIELDS = (
    ("layout", lambda s: s.cfg.layout),
    ("head_dim", lambda s: s.cfg.head_dim),
    ("rotary_dim", lambda s: s.cfg.rotary_dim),
    ("base", lambda s: f"{s.cfg.base:g}"),
    ("rope_type", lambda s: s.cfg.rope_type),
    ("scaling", lambda s: _scaling_text(s.cfg)),
    ("trained length", lambda s: s.trained_length),
    ("extended length", lambda s: s.cfg.max_position_embeddings),
    ("attention factor", lambda s: f"{s.attention_factor:.4g}"),
    ("shortest wavelength", lambda s: f"{s.shortest_wavelength:.4g}"),
    ("longest wavelength", lambda s: f"{s.longest_wavelength:.4g}"),
    ("critical dimension", lambda s: s.critical_dimension),
)


def compare_rows(summaries: list[CardSummary]) -> list[tuple[str, list[str], bool]]:
    """(field, values per card, differs) for every compared field."""
    rows = []
    for name, get in _COMPARE_FIELDS:
        values = [str(get(s)) for s in summaries]
        rows.append((name, values, len(set(values)) > 1))
    return rows


def _compare(args: argparse.Namespace) -> None:
    if len(args.configs) < 2:
        raise CliError("compare needs at least two presets or config.json paths")
    summaries = []
    for spec in args.configs:
        cfg = load_config(spec)
        summaries.append(card_summary(cfg, cfg.max_position_embeddings or cfg.trained_length or 4096, with_base_bound=False))
    table = Table(title="'RoPE' in " + ", ".join(args.configs), header_style="bold")
    table.add_column("field")
    for spec in args.configs:
        table.add_column(spec)
    rows = compare_rows(summaries)
    for name, values, differs in rows:
        style = "bold yellow" if differs else None
        table.add_row(("* " if differs else "  ") + name, *values, style=style)
    console = Console()
    console.print(table)
    differing = [name for name, _, differs in rows if differs]
    console.print(f"{len(differing)} of {len(rows)} fields differ (marked *): {', '.join(differing) or 'none'}")


def _tour(args: argparse.Namespace) -> None:
    from ropelab.analysis.tour import run_tour

    run_tour(args.out)


def register(subparsers) -> None:
    """Add ``explain``, ``compare`` and ``tour`` to the ``ropelab`` command."""
    explain = subparsers.add_parser("explain", help="what a model card's RoPE is, and what breaks at a context")
    explain.add_argument("config", help="a preset name (e.g. llama-2-7b) or a path to config.json")
    explain.add_argument("--context", type=int, default=None, help="context length to judge (default: the card's)")
    explain.add_argument("--plot", default=None, metavar="FILE.png", help="also save a figure")
    explain.set_defaults(func=_explain)

    compare = subparsers.add_parser("compare", help="several cards' RoPE side by side, differences highlighted")
    compare.add_argument("configs", nargs="+", help="two or more preset names or config.json paths")
    compare.set_defaults(func=_compare)

    tour = subparsers.add_parser("tour", help="the geometry of RoPE in 14 runnable steps, with figures")
    tour.add_argument("--out", default="ropelab-tour", help="folder for figures and tour.html")
    tour.set_defaults(func=_tour)


def demo(args: argparse.Namespace) -> None:
    """``ropelab demo``: run the tour into ``<args.out>/tour``."""
    from ropelab.analysis.tour import run_tour

    run_tour(os.path.join(args.out, "tour"))
