"""Speed of the real model's long forward and fine-tune step on this CPU, side by side in one run.

Usage: python benchmarks/real_speed.py [--length 8192] [--window 2048] [--out benchmarks/results/real_speed]

On the embedded SmolLM2-135M (T = 8192), one stdlib document:

- **long forward** (``token_losses`` over ``--length`` tokens): float32, bfloat16 weights, bfloat16
  autocast over float32 weights (what a fine-tuned model evaluates in), 2 vs 1 threads, and
  ``torch.compile`` (compile time reported apart); SDPA's default CPU choice vs its flash and math
  backends vs eager attention on ``--backend-length`` tokens (the math backend materialises every
  score matrix: at 8k tokens it ran for over 9 minutes before it was stopped). Each row gives seconds,
  tokens/s, perplexity and its ratio to float32; "within 1%" is the criterion for a faster setting.
- **fine-tune step** (PoSE window of ``--window`` tokens, position ids spread over [0, 2T),
  forward + backward + AdamW): float32, bfloat16 autocast over float32 master weights, and LoRA
  (peft, rank 8 on q/k/v/o) in both.

A FLOP rate against a measured matmul peak puts the numbers on the machine's scale.
Writes ``table.md`` and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from ropelab.real.evaluate import corpus_documents, token_losses
from ropelab.real.load import load_model


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Measured GFLOP/s of a square matmul in ``dtype`` (the machine's practical compute limit)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def forward_flops(config, length: int) -> float:
    """Matmul FLOPs of one causal forward: projections + MLP + lm_head + attention scores/values."""
    width, layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or width // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    per_token = layers * 2 * (2 * width * width + 2 * width * kv + 3 * width * config.intermediate_size)
    per_token += 2 * width * config.vocab_size
    attention = layers * 2 * 2 * config.num_attention_heads * head_dim * length * length / 2  # causal half
    return per_token * length + attention


def sdpa_backend(name: str):
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}[name])


def time_forward(model, ids: torch.Tensor, backend: str, compiled: bool) -> dict:
    run = model
    compile_seconds = 0.0
    if compiled:
        started = time.perf_counter()
        model.model.forward = torch.compile(model.model.forward, dynamic=False)
        with torch.inference_mode(), sdpa_backend(backend):
            token_losses(run, ids)  # the first call compiles for this exact shape
        compile_seconds = time.perf_counter() - started
    with torch.inference_mode(), sdpa_backend(backend):
        token_losses(run, ids[:257])  # warm-up (allocator, thread pool)
        started = time.perf_counter()
        losses = token_losses(run, ids)
        seconds = time.perf_counter() - started
    if compiled:
        del model.model.forward  # back to the class's forward
    return {"seconds": seconds, "ppl": math.exp(losses.double().mean().item()), "compile_seconds": compile_seconds}


def time_step(model, doc: torch.Tensor, window: int, target: int, autocast: bool, lora: bool, steps: int = 2) -> dict:
    from ropelab.real.finetune import pose_window, window_loss

    trainable = model
    if lora:
        from peft import LoraConfig, get_peft_model

        trainable = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        )
    params = [p for p in trainable.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    trainable.train()
    times = []
    for _ in range(steps + 1):  # the first step warms up
        started = time.perf_counter()
        sample = pose_window(doc, window, target, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = window_loss(trainable, sample)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    trainable.eval()
    if lora:
        trainable.unload()  # the base model back, without adapters
        model.requires_grad_(True)  # peft froze the base weights
    return {"seconds": sum(times[1:]) / steps, "trainable_parameters": sum(p.numel() for p in params)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--window", type=int, default=2048)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "real_speed"))
    parser.add_argument("--backend-length", type=int, default=2048, help="tokens for the attention-backend rows")
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(2)
    loaded = load_model(None)
    model, config = loaded.model, loaded.model.config
    T = loaded.trained_length
    doc = corpus_documents(loaded.tokenizer, args.length, 1)[0][0]
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak on 2 threads: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s")

    short = doc[: args.backend_length + 1]
    variants = [  # (label, tokens, dtype, attention, sdpa backend, threads, compiled, autocast)
        ("float32, sdpa", doc, torch.float32, "sdpa", "default", 2, False, False),
        ("bfloat16 weights, sdpa", doc, torch.bfloat16, "sdpa", "default", 2, False, False),
        ("bfloat16 autocast, sdpa", doc, torch.float32, "sdpa", "default", 2, False, True),
        ("bfloat16 autocast, sdpa, 1 thread", doc, torch.float32, "sdpa", "default", 1, False, True),
    ]
    if not args.skip_compile:
        variants.append(
            ("bfloat16 autocast, sdpa, torch.compile", doc, torch.float32, "sdpa", "default", 2, True, True)
        )
    for dtype, autocast in ((torch.float32, False), (torch.float32, True)):  # attention backends on a shorter input
        kind = "bfloat16 autocast" if autocast else "float32"
        variants += [
            (f"{kind}, sdpa {backend}, {args.backend_length} tokens", short, dtype, "sdpa", backend, 2, False, autocast)
            for backend in ("default", "flash", "math")
        ]
        variants.append(
            (f"{kind}, eager, {args.backend_length} tokens", short, dtype, "eager", "default", 2, False, autocast)
        )
    forward_rows = []
    for label, ids, dtype, attention, backend, threads, compiled, autocast in variants:
        model.to(dtype)
        model.set_attn_implementation(attention)
        torch.set_num_threads(threads)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            row = {"variant": label, "tokens": ids.numel() - 1, **time_forward(model, ids, backend, compiled)}
        row["tokens_per_s"] = row["tokens"] / row["seconds"]
        row["gflops"] = forward_flops(config, row["tokens"]) / row["seconds"] / 1e9
        row["of_peak"] = row["gflops"] / peaks["float32" if dtype == torch.float32 and not autocast else "bfloat16"]
        forward_rows.append(row)
        print(f"forward {row['tokens']}: {label:45s} {row['seconds']:7.1f} s  ppl {row['ppl']:.4f}", flush=True)
    torch.set_num_threads(2)
    model.to(torch.float32)
    model.set_attn_implementation("sdpa")
    for row in forward_rows:  # against float32 sdpa on the same input
        reference = next(
            r for r in forward_rows if r["tokens"] == row["tokens"] and r["variant"].startswith("float32, sdpa")
        )
        row["speedup"] = reference["seconds"] / row["seconds"]
        row["ppl_ratio"] = row["ppl"] / reference["ppl"]
        row["usable"] = abs(row["ppl_ratio"] - 1) <= 0.01

    step_rows = []
    for label, autocast, lora in (
        ("float32", False, False),
        ("bfloat16 autocast, float32 master", True, False),
        ("LoRA r=8, float32", False, True),
        ("LoRA r=8, bfloat16 autocast", True, True),
    ):
        try:
            row = {"variant": label, **time_step(model, doc, args.window, 2 * T, autocast, lora)}
        except ImportError as error:
            print(f"fine-tune step {label}: skipped ({error})")
            continue
        step_rows.append(row)
        print(f"fine-tune step, window {args.window}: {label:34s} {row['seconds']:6.1f} s", flush=True)
    for row in step_rows:
        row["speedup"] = step_rows[0]["seconds"] / row["seconds"]

    lines = [
        "# Real-model speed on this CPU",
        "",
        f"SmolLM2-135M, one stdlib document, `python benchmarks/real_speed.py --length {args.length} --window {args.window}`; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads. Measured matmul peak: float32 "
        f"{peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s. A forward of {args.length} tokens "
        f"is {forward_flops(config, args.length) / 1e12:.2f} TFLOP of matmuls. Speed-up and perplexity ratio are against "
        "float32 sdpa on the same tokens.",
        "",
        "## Forward",
        "",
        "| variant | tokens | seconds | tokens/s | speed-up | GFLOP/s (of peak) | perplexity | ratio | within 1% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in forward_rows:
        extra = f" (+{r['compile_seconds']:.0f} s compile)" if r["compile_seconds"] else ""
        lines.append(
            f"| {r['variant']} | {r['tokens']} | {r['seconds']:.1f}{extra} | {r['tokens_per_s']:.0f} | {r['speedup']:.2f}x | "
            f"{r['gflops']:.0f} ({r['of_peak']:.0%}) | {r['ppl']:.4f} | {r['ppl_ratio']:.4f} | {'yes' if r['usable'] else 'NO'} |"
        )
    lines += [
        "",
        f"## Fine-tune step (PoSE window of {args.window} tokens, positions over [0, {2 * T}))",
        "",
        "| variant | seconds per step | speed-up | trainable parameters |",
        "|---|---|---|---|",
    ]
    for r in step_rows:
        lines.append(f"| {r['variant']} | {r['seconds']:.1f} | {r['speedup']:.2f}x | {r['trainable_parameters']:,} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from ropelab.io import atomic_write_text

    atomic_write_text(out / "table.md", "\n".join(lines) + "\n")
    atomic_write_text(
        out / "results.json",
        json.dumps(
            {
                "peaks_gflops": peaks,
                "length": args.length,
                "window": args.window,
                "forward": forward_rows,
                "step": step_rows,
            },
            indent=2,
        ),
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
