"""``ropelab explain``, ``ropelab compare`` and ``ropelab tour``: argument parsing and printing only.

- ``explain <preset | config.json> [--context N] [--plot FILE.png]``: a table of what this card's
  "RoPE" is, then a verdict in plain words: what breaks at ``--context`` and what would rescue it.
  A model with a RoPE per layer type gets one table and verdict per layer type, titled with the
  layers that use it (and one line per layer type without RoPE); ``--plot`` then writes one figure
  per layer type (``FILE-<layer type>.png``). ``spec:layer_type`` explains one layer type.
- ``compare A B [C ...]``: the cards side by side, every differing row highlighted; a per-layer-type
  model contributes one column per layer type with RoPE (``A:layer_type``).
- ``tour [--out DIR]``: the learning path, 14 steps, each a paragraph, a check with numbers and a
  figure, collected into a self-contained ``tour.html``.

The numbers and sentences come from :mod:`ropelab.explain.cards`, the steps from
:mod:`ropelab.explain.tour`; bad arguments raise :class:`ropelab.errors.CliError` before any work.
"""

from __future__ import annotations

import argparse
import errno
import os

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ropelab.analysis.wavelengths import unscaled
from ropelab.config import RopeConfig
from ropelab.errors import CliError
from ropelab.explain.cards import (
    CardSummary,
    card_summary,
    compare_rows,
    labelled_cards,
    layer_groups,
    layers_text,
    load_config,
    summary_rows,
    verdict,
)
from ropelab.explain.tour import StepResult, assert_all_passed, run_steps, write_explorer_beside, write_html

__all__ = ["register", "demo"]

_DEFAULT_CONTEXT = 4096  # when a card names neither an extended nor a trained length


# ----------------------------------------------------------------------------- argument checks
def _card_context(cfg: RopeConfig) -> int:
    return cfg.max_position_embeddings or cfg.trained_length or _DEFAULT_CONTEXT


def _check_context(context: int | None) -> None:
    if context is not None and context <= 0:
        raise CliError(f"--context={context} is invalid: expected a positive number of tokens")


def _unwritable_reason(folder: str) -> str | None:
    """Why ``folder`` cannot be created or written into (as ``os.strerror`` words), or None if it can."""
    folder = os.path.abspath(folder)
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return os.strerror(errno.EEXIST if existing == folder else errno.ENOTDIR)
    if not os.access(existing, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    return None


def _check_out_folder(out_dir: str) -> None:
    reason = _unwritable_reason(out_dir)
    if reason:
        raise CliError(f"--out={out_dir!r} could not be created: {reason}")


def _check_plot_path(path: str) -> None:
    reason = (
        os.strerror(errno.EISDIR) if os.path.isdir(path) else _unwritable_reason(os.path.dirname(os.path.abspath(path)))
    )
    if reason:
        raise CliError(f"--plot={path!r} could not be written: {reason}")


# ----------------------------------------------------------------------------- explain
def _explain_figure(summary: CardSummary):
    """Angle coverage past the trained length, else the wavelength ladder."""
    from ropelab.plots import plot_angle_coverage, plot_wavelength_ladder

    cfg, context, trained = summary.cfg, summary.context, summary.trained_length
    if trained and context > trained:
        return plot_angle_coverage(unscaled(cfg), context, trained_length=trained)
    return plot_wavelength_ladder(cfg, {"context": context, **({"trained": trained} if trained else {})})


def _print_card(console: Console, title: str, summary: CardSummary, plot: str | None) -> None:
    table = Table(title=escape(title), show_header=True, header_style="bold")
    table.add_column("property")
    table.add_column("value")
    for name, value in summary_rows(summary):
        table.add_row(escape(name), escape(value))  # sources such as "config [full_attention]" are not markup
    console.print(table)
    console.print(escape(verdict(summary)))
    if plot:
        from ropelab.plots import save_figure

        save_figure(_explain_figure(summary), plot)
        console.print(f"figure: {plot}")


def _layer_plot_path(plot: str | None, layer_type: str) -> str | None:
    if not plot:
        return None
    stem, extension = os.path.splitext(plot)
    return f"{stem}-{layer_type}{extension or '.png'}"


def _explain(args: argparse.Namespace) -> None:
    _check_context(args.context)
    if args.config is None:
        raise CliError(
            "explain needs a config: a preset name or a path to config.json (or --model DIR|.gguf for a real model)"
        )
    rope = load_config(args.config)
    if args.plot:
        _check_plot_path(args.plot)
    console = Console()
    if isinstance(rope, RopeConfig):
        summary = card_summary(rope, args.context or _card_context(rope))
        _print_card(console, f"RoPE of {args.config}", summary, args.plot)
        if rope.trained_length:
            console.print(
                escape(
                    f"Break: from a config alone only a lower bound, the first unseen angle (position "
                    f"{rope.trained_length:,} unscaled); `ropelab explain --model DIR|.gguf` predicts the break "
                    "from the model's own q and k."
                )
            )
        return
    console.print(escape(f"{args.config}: a different RoPE per layer type ({', '.join(rope)}); one card each."))
    for group in layer_groups(rope):
        where = layers_text(group.layers, group.total_layers)
        if group.cfg is None:
            console.print(
                escape(
                    f"{group.layer_type} layers: {where}: no RoPE (NoPE); position enters them only "
                    "through the other layer types and the causal mask."
                )
            )
            continue
        summary = card_summary(group.cfg, args.context or _card_context(group.cfg))
        title = f"RoPE of {args.config}, {group.layer_type} layers: {where}"
        _print_card(console, title, summary, _layer_plot_path(args.plot, group.layer_type))


# ----------------------------------------------------------------------------- compare
def _compare(args: argparse.Namespace) -> None:
    if len(args.configs) < 2:
        raise CliError("compare needs at least two presets or config.json paths")
    cards = [card for spec in args.configs for card in labelled_cards(spec, load_config(spec))]
    rows = compare_rows([card_summary(cfg, _card_context(cfg), with_base_bound=False) for _, cfg in cards])
    table = Table(title=escape("'RoPE' in " + ", ".join(args.configs)), header_style="bold")
    table.add_column("field")
    for label, _ in cards:
        table.add_column(escape(label))
    for name, values, differs in rows:
        table.add_row(
            ("* " if differs else "  ") + name, *map(escape, values), style="bold yellow" if differs else None
        )
    console = Console()
    console.print(table)
    differing = [name for name, _, differs in rows if differs]
    console.print(f"{len(differing)} of {len(rows)} fields differ (marked *): {', '.join(differing) or 'none'}")


# ----------------------------------------------------------------------------- tour
def _step_panel(result: StepResult) -> Panel:
    body = result.step.text + "\n\n" + "\n".join("  " + line for line in result.lines)
    colour, word = ("green", "passed") if result.passed else ("red", "FAILED")
    body += f"\n\n[{colour}]check {word}[/] - figure: {result.figure_path}"
    return Panel(body, title=f"{result.number}. {result.step.title}", title_align="left")


def _print_tour(out_dir: str) -> None:
    """Run the tour into ``out_dir``, printing each step as it finishes, then the page's path."""
    _check_out_folder(out_dir)
    console = Console()
    results = run_steps(out_dir, on_step=lambda result: console.print(_step_panel(result)))
    page = write_html(results, os.path.join(out_dir, "tour.html"))
    console.print(f"tour: {page}\nexplorer: {write_explorer_beside(page)}")
    assert_all_passed(results)


def _tour(args: argparse.Namespace) -> None:
    _print_tour(args.out)


def register(subparsers) -> None:
    """Add ``explain``, ``compare`` and ``tour`` to the ``ropelab`` command."""
    explain = subparsers.add_parser("explain", help="what a model card's RoPE is, and what breaks at a context")
    explain.add_argument(
        "config",
        nargs="?",
        default=None,
        help="a preset name (e.g. llama-2-7b) or a path to config.json (or --model, added by ropelab.real)",
    )
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
    _print_tour(os.path.join(args.out, "tour"))
