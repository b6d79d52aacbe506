"""``ropelab explore``: one self-contained HTML page where every RoPE quantity moves with the controls.

The page computes in JavaScript (float64) the same formulas as :mod:`ropelab.frequencies` and
:mod:`ropelab.analysis` (each JS function names its Python twin); ``tests/test_explorer.py`` checks
the two agree in headless Chromium. Python only serialises the presets (and the config given on
the command line) into the page and inlines the vendored chart library, uPlot (MIT, see
``explorer_assets/VENDORED.md``), so the file opens with no network.

The page shows one RoPE at a time: a per-layer-type preset enters it as one card per layer type
(``gemma-3-12b-it:full_attention``), and only rope types the page computes
(:data:`PAGE_ROPE_TYPES`) enter at all: p-RoPE (``proportional``) layer types are left out.
A multi-axis config (M-RoPE, axial vision RoPE) is drawn through :func:`one_axis_view`, the
one-axis RoPE that some of its pairs follow exactly, with a note saying which pairs those are and
what the page does not show.

- ``ropelab explore [PRESET | config.json] [--out explorer.html]``
- :func:`write_explorer` ``(cfg or None, out_path) -> Path``
- :func:`demo` writes ``<args.out>/explorer.html`` for ``ropelab demo``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from ropelab.config import RopeConfig
from ropelab.errors import CliError
from ropelab.explain.cards import _axis_names, axes_text, load_config
from ropelab.extension import LLAMA3_HIGH_FREQ_FACTOR, LLAMA3_LOW_FREQ_FACTOR
from ropelab.io import atomic_write_text
from ropelab.presets import preset_configs, preset_info

__all__ = ["PAGE_ROPE_TYPES", "register", "demo", "write_explorer", "page_data", "one_axis_view"]

#: The rope types explorer.js computes (its FREQUENCY_FUNCTIONS).
PAGE_ROPE_TYPES = ("default", "linear", "ntk", "dynamic", "yarn", "longrope", "llama3")

_ASSETS = "explorer_assets"
CLI_NAME = "command line"  # the picker entry for a config passed to `ropelab explore`


def _config_fields(cfg: RopeConfig) -> dict[str, Any]:
    """Every RopeConfig field (``source`` aside) as plain JSON values."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "source"}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()}


def one_axis_view(cfg: RopeConfig) -> tuple[RopeConfig, str | None]:
    """The one-axis RoPE the page draws for ``cfg``, and a note on what it stands for (None: ``cfg`` itself).

    M-RoPE: the RoPE without sections, which text tokens see exactly (their three positions are equal,
    Qwen2-VL sec. 2.1). Axial: the pairs of the first slot (``axial_order[0]``'s axis) as a RoPE over
    ``R / A`` channels; with ``"repeated"`` frequencies every axis has this ladder, with
    ``"alternating"`` ones the other axes' ladders are shifted.
    """
    if cfg.num_axes == 1:
        return cfg, None
    if cfg.mrope_section is not None:
        view = cfg.replace(mrope_section=None, mrope_composition=None)
        return view, (
            f"M-RoPE ({axes_text(cfg)}): shown is the one-axis RoPE of text tokens, whose three "
            "positions are equal; image and video tokens turn each section by its own position"
        )
    pairs = [i for i, axis in enumerate(cfg.pair_axes) if axis == cfg.axial_order[0]]
    width = 2 * len(pairs)  # R / A, unless axial_pairs sizes the slots
    view = RopeConfig(head_dim=width, base=(cfg.axial_bases or (cfg.base,))[0], layout=cfg.layout)
    if cfg.axial_pairs is not None or cfg.axial_bases is not None:
        others = "the other axes have ladders of their own size and base (axial_pairs, axial_bases), not shown"
    elif cfg.axial_frequencies == "repeated":
        others = "every other axis has the same ladder"
    else:
        others = "the other axes' ladders are shifted (alternating frequencies), not shown"
    passing = (
        f"; channels {cfg.rotary_dim}..{cfg.head_dim - 1} of the head pass through"
        if cfg.rotary_dim < cfg.head_dim
        else ""
    )
    axis = _axis_names(cfg)[cfg.axial_order[0]]
    return view, (
        f"axial {cfg.num_axes}D RoPE ({axes_text(cfg)}): shown are the {len(pairs)} pairs of the {axis} "
        f"axis (pairs {pairs[0]}, {pairs[1]}, ... of the head) as a one-axis RoPE "
        f"over {width} channels, positions being that axis' coordinates; {others}{passing}"
    )


def _entry(name: str, model_id: str, source: str, notes: list[str], cfg: RopeConfig) -> dict[str, Any]:
    """One picker entry: the config itself, and the one-axis ``view`` the page draws when they differ."""
    view, note = one_axis_view(cfg)
    entry = {"name": name, "model_id": model_id, "source": source, "notes": notes, "config": _config_fields(cfg)}
    if note is not None:
        entry.update(view=_config_fields(view), notes=[note, *notes])
    return entry


def page_data(cfg: RopeConfig | None = None) -> dict[str, Any]:
    """What the page knows: every preset card it can compute (values from :mod:`ropelab.presets`,
    one per layer type for per-layer-type presets), plus ``cfg`` if given. Multi-axis entries also
    carry their ``view`` (see :func:`one_axis_view`)."""
    entries = []
    for name, preset_cfg in preset_configs().items():
        if one_axis_view(preset_cfg)[0].rope_type in PAGE_ROPE_TYPES:
            info = preset_info(name)
            entries.append(_entry(name, info.model_id, info.source, list(info.notes), preset_cfg))
    if cfg is not None:
        entries.insert(0, _entry(CLI_NAME, cfg.source or "", cfg.source or "", [], cfg))
    return {
        "presets": entries,
        "initial": CLI_NAME if cfg is not None else "llama-2-7b",
        # Llama 3.1's band factors (ropelab.extension), the llama3 method's defaults for any card.
        "llama3_defaults": {"low_freq_factor": LLAMA3_LOW_FREQ_FACTOR, "high_freq_factor": LLAMA3_HIGH_FREQ_FACTOR},
    }


def _asset(name: str) -> str:
    return resources.files("ropelab.explain").joinpath(_ASSETS, name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot close the ``<script>``/``<style>`` element it is inlined into."""
    return text.replace("</", "<\\/")


def render_page(cfg: RopeConfig | None = None) -> str:
    """The HTML of the explorer page: template + inlined uPlot, page script and JSON data."""
    data = json.dumps(page_data(cfg), allow_nan=False)
    replacements = {
        "/*__UPLOT_CSS__*/": _asset("uPlot.min.css"),
        "/*__PAGE_CSS__*/": _asset("explorer.css"),
        "/*__UPLOT_JS__*/": _script_safe(_asset("uPlot.iife.min.js")),
        "/*__PAGE_JS__*/": _script_safe(_asset("explorer.js")),
        "/*__DATA__*/": _script_safe(data),
    }
    page = _asset("explorer.html")
    for placeholder, text in replacements.items():
        page = page.replace(placeholder, text, 1)
    return page


def write_explorer(cfg: RopeConfig | None, out_path: str | os.PathLike) -> Path:
    """Write the explorer page (with ``cfg`` in its picker, selected, when given) atomically; returns its path."""
    return atomic_write_text(out_path, render_page(cfg))


def _one_rope(spec: str) -> RopeConfig:
    """The single RoPE the page can show for ``spec``, or a CliError saying what to pass instead."""
    cfg = load_config(spec)
    if not isinstance(cfg, RopeConfig):
        choices = ", ".join(f"{spec}:{name}" for name in cfg.rope_layer_types)
        raise CliError(f"spec={spec!r} has a RoPE per layer type; the explorer shows one: pass one of {choices}")
    if one_axis_view(cfg)[0].rope_type not in PAGE_ROPE_TYPES:  # multi-axis configs: their one-axis view
        raise CliError(
            f"spec={spec!r} is invalid: the explorer does not compute rope_type={cfg.rope_type!r} "
            f"(it computes {', '.join(PAGE_ROPE_TYPES)}); `ropelab explain` does"
        )
    return cfg


def _explore(args: argparse.Namespace) -> None:
    cfg = _one_rope(args.spec) if args.spec else None
    if os.path.isdir(args.out):
        raise CliError(f"--out={args.out!r} is invalid: expected an .html file path, got a folder")
    print(write_explorer(cfg, args.out))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ropelab explore`` to the top-level parser."""
    parser = subparsers.add_parser("explore", help="write the interactive RoPE explorer (one offline HTML file)")
    parser.add_argument(
        "spec", nargs="?", help="a preset name or a config.json (default: every preset, llama-2-7b shown)"
    )
    parser.add_argument("--out", default="explorer.html", help="where to write the page (default explorer.html)")
    parser.set_defaults(func=_explore)


def demo(args: argparse.Namespace) -> None:
    """``ropelab demo``: write ``<args.out>/explorer.html`` and say where it is."""
    path = write_explorer(None, Path(args.out) / "explorer.html")
    print(f"interactive explorer: {path}")
