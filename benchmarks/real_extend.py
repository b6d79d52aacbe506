"""``ropelab extend`` on the embedded SmolLM2-135M (T = 8192) to N = 2T, saved under benchmarks/results/real/.

Usage: python benchmarks/real_extend.py [any ropelab extend option, e.g. --methods yarn,linear --device cuda]

Runs the command with its defaults (as-is, linear, ntk, dynamic, yarn, llama3; one stdlib document of
N tokens; passkey grid thinned to fit --budget-minutes) into a scratch folder, then keeps only the
small files (results.json, results.csv, report.html with its figures embedded) in
benchmarks/results/real/.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from ropelab.cli import main

KEEP = ("results.json", "results.csv", "report.html")


def run(argv: list[str]) -> int:
    target = Path(__file__).resolve().parent / "results" / "real"
    with tempfile.TemporaryDirectory() as scratch:
        code = main(["extend", "--out", scratch, *argv])
        if code == 0:
            target.mkdir(parents=True, exist_ok=True)
            for name in KEEP:
                shutil.copy2(Path(scratch) / name, target / name)
            print(f"saved {', '.join(KEEP)} in {target}")
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
