"""Fine-tune a real model for a scaled RoPE on short windows: PoSE, positional skip-wise training.

Zhu et al. 2024, "PoSE: Efficient Context Window Extension of LLMs via Positional Skip-wise
Training" (ICLR 2024, arXiv 2309.10400), sec. 3.2: a window of ``W <= T`` tokens is split in two
chunks whose position ids are shifted apart by a random skip, so that over many windows every relative
distance in ``[0, N)`` is trained while each step costs a ``W``-token forward. How the chunks and the
skip are drawn follows the authors' reference code (dwzhu-pku/PoSE ``src/train_pose.py``,
``train_preprocess_function_pose``):

- the first chunk holds the first ``c1 ~ U{1, ceil(W/2)}`` tokens of a training document, at
  positions ``0 .. c1-1`` (the reference fixes its start at 0: that makes large relative positions
  about as likely as small ones);
- the second chunk holds the other ``W - c1`` tokens, ending at a uniform point in ``[W, D)`` of the
  document (text ``D`` tokens long), at positions shifted by a skip ``s ~ U{0, N - W}``.

The two chunks are one causal sequence: the second attends to the first. transformers reads a jump
in ``position_ids`` as the start of another packed sequence when it is given neither an attention
mask nor a KV cache (``masking_utils.find_packed_sequence_indices``), which a training forward
without cache (as gradient checkpointing forces) is. Every training forward here therefore passes an
explicit all-ones ``attention_mask`` and ``use_cache=False`` (:func:`window_logits`).

Hyper-parameters (the papers all fine-tune LLaMA-7B; each is named where it is used):
AdamW with betas (0.9, 0.95), no weight decay, learning rate 2e-5, linear warm-up over 20 steps from
10% of the rate, then constant (Chen et al. 2023, "Extending Context Window of Large Language Models
via Positional Interpolation", arXiv 2306.15595, sec. 3.1 / 4.1; YaRN, Peng et al. 2023,
arXiv 2309.00071, sec. 4.1, uses the same rate, warm-up and betas). They train 400-1000 steps at a
global batch of 64 long sequences; 2 CPU cores afford one window per step (stated in the report).

Three ways to train, one loop:

- **full weights, one process** (the default): float32 master weights, bfloat16 autocast on CPU
  (``benchmarks/real_speed.py``), optional gradient checkpointing (PoSE's own recipe turns it on,
  ``script/run_train_skipos.sh``: ``--gradient_checkpointing True``);
- **LoRA, one process** (``lora=LoraSettings(...)``), through peft, as LongLoRA extends context with
  it (Chen et al. 2024, "LongLoRA", ICLR 2024, arXiv 2309.12307, sec. 3.3 "Improved LoRA for long
  context" and Table 2; its ``fine-tune.py``): rank-8 adapters (alpha 16, no dropout) on
  ``q_proj, k_proj, v_proj, o_proj``, and every parameter whose name holds ``embed`` or ``norm`` trained
  in full: LoRA alone leaves a large perplexity gap on context extension, closed by training the
  embeddings and norms. The adapters are merged into the weights at the end, so the hand-over is a
  plain model;
- **full weights over ``k`` processes** under ``torchrun``: FSDP2 (:mod:`ropelab.real.distributed`),
  each rank training on ``batch / k`` of the step's windows; every rank draws the same global batch
  from the same generator and keeps its slice, so ``k`` processes follow one process's loss curve.

Checkpoints (:mod:`ropelab.real.distributed`) hold the weights that train, the optimizer, the step,
the loss history and the random generator, so that an interrupted run resumes to the same weights as
an uninterrupted one; a checkpoint of another fine-tune, model, training text or evaluation is
refused, naming what differs (:func:`check_resumable`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ropelab.errors import RealModelError
from ropelab.real.distributed import CHECKPOINT_FORMAT

__all__ = [
    "FinetuneSettings",
    "LoraSettings",
    "PoseWindow",
    "pose_window",
    "pose_batch",
    "window_logits",
    "window_loss",
    "finetune",
    "finetune_study",
    "check_finetune_methods",
    "check_finetune_model",
    "check_finetune_run",
    "check_resumable",
    "run_identity",
    "weights_fingerprint",
    "documents_fingerprint",
    "lora_parameter_count",
    "add_finetune_arguments",
    "finetune_settings_from_args",
    "FINETUNABLE",
    "CHECKPOINT_FORMAT",
    "DEFAULT_FINETUNE_STEPS",
    "DEFAULT_FINETUNE_WINDOW",
    "DEFAULT_FINETUNE_METHODS",
]

# PoSE defaults: about 8 minutes per method on 2 cores (benchmarks/real_speed.py: a 2048-token step takes
# 12.9 s under bfloat16 autocast, so a 1024-token one about 6 s), 16 minutes for PI and YaRN together
DEFAULT_FINETUNE_STEPS = 80
DEFAULT_FINETUNE_WINDOW = 1024
DEFAULT_FINETUNE_METHODS = ("linear", "yarn")  # when none is named (those the model's RoPE can start from)


@dataclass(frozen=True)
class LoraSettings:
    """LoRA (Hu et al. 2021, arXiv 2106.09685) as LongLoRA uses it for context extension (arXiv
    2309.12307 sec. 3.3; the values are its ``fine-tune.py``'s): rank-``rank`` adapters scaled by
    ``alpha / rank`` on the linear layers named ``targets``, and the parameters whose names contain one
    of ``trainable`` trained in full."""

    rank: int = 8  # LongLoRA fine-tune.py: LoraConfig(r=8)
    alpha: float = 16.0  # ditto: lora_alpha=16
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # ditto, the attention projections
    trainable: tuple[str, ...] = ("embed", "norm")  # ditto: trainable_params "embed,norm" (sec. 3.3, Table 2)

    def check(self) -> None:
        if self.rank <= 0:
            raise RealModelError(f"--lora-rank {self.rank} is invalid: expected a rank >= 1")
        if not self.alpha > 0:
            raise RealModelError(f"--lora-alpha {self.alpha:g} is invalid: expected a positive scale")
        if not self.targets:
            raise RealModelError(
                "--lora-targets is empty: expected linear layer names, e.g. q_proj,k_proj,v_proj,o_proj"
            )


@dataclass(frozen=True)
class FinetuneSettings:
    """One PoSE fine-tune: ``steps`` steps of ``batch`` windows of ``window`` tokens, positions over
    ``[0, target)``; LoRA if ``lora`` is given, else every weight."""

    steps: int
    window: int
    target: int
    lr: float = 2e-5  # Chen et al. 2023, sec. 4.1 (7B and 13B); YaRN sec. 4.1; LongLoRA's README, LoRA too
    warmup: int = 20  # ditto: linear warm-up over 20 steps, starting from 10% of the rate
    betas: tuple[float, float] = (0.9, 0.95)  # ditto
    autocast: bool = True  # bfloat16 compute over float32 master weights (benchmarks/real_speed.py)
    seed: int = 0
    checkpoint_every: int = 25
    batch: int = 1  # windows per step, split evenly over the torchrun processes
    gradient_checkpointing: bool = False  # recompute each layer in backward: activations of one layer at a time
    lora: LoraSettings | None = None

    def check(self, trained: int, processes: int = 1) -> None:
        """Raises :class:`RealModelError` naming the bad value."""
        if not 0 < self.window <= trained:
            raise RealModelError(f"--finetune-window {self.window} is invalid: expected 1 <= window <= T={trained}")
        if self.steps < 0:
            raise RealModelError(f"--finetune-steps {self.steps} is invalid: expected >= 0")
        if self.target < self.window:
            raise RealModelError(f"--to {self.target} is invalid: the target must be at least the window {self.window}")
        if self.batch < 1:
            raise RealModelError(f"--finetune-batch {self.batch} is invalid: expected >= 1 window per step")
        if not self.lr > 0:
            raise RealModelError(f"--finetune-lr {self.lr:g} is invalid: expected a positive learning rate")
        if self.lora is not None:
            self.lora.check()
        self.check_processes(processes)

    def check_processes(self, processes: int) -> None:
        """Raises for a batch that ``processes`` do not split evenly, or LoRA across processes."""
        if self.batch % processes:
            raise RealModelError(
                f"--finetune-batch {self.batch} is invalid: it must split evenly over the {processes} torchrun "
                f"processes (a multiple of {processes})"
            )
        if self.lora is not None and processes > 1:
            raise RealModelError(
                f"--finetune-weights lora is invalid under torchrun ({processes} processes): LoRA trains in one "
                "process; across processes the fine-tune trains full weights, sharded by FSDP2"
            )


@dataclass(frozen=True)
class PoseWindow:
    """Training windows: ``inputs``, ``positions``, ``targets``, each int64 ``[W]`` (one window) or
    ``[B, W]`` (a batch)."""

    inputs: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor


def _uniform(low: int, high: int, generator: torch.Generator) -> int:
    """An integer uniform in ``[low, high]`` (both included) from ``generator``."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def pose_window(document: torch.Tensor, window: int, target: int, generator: torch.Generator) -> PoseWindow:
    """Two chunks of ``document`` (int64 ``[D]``, ``D > window``) with skip-wise position ids
    (see the module docstring). Every target is the true next token of its input in the document."""
    D = document.numel()
    if D <= window:
        raise RealModelError(f"a PoSE window of {window} tokens needs a document longer than it, got {D}")
    first = _uniform(1, (window + 1) // 2, generator)
    second = window - first
    end = _uniform(window, D - 1, generator)  # the second chunk's inputs end here (exclusive)
    skip = _uniform(0, target - window, generator)
    inputs = torch.cat((document[:first], document[end - second : end]))
    targets = torch.cat((document[1 : first + 1], document[end - second + 1 : end + 1]))
    positions = torch.arange(window)
    positions[first:] += skip
    return PoseWindow(inputs, positions, targets)


def pose_batch(documents: list[torch.Tensor], settings: FinetuneSettings, generator: torch.Generator) -> PoseWindow:
    """One step's ``settings.batch`` windows, ``[B, W]`` each: per window a document drawn uniformly,
    then :func:`pose_window` of it, all from ``generator`` (every process draws the same batch)."""
    drawn = []
    for _ in range(settings.batch):
        document = documents[_uniform(0, len(documents) - 1, generator)]
        drawn.append(pose_window(document, settings.window, settings.target, generator))
    return PoseWindow(*(torch.stack([getattr(w, key) for w in drawn]) for key in ("inputs", "positions", "targets")))


def window_logits(model, inputs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Logits ``[B, W, V]`` of windows ``inputs`` (int64 ``[B, W]``) at ``positions`` (``[B, W]``), each
    window one causal sequence across its position jump: an explicit all-ones ``attention_mask`` and no
    KV cache, so that transformers does not read the jump as packed sequences (module docstring)."""
    device = next(model.parameters()).device
    inputs, positions = inputs.to(device), positions.to(device)
    mask = torch.ones_like(inputs)
    return model(input_ids=inputs, position_ids=positions, attention_mask=mask, use_cache=False).logits


def window_loss(model, window: PoseWindow) -> torch.Tensor:
    """Mean next-token loss over every token of ``window`` (``[W]`` or ``[B, W]``), a 0-dim tensor."""
    inputs, positions, targets = (t.reshape(-1, t.shape[-1]) for t in (window.inputs, window.positions, window.targets))
    logits = window_logits(model, inputs, positions)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().to(logits.device))


def _learning_rate(step: int, settings: FinetuneSettings) -> float:
    """Linear warm-up from 10% of the rate over ``warmup`` steps, then constant (Chen et al. 2023, sec. 4.1)."""
    if step >= settings.warmup:
        return settings.lr
    return settings.lr * (0.1 + 0.9 * step / settings.warmup)


# ----------------------------------------------------------------------------- what a run is
FINGERPRINT_SAMPLES = 1024  # values read per tensor for the weights fingerprint


def weights_fingerprint(model) -> str:
    """A short hash of ``model``'s weights: every tensor's name and shape, and ``FINGERPRINT_SAMPLES``
    evenly spaced values of it rounded to bfloat16 (so that the same model loaded in float32 or
    bfloat16 has one fingerprint, and two models of the same shape have two)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // FINGERPRINT_SAMPLES)
        sample = flat[::stride][:FINGERPRINT_SAMPLES].to("cpu", torch.bfloat16).float()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def documents_fingerprint(documents: list[torch.Tensor]) -> str:
    """A short hash of the training documents' token ids, in order."""
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.to("cpu", torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:16]


# settings a resumed run may change: they change when checkpoints are written, or memory, not the arithmetic
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "gradient_checkpointing")


def run_identity(
    model, documents: list[torch.Tensor], settings: FinetuneSettings, method: str, evaluation: dict | None = None
) -> dict:
    """What a checkpoint must match to be resumed: the method, the fine-tune's settings (but those in
    ``RESUMABLE_CHANGES``), the model's weights (:func:`weights_fingerprint` of ``model`` as passed:
    the weights the fine-tune starts from), the training documents, and the evaluation settings of the
    measurements kept beside it (``None`` for a fine-tune alone). JSON-normalised."""
    tuned = {k: v for k, v in asdict(settings).items() if k not in RESUMABLE_CHANGES}
    identity = {
        "method": method,
        "finetune": tuned,
        "model": weights_fingerprint(model),
        "data": documents_fingerprint(documents),
        "evaluation": evaluation,
    }
    return json.loads(json.dumps(identity))


def _differences(there: dict | None, here: dict | None) -> str:
    there, here = there or {}, here or {}
    keys = [k for k in dict.fromkeys([*there, *here]) if there.get(k) != here.get(k)]
    return ", ".join(f"{k} {there.get(k)!r} there, {here.get(k)!r} here" for k in keys)


def check_resumable(path: str | os.PathLike, saved: dict | None, identity: dict, what: str = "checkpoint") -> None:
    """Raise one line naming what differs between a saved run's identity and this run's.

    Raises:
        RealModelError: ``saved`` is of another method or fine-tune settings, another model, other training
            documents or other evaluation settings than ``identity`` (:func:`run_identity`).
    """
    where = f"fine-tune {what} {str(path)!r}"
    advice = "remove it or use another --out"
    saved = saved or {}
    if saved.get("method") != identity["method"] or saved.get("finetune") != identity["finetune"]:
        differs = (
            f"method {saved.get('method')!r} there, {identity['method']!r} here"
            if saved.get("method") != identity["method"]
            else _differences(saved.get("finetune"), identity["finetune"])
        )
        raise RealModelError(f"{where} belongs to another fine-tune ({differs}); {advice}")
    if saved.get("model") != identity["model"]:
        raise RealModelError(
            f"{where} is of another model (weights fingerprint {saved.get('model')} there, {identity['model']} here); "
            f"{advice}"
        )
    if saved.get("data") != identity["data"]:
        raise RealModelError(
            f"{where} was trained on other data (training documents fingerprint {saved.get('data')} there, "
            f"{identity['data']} here); {advice}"
        )
    if saved.get("evaluation") != identity["evaluation"]:
        raise RealModelError(
            f"{where} was measured with other evaluation settings "
            f"({_differences(saved.get('evaluation'), identity['evaluation'])}); {advice}"
        )


# ----------------------------------------------------------------------------- LoRA (peft)
def _linear_names(model) -> list[str]:
    return sorted({name.rpartition(".")[2] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


def check_finetune_model(model, settings: FinetuneSettings) -> None:
    """Refuse, before anything runs, a LoRA target the model lacks, or gradient checkpointing on a model
    that does not support it (one line naming it)."""
    if settings.lora is not None:
        linear = _linear_names(model)
        missing = [t for t in settings.lora.targets if t not in linear]
        if missing:
            raise RealModelError(
                f"--lora-targets {','.join(missing)} is invalid: {type(model).__name__} has no linear layer of "
                f"that name; it has {', '.join(linear)}"
            )
    if settings.gradient_checkpointing and not getattr(model, "supports_gradient_checkpointing", False):
        raise RealModelError(f"--gradient-checkpointing is invalid: {type(model).__name__} does not support it")


def lora_parameter_count(model, lora: LoraSettings) -> dict[str, int]:
    """Trainable parameters of ``lora`` on ``model`` (a real or meta-device build), without peft:
    ``rank * (in + out)`` per target linear layer, plus every parameter whose name holds a
    ``trainable`` word (shared ones once). ``{"adapters", "full", "total"}``."""
    adapters = sum(
        lora.rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rpartition(".")[2] in lora.targets
    )
    full = sum(p.numel() for n, p in model.named_parameters() if any(word in n for word in lora.trainable))
    return {"adapters": adapters, "full": full, "total": adapters + full}


def _attach_lora(model, lora: LoraSettings, seed: int):
    """``model`` with peft LoRA adapters injected (in place; returns the peft wrapper), its base weights
    frozen but those whose names hold a ``lora.trainable`` word. Adapter initialisation is seeded."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, target_modules=list(lora.targets), lora_dropout=0.0, bias="none"
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        # peft 0.18 asks transformers 5.23 a question under its deprecated name
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        wrapped = get_peft_model(model, config)
    for name, parameter in wrapped.named_parameters():
        if any(word in name for word in lora.trainable):
            parameter.requires_grad_(True)
    return wrapped


def _detach_lora(wrapped, merge: bool):
    """The base model back from peft's wrapper, the adapters merged into its weights if ``merge``."""
    model = wrapped.merge_and_unload() if merge else wrapped.unload()
    if hasattr(model, "peft_config"):  # peft leaves it on the base model
        del model.peft_config
    model.requires_grad_(True)
    return model


# ----------------------------------------------------------------------------- the loop
def _train_model(model, settings: FinetuneSettings, processes: int):
    """The module that trains: ``model`` itself, its peft wrapper (LoRA), or an FSDP2-sharded copy."""
    if processes > 1:
        from ropelab.real.distributed import shard_for_training

        return shard_for_training(model, mixed_precision=settings.autocast)
    if settings.lora is not None:
        return _attach_lora(model, settings.lora, settings.seed)
    return model


def _checkpointing(model, on: bool) -> None:
    """Turn transformers' activation (gradient) checkpointing of every decoder layer on or off, non-reentrant
    (``torch.utils.checkpoint``: the layer's forward is run again in backward instead of keeping its activations)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.23 names it so
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def _hand_back(model, trained, settings: FinetuneSettings, processes: int, completed: bool) -> None:
    """Put the trained weights into ``model``: FSDP's full state dict gathered once on rank 0, or the
    LoRA adapters merged (dropped if the run did not complete)."""
    from ropelab.real.distributed import barrier, full_state_dict, is_main_process

    if processes > 1:
        if completed:  # after a failure the other ranks may not reach this collective
            full = full_state_dict(trained)
            if is_main_process():
                model.load_state_dict(full)
            barrier()
    elif settings.lora is not None:
        _detach_lora(trained, merge=completed)


def finetune(
    model,
    documents: list[torch.Tensor],
    settings: FinetuneSettings,
    *,
    method: str,
    checkpoint: str | os.PathLike | None = None,
    identity: dict | None = None,
    tick=lambda step, loss: None,
) -> list[float]:
    """PoSE fine-tuning of ``model`` (its RoPE already set to the scaled one) for ``settings.steps``
    steps; the trained weights end in ``model`` (under ``torchrun``: on rank 0). Returns the loss per
    step (under ``torchrun``: the mean over every process's windows, on every rank).

    Args:
        documents: training documents, int64 ``[D]`` each with ``D > window``, disjoint from the
            evaluation text.
        checkpoint: a folder (:mod:`ropelab.real.distributed`); written every ``checkpoint_every`` steps
            and at the end, and resumed from when it holds this very run.
        identity: what the run is (:func:`run_identity`); default: of ``model``'s weights as passed.
    Raises:
        RealModelError: a checkpoint of another run, one past ``steps``, or a corrupt one.
    """
    from ropelab.real.distributed import join, load_checkpoint, mean_over_ranks, rank, read_checkpoint, save_checkpoint

    device = next(model.parameters()).device
    processes = join(device.type)
    settings.check_processes(processes)
    check_finetune_model(model, settings)
    identity = identity or run_identity(model, documents, settings, method)
    folder = Path(checkpoint) if checkpoint else None
    record = read_checkpoint(folder) if folder else None
    if record is not None:
        check_resumable(folder, record.get("identity"), identity)
        if record["step"] > settings.steps:
            raise RealModelError(
                f"fine-tune checkpoint {str(folder)!r} is at step {record['step']}, past the {settings.steps} "
                "steps asked; remove it or ask for more steps"
            )
    generator = torch.Generator().manual_seed(settings.seed)
    trained = _train_model(model, settings, processes)
    lora = settings.lora is not None
    if settings.gradient_checkpointing:
        _checkpointing(trained, True)
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=settings.betas, weight_decay=0.0)
    step, losses = 0, []
    if record is not None:
        load_checkpoint(folder, record, trained, optimizer, generator, trainable_only=lora)
        step, losses = record["step"], list(record["losses"])
    share = settings.batch // processes
    mine = slice(rank() * share, (rank() + 1) * share)
    completed = False
    trained.train()
    try:
        while step < settings.steps:
            batch = pose_batch(documents, settings, generator)
            local = PoseWindow(batch.inputs[mine], batch.positions[mine], batch.targets[mine])
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, settings)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.autocast):
                loss = window_loss(trained, local)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            losses.append(mean_over_ranks(loss.item()))
            tick(step, losses[-1])
            if folder and (step % settings.checkpoint_every == 0 or step == settings.steps):
                meta = {"losses": losses, "identity": identity}
                save_checkpoint(folder, step, trained, optimizer, meta, generator, trainable_only=lora)
        completed = True
    finally:
        if settings.gradient_checkpointing:
            _checkpointing(trained, False)
        trained.eval()
        _hand_back(model, trained, settings, processes, completed)
        model.eval()
    return losses


FINETUNABLE = ("linear", "yarn", "ntk", "llama3")  # static frequencies: a W-token window trains the RoPE used at N


def check_finetune_methods(methods) -> tuple[str, ...]:
    """The methods to fine-tune; raises for one whose RoPE a short window cannot train."""
    for method in methods:
        if method not in FINETUNABLE:
            why = (
                "its scale follows the sequence length, so a window of W <= T tokens trains the unscaled RoPE"
                if method == "dynamic"
                else "it is not a RoPE scaling method"
            )
            raise RealModelError(
                f"--finetune-methods {method!r} cannot be fine-tuned: {why}; expected some of {', '.join(FINETUNABLE)}"
            )
    return tuple(dict.fromkeys(methods))


# ----------------------------------------------------------------------------- the study (Table 3)
def _training_documents(tokenizer, tuning: FinetuneSettings) -> list[torch.Tensor]:
    """16 documents of ``4 W`` tokens from the stdlib's training files (disjoint from the evaluation text)."""
    from ropelab.real.evaluate import corpus_documents

    return corpus_documents(tokenizer, 4 * tuning.window, 16, split="train")[0]


def _evaluation(settings) -> dict:
    """The evaluation settings a kept measurement depends on: the run's settings but the method list."""
    return {k: v for k, v in asdict(settings).items() if k != "methods"}


def _measurement_path(checkpoints: Path, method: str, steps: int) -> Path:
    return checkpoints / f"{method}-step{steps}.json"


def check_finetune_run(
    model, tokenizer, settings, tuning: FinetuneSettings, methods, checkpoints: str | os.PathLike
) -> dict[str, dict]:
    """Everything :func:`finetune_study` would refuse, checked before any forward: LoRA targets and
    gradient checkpointing against ``model``, and every kept checkpoint and measurement under
    ``checkpoints`` against this run. ``model`` holds the weights the fine-tune starts from.
    Returns each method's :func:`run_identity`."""
    from ropelab.real.distributed import read_checkpoint

    check_finetune_model(model, tuning)
    checkpoints = Path(checkpoints)
    documents = _training_documents(tokenizer, tuning)
    identities = {}
    for method in methods:
        identity = run_identity(model, documents, tuning, method, _evaluation(settings))
        record = read_checkpoint(checkpoints / method)
        if record is not None:
            check_resumable(checkpoints / method, record.get("identity"), identity)
        for path in sorted(checkpoints.glob(f"{method}-step*.json")):
            try:
                kept = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                kept = None
            if not isinstance(kept, dict) or "identity" not in kept:
                raise RealModelError(
                    f"fine-tune measurement {str(path)!r} is invalid: not a ropelab measurement; remove it"
                )
            check_resumable(path, kept["identity"], identity, what="measurement")
        identities[method] = identity
    return identities


def finetune_study(
    model,
    tokenizer,
    rope,
    trained: int,
    settings,
    tuning: FinetuneSettings,
    methods,
    checkpoints: Path,
    *,
    tick=lambda label, cost: None,
) -> dict:
    """Chen et al. 2023's Table 3 for each method: PoSE fine-tune from the same weights to
    ``k1 = steps // 2`` and ``k2 = steps``, measuring the loss curve (``settings``' documents) after each,
    and the passkey grid after ``k2``.

    Under ``torchrun`` every rank calls this: the fine-tune runs across all of them, rank 0 alone
    measures (the others wait) and writes files, and only rank 0's result holds checks and weights.

    Args:
        settings: the run's :class:`~ropelab.real.stages.Settings` (target, documents, passkey grid).
        checkpoints: folder of one checkpoint folder per method (resumed from on a rerun) and of each
            measurement after ``k1`` and ``k2`` steps (a rerun reuses them); refused if of another run
            (:func:`check_finetune_run`).
    Returns:
        ``{"methods": {m: {"losses": [...], "checks": {steps: entry}}}, "weights": {m: state dict}}``
        (the checks are measure entries, the state dicts on the CPU); the model is back to its original weights.
    """
    from ropelab.io import atomic_write_text
    from ropelab.real.distributed import barrier, is_main_process
    from ropelab.real.evaluate import use_rope
    from ropelab.real.stages import measure, method_config

    checkpoints = Path(checkpoints)
    identities = check_finetune_run(model, tokenizer, settings, tuning, methods, checkpoints)
    original = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    documents = _training_documents(tokenizer, tuning)
    out: dict = {
        "methods": {},
        "weights": {},
        "training_text": "Python stdlib training files (the lab's split by file)",
    }
    k1 = tuning.steps // 2
    for method in methods:
        use_rope(model, method_config(rope, method, trained, settings.target))
        checks, losses = {}, []
        for steps in dict.fromkeys(s for s in (k1, tuning.steps) if s > 0):
            done = _measurement_path(checkpoints, method, steps)
            if done.is_file() and steps < tuning.steps:
                checks[steps] = json.loads(done.read_text())["measurement"]
                continue
            model.load_state_dict(original)  # the run resumes from its checkpoint; LoRA's base stays the loaded one
            losses = finetune(
                model,
                documents,
                replace(tuning, steps=steps),
                method=method,
                checkpoint=checkpoints / method,
                identity=identities[method],
                tick=lambda step, loss, method=method: tick(
                    f"{method}+pose: step {step}/{tuning.steps}, loss {loss:.3f}", ("train", tuning.window)
                ),
            )
            if not is_main_process():
                barrier()  # rank 0 measures
                continue
            if done.is_file():
                checks[steps] = json.loads(done.read_text())["measurement"]
            else:
                grid = settings if steps == tuning.steps else replace(settings, passkey_lengths=())
                checks[steps] = measure(model, tokenizer, rope, trained, replace(grid, methods=(method,)), tick=tick)[
                    "methods"
                ][method]
                kept = {"identity": identities[method], "measurement": checks[steps]}
                atomic_write_text(done, json.dumps(kept))
            barrier()
        out["methods"][method] = {"losses": losses, "checks": checks}
        if is_main_process():
            out["weights"][method] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    model.load_state_dict(original)
    return out


# ----------------------------------------------------------------------------- command line
def add_finetune_arguments(parser) -> None:
    """The fine-tune's flags of ``ropelab extend`` (read back by :func:`finetune_settings_from_args`)."""
    from ropelab.cli_args import names

    parser.add_argument(
        "--finetune",
        choices=("none", "pose"),
        default="none",
        help="pose: fine-tune each --finetune-methods RoPE on short windows (PoSE, Zhu et al. 2024) and measure it",
    )
    parser.add_argument(
        "--finetune-methods",
        type=names,
        default=None,
        help="methods to fine-tune (default linear,yarn where they can start from the model's RoPE)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=DEFAULT_FINETUNE_STEPS,
        help=f"fine-tuning steps per method (default {DEFAULT_FINETUNE_STEPS}); measured after half and all",
    )
    parser.add_argument(
        "--finetune-window",
        type=int,
        default=None,
        help=f"tokens per fine-tuning window, at most T (default min({DEFAULT_FINETUNE_WINDOW}, T))",
    )
    parser.add_argument(
        "--finetune-batch",
        type=int,
        default=FinetuneSettings.batch,
        help=f"windows per step (default {FinetuneSettings.batch}); under torchrun split evenly over the processes",
    )
    parser.add_argument(
        "--finetune-lr",
        type=float,
        default=FinetuneSettings.lr,
        help=f"AdamW learning rate (default {FinetuneSettings.lr:g})",
    )
    parser.add_argument(
        "--finetune-weights",
        choices=("full", "lora"),
        default="full",
        help="full: every weight (FSDP2 under torchrun); lora: LongLoRA's recipe through peft, merged at the end",
    )
    parser.add_argument("--lora-rank", type=int, default=LoraSettings.rank, help="LoRA rank (default 8, LongLoRA)")
    parser.add_argument("--lora-alpha", type=float, default=LoraSettings.alpha, help="LoRA alpha (default 16)")
    parser.add_argument(
        "--lora-targets",
        type=names,
        default=LoraSettings.targets,
        help="linear layers that get adapters (default q_proj,k_proj,v_proj,o_proj)",
    )
    parser.add_argument(
        "--lora-trainable",
        type=names,
        default=LoraSettings.trainable,
        help="parameter-name words trained in full beside the adapters (default embed,norm; 'none' for plain LoRA)",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute each layer in backward: activation memory of one layer instead of all",
    )


def finetune_settings_from_args(args, trained: int, target: int) -> tuple[FinetuneSettings | None, tuple[str, ...]]:
    """The fine-tune's settings and methods from :func:`add_finetune_arguments`' flags, checked before
    anything runs; ``(None, ())`` without ``--finetune``. Under ``torchrun`` the fine-tune must be on.
    Unnamed methods (``finetune_methods=None``) are ``DEFAULT_FINETUNE_METHODS``; which of those the
    model's RoPE can start from is the caller's to decide."""
    from ropelab.real.distributed import world_size

    processes = world_size()
    if getattr(args, "finetune", "none") not in ("none", "pose"):
        raise RealModelError(f"--finetune {args.finetune!r} is invalid: expected none or pose")
    if getattr(args, "finetune_weights", "full") not in ("full", "lora"):
        raise RealModelError(f"--finetune-weights {args.finetune_weights!r} is invalid: expected full or lora")
    steps = getattr(args, "finetune_steps", DEFAULT_FINETUNE_STEPS)
    if steps < 0:
        raise RealModelError(f"--finetune-steps {steps} is invalid: expected >= 0")
    if getattr(args, "finetune", "none") == "none":
        if processes > 1:
            raise RealModelError(
                f"--finetune none is invalid under torchrun ({processes} processes): only the fine-tune runs across "
                "processes; pass --finetune pose, or run without torchrun"
            )
        return None, ()
    window = args.finetune_window if args.finetune_window is not None else min(DEFAULT_FINETUNE_WINDOW, trained)
    lora = None
    if getattr(args, "finetune_weights", "full") == "lora":
        trainable = tuple(w for w in args.lora_trainable if w != "none")
        lora = LoraSettings(
            rank=args.lora_rank, alpha=args.lora_alpha, targets=tuple(args.lora_targets), trainable=trainable
        )
    tuning = FinetuneSettings(
        steps=steps,
        window=window,
        target=target,
        seed=args.seed,
        lr=getattr(args, "finetune_lr", FinetuneSettings.lr),
        batch=getattr(args, "finetune_batch", FinetuneSettings.batch),
        gradient_checkpointing=getattr(args, "gradient_checkpointing", False),
        lora=lora,
    )
    tuning.check(trained, processes)
    return tuning, check_finetune_methods(args.finetune_methods or DEFAULT_FINETUNE_METHODS)
