"""The families table: each family users bring, as a tiny random build of its published config, through
the whole ``ropelab extend`` pipeline (predict, measure, passkey, a 2-step PoSE fine-tune, hand-over) and
the hand-over reloaded with plain ``from_pretrained`` on the same document.

Usage: python benchmarks/families.py [--out benchmarks/results/families]
Writes ``families.json`` and ``families.md``; the builds and the runner live in ``tests/real_families.py``
(the tests run the same function).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from real_families import FAMILIES, run_family  # noqa: E402

from ropelab.io import atomic_write_text  # noqa: E402


def _row(r: dict) -> str:
    if r["status"] == "refused":
        return f"| {r['family']} | - | - | refused: {r['reason']} | - | {r['seconds']:.0f} |"
    reload = f"max rel. ppl diff {r['reload_max_rel']:.1e}" + (" (ok)" if r["reload_max_rel"] <= 1e-4 else " (RED)")
    methods = ", ".join(r["methods"])
    return (
        f"| {r['family']} | {r['rope']} | {r['T']} | ran: {methods}; best {r['best']} | {reload} | {r['seconds']:.0f} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "families"))
    args = parser.parse_args()
    import torch
    import transformers

    torch.set_num_threads(2)
    rows = []
    for name in FAMILIES:
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(run_family(name, Path(scratch)))
        print(_row(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "families.json", json.dumps({"transformers": transformers.__version__, "rows": rows}, indent=1)
    )
    lines = [
        f"# Families through `ropelab extend` (transformers {transformers.__version__})",
        "",
        "Tiny random-weight builds of each published config (RoPE keys kept, lengths shrunk; sources in "
        "`tests/data/published_configs.json`). `python benchmarks/families.py` rebuilds this table.",
        "",
        "| family | shipped RoPE read | T read | ran or refused | hand-over reload (from_pretrained vs ropelab, ppl per range) | seconds |",
        "|---|---|---|---|---|---|",
        *[_row(r) for r in rows],
    ]
    atomic_write_text(out / "families.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
