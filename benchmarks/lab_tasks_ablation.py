"""Why our accuracy-vs-length shape differs from the papers': one knob at a time, on the tasks run's recipe.

Each row trains one model with :func:`ropelab.lab.synthetic.run_tasks` (the default recipe of
:data:`~ropelab.lab.synthetic.TASKS_DEFAULT`, early stopping on the validation stream included)
with one knob changed, and reports accuracy at ``L .. 16L`` on the evaluation stream:

- ``base``: the default run's recipe (recall, 4 key/value needles, 16 content symbols, L = 32,
  width 64, 4 heads);
- ``width 128 / 8 heads``: Mamba's attention width and heads (Gu & Dao 2023, App. E.1);
- ``1200 steps (no early stop)``: trained on past the validation target (Mamba trained 200k-400k steps);
- ``vocab 4`` / ``vocab 64``: the task's content vocabulary (Mamba: 16, sec. 4.1.2);
- ``induction``: Mamba's task itself (one trigger, asked once at the end);
- ``L = 64``: a longer training length.

Usage: ``python benchmarks/lab_tasks_ablation.py --encodings rope --out /tmp/ablation.json``.
Writes the rows as JSON (atomically) and prints a table with wall and CPU seconds per row.
``--attach REPORT_DIR --note TEXT`` instead puts the rows of ``--out`` (one or more files, comma-separated)
into ``REPORT_DIR/tasks.json`` and re-renders its report (the table "one knob at a time").
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from ropelab.io import atomic_write_bytes
from ropelab.lab.cli import task_notes
from ropelab.lab.report import write_tasks_report
from ropelab.lab.synthetic import TASKS_DEFAULT, run_tasks

ROWS = {
    "base": {},
    "width 128 / 8 heads": dict(model=dict(dim=128, num_heads=8)),
    "1200 steps (no early stop)": dict(check_every=10**9),
    "vocab 4": dict(vocab=4),
    "vocab 64": dict(vocab=64),
    "induction (1 needle)": dict(task="induction"),
    "L = 64": dict(model=dict(max_positions=64)),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encodings", default="rope")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seed-count", type=int, default=1)
    parser.add_argument("--out", required=True)
    parser.add_argument("--attach", default=None, help="a tasks report folder to put the rows of --out into")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    if args.attach is not None:
        results = json.loads((Path(args.attach) / "tasks.json").read_text())
        results["ablation"] = [row for path in args.out.split(",") for row in json.loads(Path(path).read_text())]
        results["ablation_note"] = args.note
        results["notes"] = task_notes(results)  # the notes of this version of the code
        print(write_tasks_report(results, Path(args.attach)))
        return
    torch.set_num_threads(1)
    results = []
    for encoding in args.encodings.split(","):
        for row in args.rows.split(","):
            knobs = dict(ROWS[row])
            settings = TASKS_DEFAULT.override(
                model=knobs.pop("model", None),
                encodings=(encoding,),
                seeds=args.seed_count,
                multiples=(1, 2, 4, 8, 16),
                zero_shot=(),
                **knobs,
            )
            wall, cpu = time.perf_counter(), _cpu()
            with tempfile.TemporaryDirectory() as out:
                runs = run_tasks(settings, out, progress=False, log=lambda line: None)["runs"][encoding]
            accuracy = {
                m: sum(r["accuracy"][m * settings.length] for r in runs.values()) / len(runs)
                for m in settings.multiples
            }
            steps = [r["train"]["steps"] for r in runs.values()]
            results.append(
                {
                    "encoding": encoding,
                    "row": row,
                    "steps": steps,
                    "accuracy": accuracy,
                    "wall_seconds": time.perf_counter() - wall,
                    "cpu_seconds": _cpu() - cpu,
                }
            )
            cells = "  ".join(f"{m}L {a:.2f}" for m, a in accuracy.items())
            print(
                f"{encoding:>6} {row:<28} steps {steps}  {cells}  ({results[-1]['wall_seconds']:.0f} s wall, "
                f"{results[-1]['cpu_seconds']:.0f} s CPU)",
                flush=True,
            )
            atomic_write_bytes(args.out, json.dumps(results, indent=1).encode())


if __name__ == "__main__":
    main()
