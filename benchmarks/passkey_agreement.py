"""Does the named-key passkey on a KV cache decide as the single-key prompt does?

Usage: python benchmarks/passkey_agreement.py [--lengths 4096,12288] [--trials 2] [--method extrapolate]

On the embedded SmolLM2-135M (T = 8192) with ``--method``'s RoPE (default: as-is, which retrieves
inside T and fails past its break near 1.3T), :func:`ropelab.real.passkey.passkey_records` runs
``--trials`` haystacks over the grid ``--lengths`` x depths (0, 0.25, 0.5, 0.75, 1); every record is
then asked again with the single-key prompt of Mohtashami & Jaggi 2023 (the lab's wording, one forward
per prompt, :func:`ropelab.real.evaluate.single_key_hit`) with the same key, length and depth.
Writes ``benchmarks/results/passkey_agreement.md`` and ``.json``: per prompt both decisions, and the
agreement rate overall and per length.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ropelab.cli_args import int_list
from ropelab.io import atomic_write_text
from ropelab.real.evaluate import precision, use_rope
from ropelab.real.load import load_model
from ropelab.real.passkey import agreement, passkey_records
from ropelab.real.stages import method_config

OUT = Path(__file__).resolve().parent / "results" / "passkey_agreement"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int_list, default=(4096, 12288))
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--method", default="extrapolate")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.perf_counter()
    loaded = load_model(None)
    T = loaded.trained_length
    use_rope(loaded.model, method_config(loaded.rope, args.method, T, 2 * T))
    with precision(loaded.model, "bfloat16"):
        records = passkey_records(
            loaded.model, loaded.tokenizer, args.lengths, (0.0, 0.25, 0.5, 0.75, 1.0), args.trials, seed=1
        )
        named_seconds = time.perf_counter() - started
        checked = agreement(loaded.model, loaded.tokenizer, records)
    same = [r["hit"] == r["single"] for r in checked]
    by_length = {}
    for r, ok in zip(checked, same):
        by_length.setdefault(r["length"], []).append(ok)
    lines = [
        "# Named keys on a KV cache vs the single-key prompt",
        "",
        f"`python benchmarks/passkey_agreement.py --lengths {','.join(map(str, args.lengths))} --trials {args.trials} "
        f"--method {args.method}`: SmolLM2-135M (T = {T}), RoPE {args.method}, bfloat16 autocast; "
        f"{len(checked)} prompts; named-key grid {named_seconds:.0f} s, total {time.perf_counter() - started:.0f} s.",
        "",
        f"**Agreement: {sum(same)}/{len(same)}** ("
        + ", ".join(f"length {L}: {sum(v)}/{len(v)}" for L, v in by_length.items())
        + ")",
        "",
        "| trial | length | depth | key | named-key protocol | single-key prompt | same |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, ok in zip(checked, same):
        lines.append(
            f"| {r['trial']} | {r['length']} | {r['depth']:g} | {r['key']} | {'hit' if r['hit'] else 'miss'} | "
            f"{'hit' if r['single'] else 'miss'} | {'yes' if ok else 'NO'} |"
        )
    out = Path(args.out)
    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    atomic_write_text(
        out / "results.json",
        json.dumps({"method": args.method, "records": checked, "agreement": sum(same) / len(same)}, indent=1),
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
