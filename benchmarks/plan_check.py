"""The extend plan checked: its printout for published configs (Llama-3.1-8B on one 80 GB GPU: evaluation,
full fine-tune, LoRA, FSDP over 8) beside the meta-device counts, and its predicted peak memory against the
measured peak of a real run of the embedded SmolLM2-135M on this CPU.

Usage: python benchmarks/plan_check.py [--part published|embedded|all] [--doc-length N]
Writes ``benchmarks/results/plan/plan_check.json`` and ``plan_check.md``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
OUT = ROOT / "benchmarks" / "results" / "plan"

CHILD = r"""
import json, resource, sys, time
import torch
from ropelab.real import extend
torch.set_num_threads(2)
lines = []
started = time.perf_counter()
result = extend(None, methods=("yarn",), passkey_keys=0, document_length=int(sys.argv[1]), out=None, echo=lines.append)
print(json.dumps({"plan": result.plan.__dict__ | {"advice": list(result.plan.advice)}, "lines": lines,
                  "seconds": time.perf_counter() - started,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def published() -> dict:
    from real_families import PUBLISHED
    from transformers import CONFIG_MAPPING

    from ropelab.real.plan import GIB, model_shape, plan_run

    rows = {}
    for name in ("llama-3.1-8b", "qwen2.5-7b"):
        data = dict(PUBLISHED[name]["config"])
        config = CONFIG_MAPPING[data.pop("model_type")](**data)
        shape = model_shape(config)
        runs = {
            "evaluation to 32k on one 80 GB GPU": dict(training="none", world_size=1),
            "full fine-tune on one 80 GB GPU": dict(training="full", world_size=1),
            "LoRA on one 80 GB GPU": dict(training="lora", world_size=1),
            "FSDP over 8 x 80 GB GPUs": dict(training="fsdp", world_size=8),
        }
        rows[name] = {
            "parameters": shape.parameters,
            "embedding": shape.embedding_parameters,
            "norms": shape.norm_parameters,
            "plans": {},
        }
        for label, change in runs.items():
            plan = plan_run(
                config,
                device="cuda",
                weights_dtype="bfloat16",
                evaluation_tokens=32768,
                evaluation_forwards=3,
                kv_tokens=32768,
                window=4096,
                steps=80,
                available=80 * GIB,
                shape=shape,
                rate=float("nan"),
                **change,
            )
            rows[name]["plans"][label] = {
                "lines": plan.lines(),
                "weights": plan.weights,
                "training_state": plan.training_state,
                "trainable": plan.trainable,
                "fits": plan.fits,
            }
    return rows


def embedded(length: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(length)], capture_output=True, text=True, check=True)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    data["peak_rss_children"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    data["ratio"] = data["plan"]["peak_evaluation"] / data["peak_rss"]
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("published", "embedded", "all"), default="all")
    parser.add_argument("--doc-length", type=int, default=12288)
    args = parser.parse_args()
    from ropelab.io import atomic_write_text

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "plan_check.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    if args.part in ("published", "all"):
        results["published"] = published()
    if args.part in ("embedded", "all"):
        results["embedded"] = embedded(args.doc_length)
    atomic_write_text(path, json.dumps(results, indent=1))
    md = ["# The extend plan, checked", ""]
    for name, row in results.get("published", {}).items():
        md += [
            f"## {name}: {row['parameters']:,} parameters (meta-device build; embeddings {row['embedding']:,}, "
            f"norms {row['norms']:,})",
            "",
        ]
        for label, plan in row["plans"].items():
            md += [
                f"### {label}",
                "",
                "```",
                *plan["lines"],
                "```",
                f"weights {plan['weights']:,} B; gradients + AdamW moments {plan['training_state']:,} B; "
                f"trained parameters {plan['trainable']:,}",
                "",
            ]
    if "embedded" in results:
        e = results["embedded"]
        md += [
            "## The embedded SmolLM2-135M on this CPU (as-is and YaRN, one document, bfloat16)",
            "",
            "```",
            *[line for line in e["lines"] if line.startswith(("Plan", "  "))][:9],
            "```",
            f"Planned peak {e['plan']['peak_evaluation'] / 2**30:.2f} GiB; measured peak RSS "
            f"{e['peak_rss'] / 2**30:.2f} GiB: planned / measured = {e['ratio']:.2f} "
            f"({'within' if abs(e['ratio'] - 1) <= 0.2 else 'NOT within'} 20%). Run time {e['seconds']:.0f} s.",
        ]
    atomic_write_text(OUT / "plan_check.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
