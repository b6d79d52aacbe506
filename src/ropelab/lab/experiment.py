"""``ropelab lab run``: train every encoding at L, evaluate past L, extend RoPE, collect results.

:class:`LabSettings` holds every knob (a :class:`ModelConfig`, a :class:`TrainConfig` and the
experiment's own fields); :data:`DEFAULT` is the <= 30 min CPU experiment and
:data:`QUICK` the <= 3 min smoke version. The result is one JSON-able dict that
:mod:`ropelab.lab.report` turns into results.json / results.csv / report.html.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ropelab.encodings import ENCODINGS
from ropelab.extension import EXTENSION_METHODS
from ropelab.lab import LabError
from ropelab.lab.data import Corpus, load_corpus
from ropelab.lab.evaluate import evaluation_lengths, loss_per_position, passkey_accuracy, perplexity
from ropelab.lab.extend import run_extension
from ropelab.lab.model import DecoderLM, ModelConfig, require_positive
from ropelab.lab.train import TrainConfig, checkpoint_matches, load_checkpoint, model_from_checkpoint, train

__all__ = [
    "LabSettings",
    "DEFAULT",
    "QUICK",
    "run_experiment",
    "train_and_evaluate",
    "extend_rope",
    "evaluate_model",
    "PASSKEY_MIN_LENGTH",
]

# Shortest passkey prompt + answer in bytes (key sentence, question, answer, one space).
PASSKEY_MIN_LENGTH = 102


@dataclass(frozen=True)
class LabSettings:
    """One experiment: the model and training configs every encoding shares, plus what only the
    experiment needs (which encodings, how to evaluate, how to extend). Validated at construction.

    ``model.encoding`` is a placeholder: each name of ``encodings`` replaces it
    (:meth:`model_config`). Presets and command-line flags change fields with :meth:`override`.

    Raises:
        EncodingError: a name of ``encodings`` is unknown (checked by :class:`ModelConfig`).
        LabError: any other field out of range (the message names it).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1500, warmup_steps=100, checkpoint_every=250))
    encodings: tuple = ENCODINGS
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
    rope_base: float = 10000.0
    rotary_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not self.rope_base > 1:
            raise LabError(f"rope_base={self.rope_base} is invalid: expected a number > 1")
        if not 0 < self.rotary_fraction <= 1 or int(self.rotary_fraction * self.model.head_dim) // 2 < 1:
            raise LabError(
                f"rotary_fraction={self.rotary_fraction} is invalid: expected a fraction in (0, 1] "
                f"that leaves at least one rotary pair of the head width {self.model.head_dim}"
            )
        for name in self.encodings:
            self.model_config(name)
        for method in self.extend_methods:
            if method not in EXTENSION_METHODS:
                raise LabError(f"method={method!r} is unknown: expected one of {', '.join(EXTENSION_METHODS)}")
        require_positive(
            eval_tokens=self.eval_tokens, passkey_trials=self.passkey_trials, extend_factor=self.extend_factor
        )
        if not self.multiples or not self.finetune_steps:
            raise LabError("multiples and finetune_steps are invalid when empty: expected at least one value each")
        if self.eval_tokens < self.length * max(self.multiples):
            raise LabError(
                f"eval_tokens={self.eval_tokens} is invalid: expected at least {max(self.multiples)} x length"
            )

    @property
    def length(self) -> int:
        """The training length ``L`` (``model.max_positions``)."""
        return self.model.max_positions

    def override(self, model: dict | None = None, train: dict | None = None, **fields) -> LabSettings:
        """New settings with fields of ``model`` (:class:`ModelConfig`), of ``train``
        (:class:`TrainConfig`) and of the experiment replaced (``dataclasses.replace``)."""
        return replace(
            self, model=replace(self.model, **(model or {})), train=replace(self.train, **(train or {})), **fields
        )

    def model_config(self, encoding: str) -> ModelConfig:
        """The model for ``encoding``; RoPE (and xPos) get ``rope_base`` and ``rotary_fraction`` when
        either differs from plain RoPE (base 10000, whole head)."""
        options = dict(self.model.encoding_options)
        if encoding in ("rope", "xpos") and (self.rope_base != 10000.0 or self.rotary_fraction != 1.0):
            options["rope"] = self.rope_config().to_hf()
        return replace(self.model, encoding=encoding, encoding_options=options)

    def rope_config(self):
        """The lab's RoPE: base ``rope_base`` on the first ``rotary_fraction`` of each head (rounded down
        to whole pairs), trained at ``L``."""
        from ropelab.config import RopeConfig

        head = self.model.head_dim
        return RopeConfig(
            head_dim=head,
            rotary_dim=2 * (int(self.rotary_fraction * head) // 2),
            base=float(self.rope_base),
            max_position_embeddings=self.length,
        )

    def finetune_config(self) -> TrainConfig | None:
        """Fine-tuning at ``extend_factor * L`` for ``max(finetune_steps)`` steps (``None`` for 0),
        at the same bytes per step as pre-training: the batch shrinks as the length grows."""
        if max(self.finetune_steps) == 0:
            return None
        return replace(
            self.train,
            steps=max(self.finetune_steps),
            batch_size=max(1, self.train.batch_size // self.extend_factor),
            lr=self.finetune_lr,
            warmup_steps=self.finetune_warmup,
            constant_after_warmup=True,
            seed=self.train.seed + 1,
            checkpoint_every=10**9,
        )

    def to_dict(self) -> dict:
        """The flat record stored as ``results.json["settings"]`` (the report reads ``length``,
        ``num_layers``, ``dim``, ``num_heads``, ``steps``, ``batch_size``, ``seed``, ``eval_tokens``)."""
        m, t = self.model, self.train
        return {
            "encodings": self.encodings,
            "length": m.max_positions,
            "num_layers": m.num_layers,
            "dim": m.dim,
            "num_heads": m.num_heads,
            "steps": t.steps,
            "batch_size": t.batch_size,
            "lr": t.lr,
            "warmup_steps": t.warmup_steps,
            "seed": t.seed,
            "eval_tokens": self.eval_tokens,
            "multiples": self.multiples,
            "passkey_multiples": self.passkey_multiples,
            "passkey_depths": self.passkey_depths,
            "passkey_trials": self.passkey_trials,
            "extend_factor": self.extend_factor,
            "extend_methods": self.extend_methods,
            "finetune_steps": self.finetune_steps,
            "finetune_lr": self.finetune_lr,
            "finetune_warmup": self.finetune_warmup,
            "text": self.text,
            "device": t.device,
            "checkpoint_every": t.checkpoint_every,
            "rope_base": self.rope_base,
            "rotary_fraction": self.rotary_fraction,
        }


#: The settings of ``ropelab lab run``.
DEFAULT = LabSettings()
#: The settings of ``ropelab lab run --quick`` (a smoke test, whose numbers carry no claim).
QUICK = DEFAULT.override(
    model=dict(max_positions=64, num_layers=2, dim=64),
    train=dict(steps=150, batch_size=16, warmup_steps=20, checkpoint_every=10**9),
    eval_tokens=2048,
    passkey_multiples=(2, 8),
    passkey_depths=(0.0, 0.5, 1.0),
    passkey_trials=4,
    finetune_steps=(0, 20),
)


def passkey_lengths(settings: LabSettings) -> list[int]:
    return [settings.length * m for m in settings.passkey_multiples if settings.length * m >= PASSKEY_MIN_LENGTH]


def evaluate_model(model: DecoderLM, corpus: Corpus, settings: LabSettings) -> dict:
    """Perplexity (both protocols) at every length, loss per position at the longest, passkey grid."""
    lengths = evaluation_lengths(settings.length, settings.multiples)
    device = settings.train.device
    result = {
        "ppl": {
            "nonoverlap": {n: perplexity(model, corpus.val, n, settings.eval_tokens, device=device) for n in lengths},
            "sliding": {
                n: perplexity(model, corpus.val, n, settings.eval_tokens, sliding=True, device=device) for n in lengths
            },
        },
        "loss_per_position": loss_per_position(model, corpus.val, lengths[-1], settings.eval_tokens, device=device),
        "passkey": {
            n: {
                d: passkey_accuracy(model, n, d, settings.passkey_trials, seed=settings.train.seed, device=device)
                for d in settings.passkey_depths
            }
            for n in passkey_lengths(settings)
        },
    }
    return result


def train_and_evaluate(
    name: str, settings: LabSettings, corpus: Corpus, checkpoint: Path, *, progress: bool = True
) -> tuple[dict, dict]:
    """Train encoding ``name`` (or resume / reuse ``checkpoint`` of the same run) and evaluate it.

    Returns:
        ``(results entry, checkpoint state)``; the learned table is evaluated with ``clamp=True``.
    """
    model_cfg = settings.model_config(name)
    resume = checkpoint_matches(checkpoint, model_cfg, settings.train)
    run = train(model_cfg, settings.train, corpus=corpus, checkpoint=checkpoint, resume=resume, progress=progress)
    state = load_checkpoint(checkpoint, expect_encoding=name)
    model = model_from_checkpoint(state, settings.train.device, **({"clamp": True} if name == "learned" else {}))
    t0 = time.perf_counter()
    evaluation = evaluate_model(model, corpus, settings)
    trained = {
        "final_loss": run.final_loss,
        "seconds": run.seconds,
        "tokens_per_second": run.tokens_per_second,
        "losses": run.losses[:: max(1, len(run.losses) // 200)],
    }
    return {"train": trained, "eval_seconds": time.perf_counter() - t0, **evaluation}, state


def extend_rope(rope_state: dict, settings: LabSettings, corpus: Corpus, *, progress: bool = True) -> dict:
    """``results["extension"]``: every method of ``settings.extend_methods`` on the trained RoPE model."""
    methods = run_extension(
        rope_state,
        corpus,
        methods=settings.extend_methods,
        factor=settings.extend_factor,
        finetune_steps=settings.finetune_steps,
        eval_tokens=settings.eval_tokens,
        finetune=settings.finetune_config(),
        passkey_depths=settings.passkey_depths,
        passkey_trials=settings.passkey_trials,
        device=settings.train.device,
        progress=progress,
    )
    return {"factor": settings.extend_factor, "methods": methods}


# What the quick run's console lines say: 150 steps of pre-training and 20 of fine-tuning show that the
# pipeline runs, not what extension does (fine-tuning that short can raise the perplexity at L').
SMOKE_SUFFIX = " [smoke test: numbers carry no claim]"


def run_experiment(
    settings: LabSettings, out: str | Path, *, progress: bool = True, log=print, smoke_test: bool = False
) -> dict:
    """Train, evaluate and extend; checkpoints go to ``out/checkpoints``. Returns the results dict.
    ``smoke_test`` labels every console line as a smoke test (the quick run)."""
    suffix = SMOKE_SUFFIX if smoke_test else ""
    began = time.perf_counter()
    corpus = load_corpus(settings.text)
    results = {"settings": settings.to_dict(), "corpus": corpus.describe(), "encodings": {}, "timing": {}}
    rope_state = None
    for name in settings.encodings:
        entry, state = train_and_evaluate(
            name, settings, corpus, Path(out) / "checkpoints" / f"{name}.pt", progress=progress
        )
        results["encodings"][name] = entry
        ppl = entry["ppl"]["nonoverlap"]
        log(
            f"{name:>10}: train loss {entry['train']['final_loss']:.3f}; ppl "
            + " / ".join(f"{v:.2f}" for v in ppl.values())
            + f" at {list(ppl)}{suffix}"
        )
        if name == "rope":
            rope_state = state
    if rope_state is not None and settings.extend_methods:
        t0 = time.perf_counter()
        results["extension"] = extend_rope(rope_state, settings, corpus, progress=progress)
        results["timing"]["extension_seconds"] = time.perf_counter() - t0
        for method, r in results["extension"]["methods"].items():
            log(
                f"{'extend ' + method:>18}: ppl@{r['length']} "
                + " -> ".join(f"{v:.2f}" for v in r["ppl"].values())
                + f" after {list(r['ppl'])} steps{suffix}"
            )
    results["timing"]["total_seconds"] = time.perf_counter() - began
    return results
