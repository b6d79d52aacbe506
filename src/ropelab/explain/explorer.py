"""``ropelab explore``: one self-contained HTML page where every RoPE quantity moves with the controls.

The page computes in JavaScript (float64) the same formulas as :mod:`ropelab.frequencies` and
:mod:`ropelab.analysis` (each JS function names its Python twin); ``tests/test_explorer.py`` checks
the two agree in headless Chromium. Python only serialises the presets (and the config given on
the command line) into the page and inlines the vendored chart library, uPlot (MIT, see
``explorer_assets/VENDORED.md``), so the file opens with no network.

The page shows one RoPE at a time: a per-layer-type preset enters it as one card per layer type
(``gemma-3-12b-it:full_attention``), and only rope types the page computes
(:data:`PAGE_ROPE_TYPES`) enter at all: p-RoPE (``proportional``) layer types are left out.

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
from ropelab.explain.cards import load_config
from ropelab.extension import LLAMA3_HIGH_FREQ_FACTOR, LLAMA3_LOW_FREQ_FACTOR
from ropelab.io import atomic_write_text
from ropelab.presets import preset_configs, preset_info

__all__ = ["PAGE_ROPE_TYPES", "register", "demo", "write_explorer", "page_data"]

# The rope types explorer.js computes (its FREQUENCY_FUNCTIONS).
PAGE_ROPE_TYPES = ("default", "linear", "ntk", "dynamic", "yarn", "longrope", "llama3")

_ASSETS = "explorer_assets"
CLI_NAME = "command line"  # the picker entry for a config passed to `ropelab explore`


def _config_fields(cfg: RopeConfig) -> dict[str, Any]:
    """Every RopeConfig field (``source`` aside) as plain JSON values."""
    fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name != "source"}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in fields.items()}


def page_data(cfg: RopeConfig | None = None) -> dict[str, Any]:
    """What the page knows: every preset card it can compute (values from :mod:`ropelab.presets`,
    one per layer type for per-layer-type presets), plus ``cfg`` if given."""
    entries = []
    for name, preset_cfg in preset_configs().items():
        if preset_cfg.rope_type in PAGE_ROPE_TYPES:
            info = preset_info(name)
            entries.append({"name": name, "model_id": info.model_id, "source": info.source, "notes": list(info.notes),
                            "config": _config_fields(preset_cfg)})
    if cfg is not None:
        entries.insert(0, {"name": CLI_NAME, "model_id": cfg.source or "", "source": cfg.source or "",
                           "notes": [], "config": _config_fields(cfg)})
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
    if cfg.rope_type not in PAGE_ROPE_TYPES:
        raise CliError(f"spec={spec!r} is invalid: the explorer does not compute rope_type={cfg.rope_type!r} "
                       f"(it computes {', '.join(PAGE_ROPE_TYPES)}); `ropelab explain` does")
    return cfg


def _explore(args: argparse.Namespace) -> None:
    cfg = _one_rope(args.spec) if args.spec else None
    if os.path.isdir(args.out):
        raise CliError(f"--out={args.out!r} is invalid: expected an .html file path, got a folder")
    print(write_explorer(cfg, args.out))


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ropelab explore`` to the top-level parser."""
    parser = subparsers.add_parser("explore", help="write the interactive RoPE explorer (one offline HTML file)")
    parser.add_argument("spec", nargs="?", help="a preset name or a config.json (default: every preset, llama-2-7b shown)")
    parser.add_argument("--out", default="explorer.html", help="where to write the page (default explorer.html)")
    parser.set_defaults(func=_explore)


def demo(args: argparse.Namespace) -> None:
    """``ropelab demo``: write ``<args.out>/explorer.html`` and say where it is."""
    path = write_explorer(None, Path(args.out) / "explorer.html")
    print(f"interactive explorer: {path}")
