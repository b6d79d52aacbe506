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

Hyper-parameters (the papers all fine-tune LLaMA-7B; each is named where it is used):
AdamW with betas (0.9, 0.95), no weight decay, learning rate 2e-5, linear warm-up over 20 steps from
10% of the rate, then constant (Chen et al. 2023, "Extending Context Window of Large Language Models
via Positional Interpolation", arXiv 2306.15595, sec. 3.1 / 4.1; YaRN, Peng et al. 2023,
arXiv 2309.00071, sec. 4.1, uses the same rate, warm-up and betas). They train 400-1000 steps at a
global batch of 64 long sequences; 2 CPU cores afford one window per step (stated in the report).

All weights train (no LoRA), in float32 master weights with bfloat16 autocast on CPU: see
``benchmarks/real_speed.py`` for the measured step times, and LongLoRA (Chen et al. 2023,
arXiv 2309.12307, Table 2) for LoRA alone widening the perplexity gap on context extension unless
embeddings and norms also train. Checkpoints are atomic (:func:`ropelab.io.atomic_write`) and hold
the model, the optimizer, the step, the loss history and the random generator, so that an
interrupted run resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ropelab.errors import RealModelError

__all__ = [
    "FinetuneSettings",
    "PoseWindow",
    "pose_window",
    "window_loss",
    "finetune",
    "finetune_study",
    "check_finetune_methods",
    "FINETUNABLE",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "ropelab-real-finetune-1"


@dataclass(frozen=True)
class FinetuneSettings:
    """One PoSE fine-tune: ``steps`` windows of ``window`` tokens, positions over ``[0, target)``."""

    steps: int
    window: int
    target: int
    lr: float = 2e-5  # Chen et al. 2023, sec. 4.1 (7B and 13B); YaRN sec. 4.1
    warmup: int = 20  # ditto: linear warm-up over 20 steps, starting from 10% of the rate
    betas: tuple[float, float] = (0.9, 0.95)  # ditto
    autocast: bool = True  # bfloat16 autocast over float32 master weights (benchmarks/real_speed.py)
    seed: int = 0
    checkpoint_every: int = 25

    def check(self, trained: int) -> None:
        """Raises :class:`RealModelError` naming the bad value."""
        if not 0 < self.window <= trained:
            raise RealModelError(f"--finetune-window {self.window} is invalid: expected 1 <= window <= T={trained}")
        if self.steps < 0:
            raise RealModelError(f"--finetune-steps {self.steps} is invalid: expected >= 0")
        if self.target < self.window:
            raise RealModelError(f"--to {self.target} is invalid: the target must be at least the window {self.window}")


@dataclass(frozen=True)
class PoseWindow:
    """One training window: ``inputs``, ``positions``, ``targets``, each int64 ``[W]``."""

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


def window_loss(model, window: PoseWindow) -> torch.Tensor:
    """Mean next-token loss of one :class:`PoseWindow` under the model's position ids (a 0-dim tensor)."""
    device = next(model.parameters()).device
    logits = model(input_ids=window.inputs[None].to(device), position_ids=window.positions[None].to(device)).logits[0]
    return F.cross_entropy(logits.float(), window.targets.to(device))


def _learning_rate(step: int, settings: FinetuneSettings) -> float:
    """Linear warm-up from 10% of the rate over ``warmup`` steps, then constant (Chen et al. 2023, sec. 4.1)."""
    if step >= settings.warmup:
        return settings.lr
    return settings.lr * (0.1 + 0.9 * step / settings.warmup)


def _checkpoint_state(model, optimizer, step: int, losses: list[float], generator, settings, method: str) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "method": method,
        "settings": asdict(settings),
        "step": step,
        "losses": losses,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }


def _resume(path: Path, model, optimizer, generator, settings, method: str) -> tuple[int, list[float]]:
    """Load ``path`` if it is a checkpoint of this very fine-tune; ``(step, losses)``, else ``(0, [])``."""
    if not path.is_file():
        return 0, []
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise RealModelError(
            f"fine-tune checkpoint {str(path)!r} is corrupt ({type(error).__name__}); remove it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise RealModelError(f"fine-tune checkpoint {str(path)!r} is invalid: not a ropelab fine-tune checkpoint")
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in state["settings"].items()}
    if state["method"] != method or {k: v for k, v in saved.items() if k != "steps"} != {
        k: v for k, v in asdict(settings).items() if k != "steps"
    }:
        raise RealModelError(
            f"fine-tune checkpoint {str(path)!r} belongs to another fine-tune ({state['method']}, "
            f"{state['settings']}); remove it or use another --out"
        )
    if state["step"] > settings.steps:
        raise RealModelError(
            f"fine-tune checkpoint {str(path)!r} is at step {state['step']}, past the {settings.steps} "
            "steps asked; remove it or ask for more steps"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state["step"], list(state["losses"])


def finetune(
    model,
    documents: list[torch.Tensor],
    settings: FinetuneSettings,
    *,
    method: str,
    checkpoint: str | os.PathLike | None = None,
    tick=lambda step, loss: None,
) -> list[float]:
    """PoSE fine-tuning of ``model`` (in place; its RoPE already set to the scaled one) for
    ``settings.steps`` steps; returns the loss per step.

    Args:
        documents: training documents, int64 ``[D]`` each with ``D > window``, disjoint from the
            evaluation text.
        checkpoint: a file; written atomically every ``checkpoint_every`` steps and at the end, and
            resumed from when it holds this fine-tune (same method and settings but ``steps``).
    """
    from ropelab.lab.train import save_checkpoint

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=settings.betas, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    path = Path(checkpoint) if checkpoint else None
    step, losses = _resume(path, model, optimizer, generator, settings, method) if path else (0, [])
    model.train()
    try:
        while step < settings.steps:
            document = documents[_uniform(0, len(documents) - 1, generator)]
            window = pose_window(document, settings.window, settings.target, generator)
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, settings)
            with torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16, enabled=settings.autocast):
                loss = window_loss(model, window)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            step += 1
            losses.append(loss.item())
            tick(step, losses[-1])
            if path and (step % settings.checkpoint_every == 0 or step == settings.steps):
                save_checkpoint(path, _checkpoint_state(model, optimizer, step, losses, generator, settings, method))
    finally:
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

    Args:
        settings: the run's :class:`~ropelab.real.stages.Settings` (target, documents, passkey grid).
        checkpoints: folder of one atomic checkpoint per method (resumed from on a rerun) and of each
            measurement after ``k1`` and ``k2`` steps (a rerun reuses them).
    Returns:
        ``{"methods": {m: {"losses": [...], "checks": {steps: measure entry}}}, "weights": {m: state dict}}``;
        the model is back to its original weights.
    """
    from dataclasses import replace

    from ropelab.io import atomic_write_text
    from ropelab.real.evaluate import corpus_documents, use_rope
    from ropelab.real.stages import measure, method_config

    original = {k: v.detach().clone() for k, v in model.state_dict().items()}
    documents, _ = corpus_documents(tokenizer, 4 * tuning.window, 16, split="train")
    out: dict = {
        "methods": {},
        "weights": {},
        "training_text": "Python stdlib training files (the lab's split by file)",
    }
    k1 = tuning.steps // 2
    for method in methods:
        model.load_state_dict(original)
        use_rope(model, method_config(rope, method, trained, settings.target))
        checks, losses = {}, []
        for steps in dict.fromkeys(s for s in (k1, tuning.steps) if s > 0):
            done = checkpoints / f"{method}-step{steps}.json"  # the measurement at this step, kept for a rerun
            if done.is_file() and steps < tuning.steps:
                checks[steps] = json.loads(done.read_text())
                continue
            losses = finetune(
                model,
                documents,
                replace(tuning, steps=steps),
                method=method,
                checkpoint=checkpoints / f"{method}.pt",
                tick=lambda step, loss, method=method: tick(
                    f"{method}+pose: step {step}/{tuning.steps}, loss {loss:.3f}", ("train", tuning.window)
                ),
            )
            if done.is_file():
                checks[steps] = json.loads(done.read_text())
                continue
            grid = settings if steps == tuning.steps else replace(settings, passkey_lengths=())
            checks[steps] = measure(model, tokenizer, rope, trained, replace(grid, methods=(method,)), tick=tick)[
                "methods"
            ][method]
            atomic_write_text(done, json.dumps(checks[steps]))
        out["methods"][method] = {"losses": losses, "checks": checks}
        out["weights"][method] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(original)
    return out
