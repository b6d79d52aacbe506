"""Training: AdamW, warm-up + cosine, seeded data, atomic checkpoints, exact resume, DDP.

Exactness rests on one rule: everything a step needs is a pure function of ``(seed, step)`` or
lives in the checkpoint. The batch of step ``t`` is :func:`~ropelab.lab.data.sample_batch` of
``(seed, t)``, the learning rate is :func:`learning_rate` of ``t``, and the model, the optimizer
moments and the loss history are saved together, atomically. A run killed with SIGKILL and
resumed therefore replays the same arithmetic as an uninterrupted one.

Data parallelism: under ``torchrun`` (``WORLD_SIZE > 1``) every rank draws the same global batch
and keeps its slice; DDP averages gradients and the logged loss is all-reduced, so 2 processes at
the same global batch follow the loss curve of 1 process to float tolerance.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist

from ropelab.io import atomic_write
from ropelab.lab import LabError
from ropelab.lab.data import Corpus, load_corpus, sample_batch
from ropelab.lab.model import DecoderLM, ModelConfig, causal_lm_loss, require_positive

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "train_step",
    "learning_rate",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "model_with_weights",
]

CHECKPOINT_FORMAT = "ropelab.lab.checkpoint/1"

# A batch function: ``(step, rank, world) -> (inputs, targets)``, int64 ``[B / world, S]`` each, a pure
# function of the step (the synthetic tasks of :mod:`ropelab.lab.tasks`).
Batches = Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping, validated at construction. ``batch_size`` is global (split
    across ranks).

    Raises:
        LabError: a non-positive ``steps``, ``batch_size``, ``lr``, ``checkpoint_every`` or
            ``log_every``, or a negative ``warmup_steps``.
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    constant_after_warmup: bool = False
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 50
    device: str = "cpu"

    def __post_init__(self) -> None:
        require_positive(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            checkpoint_every=self.checkpoint_every,
            log_every=self.log_every,
        )
        if self.warmup_steps < 0:
            raise LabError(f"warmup_steps={self.warmup_steps} is invalid: expected a non-negative integer")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: DecoderLM
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    tokens_per_second: float = 0.0

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``
    (Loshchilov & Hutter 2017, SGDR eq. 5, one cycle), or constant if ``constant_after_warmup``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.constant_after_warmup:
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019); weight decay on matrices only, not on norms, biases, tables of size 1-D."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` atomically (:func:`ropelab.io.atomic_write`)."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | os.PathLike, expect_encoding: str | None = None, map_location: str = "cpu") -> dict:
    """Read a checkpoint written by :func:`train`.

    Raises:
        LabError: the file is missing, corrupt, not a lab checkpoint, or was trained with another
            encoding than ``expect_encoding``.
    """
    path = Path(path)
    if not path.is_file():
        raise LabError(f"checkpoint {str(path)!r} is invalid: no such file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise LabError(
            f"checkpoint {str(path)!r} is corrupt or not a ropelab lab checkpoint ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise LabError(
            f"checkpoint {str(path)!r} is invalid: not a ropelab lab checkpoint (expected format {CHECKPOINT_FORMAT})"
        )
    found = state["model_config"]["encoding"]
    if expect_encoding is not None and found != expect_encoding:
        raise LabError(
            f"checkpoint {str(path)!r} was trained with encoding={found!r}, not encoding={expect_encoding!r}"
        )
    return state


def checkpoint_matches(path: str | os.PathLike, model_cfg, train_cfg: TrainConfig) -> bool:
    """True if ``path`` holds a checkpoint of this very run (same model and training settings), to
    continue or reuse; a missing, unreadable or other run's checkpoint gives False (a fresh run
    overwrites it)."""
    if not Path(path).exists():
        return False
    try:
        state = load_checkpoint(path, expect_encoding=model_cfg.encoding)
    except LabError:
        return False
    return state["model_config"] == model_cfg.to_dict() and state["train_config"] == train_cfg.to_dict()


def model_from_checkpoint(state: dict, device: str = "cpu", **encoding_overrides) -> DecoderLM:
    """Rebuild the model of a checkpoint; ``encoding_overrides`` replace encoding options (e.g. ``clamp``)."""
    saved = ModelConfig(**state["model_config"])
    return model_with_weights(
        replace(saved, encoding_options={**saved.encoding_options, **encoding_overrides}), state["model"], device
    )


def model_with_weights(cfg: ModelConfig, weights: dict, device: str = "cpu") -> DecoderLM:
    """A fresh :class:`DecoderLM` of ``cfg`` with ``weights`` loaded (strict: every tensor must fit)."""
    model = DecoderLM(cfg)
    model.load_state_dict(weights, strict=True)
    return model.to(device)


# ----------------------------------------------------------------------------- distributed
def distributed_context(device: str) -> tuple[int, int]:
    """``(rank, world)``; initialises the process group under torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_device(device: str, world: int) -> str:
    """Under torchrun on GPUs each process takes ``cuda:LOCAL_RANK``; otherwise ``device`` unchanged."""
    if world > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    return device


def join_process_group(cfg: TrainConfig) -> tuple[int, int, str]:
    """``(rank, world, device)`` of this process: joins the torchrun group if there is one, checks
    that the global batch splits evenly, and shares the CPU threads between local ranks."""
    rank, world = distributed_context(cfg.device)
    if cfg.batch_size % world:
        raise LabError(f"batch_size={cfg.batch_size} is invalid: expected a multiple of the {world} processes")
    if world > 1 and cfg.device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return rank, world, rank_device(cfg.device, world)


def _mean_over_ranks(value: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= world
    return value


# ----------------------------------------------------------------------------- one step
@dataclass
class Trainer:
    """What one process holds while training: the model, its DDP wrapper (the model itself on one
    process), the optimizer, and the process's place in the group."""

    model: DecoderLM
    wrapped: torch.nn.Module
    optimizer: torch.optim.Optimizer
    rank: int = 0
    world: int = 1
    device: str = "cpu"


def build_trainer(model_cfg: ModelConfig, cfg: TrainConfig, init_state: dict | None = None) -> Trainer:
    """A seeded model of ``model_cfg`` (``init_state`` loaded, if given) and a fresh optimizer, on
    this process's device, wrapped in DDP under torchrun."""
    rank, world, device = join_process_group(cfg)
    torch.manual_seed(cfg.seed)
    model = DecoderLM(model_cfg).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
    optimizer = make_optimizer(model, cfg)
    return Trainer(model, model, optimizer, rank, world, device)


def train_step(trainer: Trainer, data: torch.Tensor | Batches, cfg: TrainConfig, length: int, step: int) -> float:
    """One optimiser step on the batch of ``(cfg.seed, step)``, this rank's slice: ``cfg.batch_size``
    windows of ``length`` bytes of ``data`` (uint8 ``[N]``), or ``data(step, rank, world)`` when
    ``data`` is a batch function (targets ``-100`` are ignored by the loss). Returns the global mean loss."""
    if callable(data):
        inputs, targets = data(step, trainer.rank, trainer.world)
    else:
        inputs, targets = sample_batch(data, cfg.batch_size, length, cfg.seed, step, trainer.rank, trainer.world)
    inputs, targets = inputs.to(trainer.device), targets.to(trainer.device)  # [B / world, length] each
    for group in trainer.optimizer.param_groups:
        group["lr"] = learning_rate(step, cfg)
    loss = causal_lm_loss(trainer.wrapped(inputs), targets)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), cfg.grad_clip)
    trainer.optimizer.step()
    return float(_mean_over_ranks(loss.detach(), trainer.world))


# ----------------------------------------------------------------------------- checkpoint and resume
def _checkpoint_state(trainer: Trainer, model_cfg: ModelConfig, cfg: TrainConfig, step: int, losses, extra) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_cfg.to_dict(),
        "train_config": cfg.to_dict(),
        "step": step,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "losses": list(losses),
        "extra": extra or {},
    }


def _check_resume(state: dict, model_cfg: ModelConfig, cfg: TrainConfig, path) -> None:
    if state["model_config"] != model_cfg.to_dict():
        raise LabError(
            f"checkpoint {str(path)!r} has model {state['model_config']}, not the requested {model_cfg.to_dict()}"
        )
    for key in ("steps", "batch_size", "lr", "seed", "warmup_steps"):
        if state["train_config"][key] != getattr(cfg, key):
            raise LabError(
                f"checkpoint {str(path)!r} has {key}={state['train_config'][key]!r}, the run asks {key}={getattr(cfg, key)!r}: "
                "resume with the same settings"
            )


def restore(
    trainer: Trainer, checkpoint: str | os.PathLike, model_cfg: ModelConfig, cfg: TrainConfig
) -> tuple[int, list[float]]:
    """Load the model and optimizer of ``checkpoint`` (same settings required) into ``trainer``;
    return ``(steps done, losses so far)``, or ``(0, [])`` if there is no checkpoint yet."""
    if not Path(checkpoint).exists():
        return 0, []
    state = load_checkpoint(checkpoint, expect_encoding=model_cfg.encoding, map_location=trainer.device)
    _check_resume(state, model_cfg, cfg, checkpoint)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    return state["step"], list(state["losses"])


def _checkpoint_due(done: int, cfg: TrainConfig) -> bool:
    return done % cfg.checkpoint_every == 0 or done == cfg.steps


# ----------------------------------------------------------------------------- the loop
def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    *,
    corpus: Corpus | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    init_state: dict | None = None,
    progress: bool = True,
    description: str | None = None,
    on_step: Callable[[int, DecoderLM], None] | None = None,
    extra: dict | None = None,
    batches: Batches | None = None,
) -> TrainResult:
    """Train ``model_cfg`` for ``cfg.steps`` steps at length ``model_cfg.max_positions``.

    Args:
        corpus: the data (default: the stdlib corpus).
        checkpoint: file written atomically every ``checkpoint_every`` steps and at the end (rank 0).
        resume: continue from ``checkpoint`` if it exists (same settings required).
        init_state: model weights to start from (fine-tuning); the optimizer starts fresh.
        progress, description: show a progress bar (rank 0) labelled ``description`` (default: the encoding).
        on_step: ``callback(step_done, model)`` after each step, e.g. for evaluation during fine-tuning;
            a true return value stops training there (early stopping): the checkpoint is written at
            that step with ``extra["stopped_at"] = step_done``.
        extra: stored in the checkpoint under ``"extra"``.
        batches: a batch function (:data:`Batches`) to train on instead of ``corpus``.

    Returns:
        :class:`TrainResult`; ``losses[t]`` is the global mean training loss of step ``t``.
    """
    data = batches if batches is not None else (corpus or load_corpus()).train
    trainer = build_trainer(model_cfg, cfg, init_state)
    start, losses = restore(trainer, checkpoint, model_cfg, cfg) if resume and checkpoint is not None else (0, [])
    if trainer.world > 1:
        trainer.wrapped = torch.nn.parallel.DistributedDataParallel(trainer.model)
    trainer.model.train()
    tokens_per_step = cfg.batch_size * model_cfg.max_positions
    show = progress and trainer.rank == 0
    bar = (
        _ProgressBar(description or model_cfg.encoding, cfg.steps, start, tokens_per_step) if show else _NoProgressBar()
    )
    began = time.perf_counter()
    with bar:
        for step in range(start, cfg.steps):
            losses.append(train_step(trainer, data, cfg, model_cfg.max_positions, step))
            done = step + 1
            bar.update(done, losses[-1])
            stop = bool(on_step(done, trainer.model)) if on_step is not None else False
            if stop:
                extra = {**(extra or {}), "stopped_at": done}
            if checkpoint is not None and trainer.rank == 0 and (stop or _checkpoint_due(done, cfg)):
                save_checkpoint(checkpoint, _checkpoint_state(trainer, model_cfg, cfg, done, losses, extra))
            if stop:
                break
    seconds = time.perf_counter() - began
    if trainer.world > 1:
        dist.barrier()
    return TrainResult(trainer.model, losses, seconds, (len(losses) - start) * tokens_per_step / max(seconds, 1e-9))


class _NoProgressBar:
    """The progress bar of a quiet run (and of ranks other than 0)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, done: int, loss: float) -> None:
        pass


class _ProgressBar:
    """A rich progress bar with loss and tokens/s; a plain line every 10% when not on a terminal."""

    def __init__(self, description: str, total: int, start: int, tokens_per_step: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.description, self.total, self.start, self.tokens_per_step = description, total, start, tokens_per_step
        self.interactive = self.console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.interactive,
        )
        self.task = self.progress.add_task(description, total=total, completed=start, loss=float("nan"), tps=0.0)
        self.every = max(1, total // 10)

    def __enter__(self):
        self.began = time.perf_counter()
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, done: int, loss: float) -> None:
        tokens_per_second = (done - self.start) * self.tokens_per_step / max(time.perf_counter() - self.began, 1e-9)
        self.progress.update(self.task, completed=done, loss=loss, tps=tokens_per_second)
        if not self.interactive and (done % self.every == 0 or done == self.total):
            self.console.print(
                f"{self.description}: step {done}/{self.total} loss {loss:.4f} {tokens_per_second:,.0f} tok/s"
            )
