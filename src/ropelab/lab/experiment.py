"""``ropelab lab run``: train every encoding at L, evaluate past L, extend RoPE, collect results.

:class:`LabSettings` holds every knob; :data:`DEFAULT` is the <= 30 min CPU experiment and
:data:`QUICK` the <= 3 min smoke version. The result is one JSON-able dict that
:mod:`ropelab.lab.report` turns into results.json / results.csv / report.html.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ropelab.encodings import ENCODINGS, check_encoding_name
from ropelab.lab import LabError
from ropelab.lab.data import Corpus, load_corpus
from ropelab.lab.evaluate import evaluation_lengths, loss_per_position, passkey_accuracy, perplexity
from ropelab.extension import EXTENSION_METHODS
from ropelab.lab.extend import run_extension
from ropelab.lab.model import DecoderLM, ModelConfig
from ropelab.lab.train import TrainConfig, load_checkpoint, model_from_checkpoint, train

__all__ = ["LabSettings", "DEFAULT", "QUICK", "run_experiment", "evaluate_model", "PASSKEY_MIN_LENGTH"]

# Shortest passkey prompt + answer in bytes (key sentence, question, answer, one space).
PASSKEY_MIN_LENGTH = 102


@dataclass
class LabSettings:
    encodings: tuple = ENCODINGS
    length: int = 128
    num_layers: int = 3
    dim: int = 128
    num_heads: int = 4
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    seed: int = 0
    eval_tokens: int = 16384
    multiples: tuple = (1, 2, 4, 8, 16)
    passkey_multiples: tuple = (1, 2, 4, 8)
    passkey_depths: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    passkey_trials: int = 10
    extend_factor: int = 4
    extend_methods: tuple = EXTENSION_METHODS
    finetune_steps: tuple = (0, 25, 50, 100, 200)
    finetune_lr: float = 5e-4
    finetune_warmup: int = 20
    text: str | None = None
    device: str = "cpu"
    checkpoint_every: int = 250

    def validate(self) -> None:
        for name in self.encodings:
            check_encoding_name(name)
        for key in ("length", "steps", "batch_size", "eval_tokens", "num_layers", "dim", "num_heads", "passkey_trials"):
            if getattr(self, key) <= 0:
                raise LabError(f"{key}={getattr(self, key)} is invalid: expected a positive integer")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise LabError(f"dim={self.dim}, num_heads={self.num_heads} is invalid: expected an even head width dim / num_heads")
        if self.eval_tokens < self.length * max(self.multiples):
            raise LabError(f"eval_tokens={self.eval_tokens} is invalid: expected at least {max(self.multiples)} x length")

    def model_config(self, encoding: str) -> ModelConfig:
        return ModelConfig(encoding, self.num_layers, self.dim, self.num_heads, self.length)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
            seed=self.seed, device=self.device, checkpoint_every=self.checkpoint_every,
        )

    def finetune_config(self) -> TrainConfig:
        # Same bytes per step as pre-training: batch shrinks as the length grows.
        batch = max(1, self.batch_size // self.extend_factor)
        return TrainConfig(
            steps=max(self.finetune_steps), batch_size=batch, lr=self.finetune_lr, warmup_steps=self.finetune_warmup,
            constant_after_warmup=True, seed=self.seed + 1, device=self.device, checkpoint_every=10**9,
        )

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT = LabSettings()
QUICK = replace(
    DEFAULT, length=64, num_layers=2, dim=64, steps=150, batch_size=16, warmup_steps=20, eval_tokens=2048,
    passkey_multiples=(2, 8), passkey_depths=(0.0, 0.5, 1.0), passkey_trials=4, finetune_steps=(0, 20),
    checkpoint_every=10**9,
)


def passkey_lengths(settings: LabSettings) -> list[int]:
    return [settings.length * m for m in settings.passkey_multiples if settings.length * m >= PASSKEY_MIN_LENGTH]


def evaluate_model(model: DecoderLM, corpus: Corpus, settings: LabSettings) -> dict:
    """Perplexity (both protocols) at every length, loss per position at the longest, passkey grid."""
    lengths = evaluation_lengths(settings.length, settings.multiples)
    device = settings.device
    result = {
        "ppl": {
            "nonoverlap": {n: perplexity(model, corpus.val, n, settings.eval_tokens, device=device) for n in lengths},
            "sliding": {n: perplexity(model, corpus.val, n, settings.eval_tokens, sliding=True, device=device) for n in lengths},
        },
        "loss_per_position": loss_per_position(model, corpus.val, lengths[-1], settings.eval_tokens, device=device),
        "passkey": {
            n: {d: passkey_accuracy(model, n, d, settings.passkey_trials, seed=settings.seed, device=device) for d in settings.passkey_depths}
            for n in passkey_lengths(settings)
        },
    }
    return result


def _resumable(path: Path, model_cfg: ModelConfig, train_cfg: TrainConfig) -> bool:
    """True if ``path`` holds a checkpoint of this very run (same model and settings) to continue
    or reuse; a checkpoint of other settings is overwritten by a fresh run."""
    if not path.exists():
        return False
    try:
        state = load_checkpoint(path, expect_encoding=model_cfg.encoding)
    except LabError:
        return False
    return state["model_config"] == model_cfg.to_dict() and state["train_config"] == train_cfg.to_dict()


def run_experiment(settings: LabSettings, out: str | Path, *, progress: bool = True, log=print) -> dict:
    """Train, evaluate and extend; checkpoints go to ``out/checkpoints``. Returns the results dict."""
    settings.validate()
    began = time.perf_counter()
    corpus = load_corpus(settings.text)
    checkpoints = Path(out) / "checkpoints"
    results = {"settings": settings.to_dict(), "corpus": corpus.describe(), "encodings": {}, "timing": {}}
    rope_state = None
    for name in settings.encodings:
        path = checkpoints / f"{name}.pt"
        model_cfg, train_cfg = settings.model_config(name), settings.train_config()
        resume = _resumable(path, model_cfg, train_cfg)
        run = train(model_cfg, train_cfg, corpus=corpus, checkpoint=path, resume=resume, progress=progress)
        state = load_checkpoint(path, expect_encoding=name)
        model = model_from_checkpoint(state, settings.device, **({"clamp": True} if name == "learned" else {}))
        t0 = time.perf_counter()
        evaluation = evaluate_model(model, corpus, settings)
        results["encodings"][name] = {
            "train": {"final_loss": run.final_loss, "seconds": run.seconds, "tokens_per_second": run.tokens_per_second, "losses": run.losses[:: max(1, len(run.losses) // 200)]},
            "eval_seconds": time.perf_counter() - t0,
            **evaluation,
        }
        ppl = evaluation["ppl"]["nonoverlap"]
        log(f"{name:>10}: train loss {run.final_loss:.3f}; ppl " + " / ".join(f"{v:.2f}" for v in ppl.values()) + f" at {list(ppl)}")
        if name == "rope":
            rope_state = state
    if rope_state is not None and settings.extend_methods:
        t0 = time.perf_counter()
        results["extension"] = {
            "factor": settings.extend_factor,
            "methods": run_extension(
                rope_state, corpus, methods=settings.extend_methods, factor=settings.extend_factor,
                finetune_steps=settings.finetune_steps, eval_tokens=settings.eval_tokens, finetune=settings.finetune_config(),
                passkey_depths=settings.passkey_depths, passkey_trials=settings.passkey_trials, device=settings.device, progress=progress,
            ),
        }
        results["timing"]["extension_seconds"] = time.perf_counter() - t0
        for method, r in results["extension"]["methods"].items():
            log(f"{'extend ' + method:>18}: ppl@{r['length']} " + " -> ".join(f"{v:.2f}" for v in r["ppl"].values()) + f" after {list(r['ppl'])} steps")
    results["timing"]["total_seconds"] = time.perf_counter() - began
    return results
