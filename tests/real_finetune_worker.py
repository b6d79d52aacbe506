"""One PoSE fine-tune of a tiny random Llama, for the tests to launch under ``torchrun`` (or alone).

Usage: torchrun --standalone --nproc_per_node 2 tests/real_finetune_worker.py FOLDER OUT [--steps 6]
    [--mixed-precision] [--gradient-checkpointing] [--die-after STEP]

Trains ``FOLDER``'s model (PI to 2T) with :func:`ropelab.real.finetune.finetune`, checkpointing into
``OUT/checkpoint`` every 2 steps; rank 0 then hands the weights over (``OUT/handed``, a transformers
folder) and writes ``OUT/result.json`` (losses, processes, and the dtype of the weights the first linear
layer computed with). ``--die-after STEP``: rank 1 (rank 0 alone) kills itself with
SIGKILL right after that step, a run stopped mid-way.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import torch

from ropelab.real.distributed import is_main_process, join, rank
from ropelab.real.evaluate import use_rope
from ropelab.real.finetune import FinetuneSettings, finetune
from ropelab.real.handover import write_model_folder
from ropelab.real.load import load_model
from ropelab.real.stages import hf_config, method_config

TRAINED, TARGET, WINDOW, BATCH = 128, 256, 32, 2


def documents(vocab: int, count: int = 4, length: int = 4 * WINDOW + 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(0, vocab, (length,), generator=generator) for _ in range(count)]


def settings(steps: int, mixed_precision: bool, checkpointing: bool) -> FinetuneSettings:
    return FinetuneSettings(
        steps=steps,
        window=WINDOW,
        target=TARGET,
        lr=3e-3,
        warmup=1,
        checkpoint_every=2,
        autocast=mixed_precision,
        batch=BATCH,
        gradient_checkpointing=checkpointing,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--die-after", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    processes = join("cpu")
    out = Path(args.out)
    loaded = load_model(args.folder)
    cfg = method_config(loaded.rope, "linear", TRAINED, TARGET)
    use_rope(loaded.model, cfg)
    dtypes = {}

    def spy(step, loss):
        if args.die_after is not None and step == args.die_after and rank() == min(1, processes - 1):
            os.kill(os.getpid(), signal.SIGKILL)

    linear_forward = torch.nn.Linear.forward

    def recording_forward(module, *inputs):  # the first linear layer run (layer 0's q_proj): its weight's dtype
        dtypes.setdefault("compute", str(module.weight.dtype))
        return linear_forward(module, *inputs)

    torch.nn.Linear.forward = recording_forward
    losses = finetune(
        loaded.model,
        documents(loaded.model.config.vocab_size),
        settings(args.steps, args.mixed_precision, args.gradient_checkpointing),
        method="linear",
        checkpoint=out / "checkpoint",
        tick=spy,
    )
    torch.nn.Linear.forward = linear_forward
    if is_main_process():
        write_model_folder(loaded.model, loaded.tokenizer, hf_config(loaded.model.config, cfg), out / "handed")
        (out / "result.json").write_text(json.dumps({"losses": losses, "processes": processes, "dtypes": dtypes}))


if __name__ == "__main__":
    main()
