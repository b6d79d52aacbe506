"""LoRA against full fine-tuning of the embedded SmolLM2-135M for PI x2, side by side in one run.

Usage: python benchmarks/real_lora_vs_full.py [--steps 16] [--window 512] [--eval-length 9216]
    [--out benchmarks/results/real_lora]

Three processes, one after the other, each loading the model afresh (so each one's peak memory is its
own): PI x2 zero-shot, PI x2 + PoSE with every weight trained, and PI x2 + PoSE with LongLoRA's LoRA
(rank 8, alpha 16 on q/k/v/o, embeddings and norms trained; ``ropelab.real.finetune.LoraSettings``),
the same steps, windows, learning rate (2e-5, both papers) and data. Each is then measured as
``ropelab extend`` measures: the loss per position of one stdlib validation document of
``--eval-length`` tokens (T < length <= 2T), in Chen et al. 2023 Table 3's ranges [0, T/2), [T/2, T),
[T, length), under bfloat16 autocast.

Per row: perplexities, seconds per step (the mean over the steps but the first, a warm-up, and the last, which writes
the checkpoint), the process's peak resident memory during training (Linux VmHWM, restarted once the
model and data are loaded), its resident memory once the model was loaded, the
training state the implementation holds (float32 weights 4 P, gradients 4 Pt, AdamW moments 8 Pt and
one float32 step count per trained tensor) and the checkpoint's size on disk.
Writes ``table.md`` and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("zero-shot", "full", "lora")


def memory_status(key: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process, bytes (Linux ``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Restart ``VmHWM`` from the current resident memory (Linux: ``5`` into ``/proc/self/clear_refs``)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def child(variant: str, args) -> dict:
    import torch

    from ropelab.real.evaluate import use_rope
    from ropelab.real.finetune import (
        FinetuneSettings,
        LoraSettings,
        _training_documents,
        finetune,
        lora_parameter_count,
    )
    from ropelab.real.load import load_model
    from ropelab.real.stages import Settings, measure, method_config

    torch.set_num_threads(2)
    torch.manual_seed(0)
    loaded = load_model(None)
    model, T = loaded.model, loaded.trained_length
    N = 2 * T
    row: dict = {"variant": variant, "rss_loaded": memory_status("VmRSS")}
    if variant != "zero-shot":
        use_rope(model, method_config(loaded.rope, "linear", T, N))
        lora = LoraSettings() if variant == "lora" else None
        tuning = FinetuneSettings(
            steps=args.steps, window=args.window, target=N, lora=lora, checkpoint_every=args.steps
        )
        documents = _training_documents(loaded.tokenizer, tuning)
        parameters = sum(p.numel() for p in model.parameters())
        if lora is not None:
            counted = lora_parameter_count(model, lora)
            trainable, parameters = counted["total"], parameters + counted["adapters"]  # + the adapters
        else:
            trainable = parameters
        tensors = _trained_tensors(model, lora)
        row.update(
            trainable=trainable,
            parameters=parameters,
            training_state_bytes=4 * parameters + (4 + 8) * trainable + 4 * tensors,
        )
        stamps = [time.perf_counter()]

        def tick(step, loss):
            stamps.append(time.perf_counter())

        scratch = Path(tempfile.mkdtemp(prefix="lora-vs-full-"))
        reset_peak()  # the peak from here on: training, not loading (the GGUF's dequantisation peaks apart)
        try:
            losses = finetune(model, documents, tuning, method="linear", checkpoint=scratch / "ckpt", tick=tick)
            row["checkpoint_bytes"] = sum(f.stat().st_size for f in (scratch / "ckpt").rglob("*") if f.is_file())
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        row["peak_after_training"] = memory_status("VmHWM")
        steps = [b - a for a, b in zip(stamps, stamps[1:])]
        timed = steps[1:-1] or steps  # not the first (warm-up) nor the last (it writes the checkpoint)
        row["step_seconds"] = sum(timed) / len(timed)
        row["losses"] = losses
    settings = Settings(
        target=N,
        methods=("linear",),
        documents=1,
        passkey_lengths=(),
        passkey_keys=0,
        document_length=args.eval_length,
        dtype="bfloat16",
    )
    started = time.perf_counter()
    measured = measure(model, loaded.tokenizer, loaded.rope, T, settings)["methods"]["linear"]
    row["eval_seconds"] = time.perf_counter() - started
    row["ppl_ranges"] = measured["ppl_ranges"]
    row["trained_length"] = T
    return row


def _trained_tensors(model, lora) -> int:
    """How many parameter tensors train (AdamW keeps one step count each)."""
    if lora is None:
        return sum(1 for _ in model.parameters())
    adapters = 2 * sum(
        1
        for name, m in model.named_modules()
        if name.rpartition(".")[2] in lora.targets and type(m).__name__ == "Linear"
    )
    full = sum(1 for n, _ in model.named_parameters() if any(word in n for word in lora.trainable))
    return adapters + full


def table(rows: list[dict], args) -> str:
    T = rows[0]["trained_length"]
    ranges = list(rows[0]["ppl_ranges"])
    gib = 2**30
    head = "| PI x2 | " + " | ".join(ranges) + " | s / step | peak RSS in training GiB | RSS loaded GiB | state GiB | "
    head += "checkpoint GiB | trained params |"
    lines = [
        f"# LoRA vs full fine-tuning of SmolLM2-135M (T = {T}) for PI x2, one run",
        "",
        f"`python benchmarks/real_lora_vs_full.py --steps {args.steps} --window {args.window} "
        f"--eval-length {args.eval_length}`: {args.steps} PoSE steps of one {args.window}-token window each, "
        "lr 2e-5 (warm-up 20), bfloat16 autocast over float32 master weights, 2 CPU threads on a shared machine. "
        "Perplexity of one stdlib validation document of "
        f"{args.eval_length} tokens per range (Chen et al. 2023, Table 3). State: the float32 weights, gradients, "
        "AdamW moments and step counts the fine-tune holds; checkpoint: its torch.distributed.checkpoint folder.",
        "",
        head,
        "|" + "---|" * (len(ranges) + 7),
    ]
    for row in rows:
        cells = [row["variant"], *(f"{row['ppl_ranges'][r]:.2f}" for r in ranges)]
        if row["variant"] == "zero-shot":
            cells += ["", "", f"{row['rss_loaded'] / gib:.2f}", "", "", ""]
        else:
            cells += [
                f"{row['step_seconds']:.1f}",
                f"{row['peak_after_training'] / gib:.2f}",
                f"{row['rss_loaded'] / gib:.2f}",
                f"{row['training_state_bytes'] / gib:.2f}",
                f"{row['checkpoint_bytes'] / gib:.3f}",
                f"{row['trainable']:,}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--eval-length", type=int, default=9216)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "real_lora"))
    parser.add_argument("--child", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        Path(args.row).write_text(json.dumps(child(args.child, args)))
        return 0
    from ropelab.io import atomic_write_text

    rows, started = [], time.perf_counter()
    for variant in VARIANTS:
        with tempfile.TemporaryDirectory() as scratch:
            row_file = Path(scratch) / "row.json"
            command = [sys.executable, __file__, "--child", variant, "--row", str(row_file)]
            command += [
                "--steps",
                str(args.steps),
                "--window",
                str(args.window),
                "--eval-length",
                str(args.eval_length),
            ]
            subprocess.run(command, check=True, env=os.environ)
            rows.append(json.loads(row_file.read_text()))
        print(f"{variant}: {rows[-1]['ppl_ranges']} ({time.perf_counter() - started:.0f} s so far)", flush=True)
    out = Path(args.out)
    text = table(rows, args)
    atomic_write_text(
        out / "table.md", text + f"\nWall time of the whole run: {time.perf_counter() - started:.0f} s.\n"
    )
    atomic_write_text(out / "results.json", json.dumps({"settings": vars(args), "rows": rows}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
