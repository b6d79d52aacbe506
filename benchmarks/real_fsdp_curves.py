"""One process against FSDP2 over 2 processes (gloo, CPU) on a tiny random Llama: the loss curves, the
handed-over weights, and a 2-process run killed mid-way and resumed. What tests/test_real_distributed.py
asserts, printed.

Usage: python benchmarks/real_fsdp_curves.py [--steps 6] [--out benchmarks/results/real_fsdp]

The model is tests/real_helpers.tiny_llama (2 layers, hidden 64, T = 128, PI to 256); the fine-tune is
tests/real_finetune_worker.py's: 2 PoSE windows of 32 tokens a step (one per process under torchrun),
float32, lr 3e-3, checkpoints every 2 steps. Writes ``curves.md`` and ``curves.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def torchrun(*arguments: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
        "OMP_NUM_THREADS": "1",
    }
    worker = ROOT / "tests" / "real_finetune_worker.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    return subprocess.run([*command, *arguments], env=env, capture_output=True, text=True, timeout=900)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_fsdp"))
    args = parser.parse_args(argv)

    import torch
    from real_finetune_worker import TARGET, TRAINED, documents, settings
    from real_helpers import tiny_llama
    from safetensors.torch import load_file

    from ropelab.io import atomic_write_text
    from ropelab.real.evaluate import use_rope
    from ropelab.real.finetune import finetune
    from ropelab.real.load import load_model
    from ropelab.real.stages import method_config

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = tiny_llama(scratch / "llama", max_positions=TRAINED)
        loaded = load_model(str(folder))
        use_rope(loaded.model, method_config(loaded.rope, "linear", TRAINED, TARGET))
        one = finetune(
            loaded.model,
            documents(loaded.model.config.vocab_size),
            settings(args.steps, False, False),
            method="linear",
        )
        single = loaded.model.state_dict()
        runs = {}
        for label, extra in (
            ("2 processes", ["--gradient-checkpointing"]),
            ("killed after step 3", ["--die-after", "3"]),
        ):
            out = scratch / label.replace(" ", "-")
            done = torchrun(str(folder), str(out), "--steps", str(args.steps), *extra)
            runs[label] = {"returncode": done.returncode, "out": out}
        resumed = torchrun(str(folder), str(runs["killed after step 3"]["out"]), "--steps", str(args.steps))
        if resumed.returncode != 0 or runs["2 processes"]["returncode"] != 0:
            print(resumed.stderr[-3000:], file=sys.stderr)
            return 1
        curves = {"1 process": one}
        weights = {}
        for label in ("2 processes", "killed after step 3"):
            out = runs[label]["out"]
            name = label if label == "2 processes" else "2 processes, killed after step 3 and resumed"
            curves[name] = json.loads((out / "result.json").read_text())["losses"]
            handed = load_file(out / "handed" / "model.safetensors")
            weights[name] = max((handed[k] - single[k]).abs().max().item() for k in handed)
    lines = [
        "# One process vs FSDP2 over 2 processes (gloo, CPU), tiny random Llama",
        "",
        f"`python benchmarks/real_fsdp_curves.py --steps {args.steps}`: PoSE, 2 windows of 32 tokens a step "
        "(one per process under torchrun), float32, lr 3e-3; the 2-process run with gradient checkpointing; "
        "the killed run lost step 3 with the process (SIGKILL) and resumed from its step-2 checkpoint.",
        "",
        "| step | " + " | ".join(curves) + " |",
        "|---|" + "---|" * len(curves),
    ]
    for step in range(args.steps):
        lines.append(f"| {step + 1} | " + " | ".join(f"{c[step]:.7f}" for c in curves.values()) + " |")
    lines += ["", "Largest |handed-over weight - one process's weight|:"]
    lines += [f"- {name}: {difference:.3g}" for name, difference in weights.items()]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    atomic_write_text(out / "curves.md", text)
    atomic_write_text(out / "curves.json", json.dumps({"losses": curves, "max_weight_difference": weights}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
