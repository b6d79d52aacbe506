"""Context extension of a RoPE model trained at ``L`` to ``L' = factor * L``.

Each method is the :class:`~ropelab.config.RopeConfig` that :func:`ropelab.extension.extension_config` builds. The
extended model is a new :class:`ModelConfig` (that RoPE in ``encoding_options``) and a fresh
:class:`DecoderLM` built from it, with the trained weights loaded strictly: a built model's config
is never edited.

Each is evaluated zero-shot and after fine-tuning for ``N`` steps at ``L'`` (warm-up then a
constant rate; Chen et al. 2023, sec. 3.1, warm up linearly over 20 steps from 10% of the peak
rate and name no decay after it).
"""

from __future__ import annotations

from dataclasses import replace

from ropelab.encodings import rope_for_model
from ropelab.extension import EXTENSION_METHODS, extension_config
from ropelab.lab import LabError
from ropelab.lab.data import Corpus
from ropelab.lab.evaluate import passkey_accuracy, perplexity
from ropelab.lab.model import DecoderLM, ModelConfig
from ropelab.lab.train import TrainConfig, model_with_weights, train

__all__ = ["extended_config", "extend_model", "run_extension"]


def extended_config(trained: ModelConfig, method: str, factor: float) -> ModelConfig:
    """The config of RoPE model ``trained`` with ``method``'s RoPE for ``factor`` times its
    training length (``max_positions`` stays the training length; the weights fit both)."""
    if trained.encoding != "rope":
        raise LabError(f"extension needs a checkpoint trained with encoding='rope', got encoding={trained.encoding!r}")
    rope = rope_for_model(trained.encoding_options.get("rope"), trained.head_dim, trained.max_positions)
    extended = extension_config(rope, method, trained.max_positions, factor)
    return replace(trained, encoding_options={**trained.encoding_options, "rope": extended.to_hf()})


def extend_model(state: dict, method: str, factor: float, device: str = "cpu") -> DecoderLM:
    """A new model of checkpoint ``state``'s extended config (:func:`extended_config`) with its trained weights."""
    return model_with_weights(
        extended_config(ModelConfig(**state["model_config"]), method, factor), state["model"], device
    )


def run_extension(
    state: dict,
    corpus: Corpus,
    *,
    methods=EXTENSION_METHODS,
    factor: int = 4,
    finetune_steps=(0, 50, 100, 200),
    eval_tokens: int,
    finetune: TrainConfig | None,
    passkey_depths=(0.0, 0.5, 1.0),
    passkey_trials: int = 10,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Zero-shot and fine-tuned perplexity at ``L' = factor * L`` for every method.

    Fine-tuning (``finetune``; ``None`` when ``max(finetune_steps)`` is 0) runs once per method for
    ``max(finetune_steps)`` steps at ``L'`` (global batch ``finetune.batch_size``); perplexity
    (non-overlapping, ``L'`` windows) is taken at each step count in ``finetune_steps``, and
    passkey accuracy at ``L'`` zero-shot and after the last step.

    Returns:
        ``{method: {"rope": cfg dict, "ppl": {steps: ppl}, "passkey": {"zero_shot": acc, "finetuned": acc}}}``.
    """
    train_length = state["model_config"]["max_positions"]
    target = int(train_length * factor)
    last = max(finetune_steps)
    results = {}
    for method in methods:
        model = extend_model(state, method, factor, device)
        curve = {0: perplexity(model, corpus.val, target, eval_tokens, device=device)}
        zero_shot_passkey = _passkey_mean(model, target, passkey_depths, passkey_trials, device)
        if last > 0 and finetune is not None:
            model_cfg = replace(model.cfg, max_positions=target)

            def evaluate_at(done, tuned, curve=curve):
                if done in finetune_steps:
                    curve[done] = perplexity(tuned, corpus.val, target, eval_tokens, device=device)
                    tuned.train()

            tuned = train(
                model_cfg,
                replace(finetune, steps=last),
                corpus=corpus,
                init_state=model.state_dict(),
                progress=progress,
                description=f"fine-tune {method}",
                on_step=evaluate_at,
            ).model
            tuned_passkey = _passkey_mean(tuned, target, passkey_depths, passkey_trials, device)
        else:
            tuned_passkey = zero_shot_passkey
        results[method] = {
            "rope": model.cfg.encoding_options["rope"],
            "length": target,
            "ppl": {int(k): v for k, v in sorted(curve.items())},
            "passkey": {"zero_shot": zero_shot_passkey, "finetuned": tuned_passkey},
        }
    return results


def _passkey_mean(model: DecoderLM, length: int, depths, trials: int, device: str) -> float:
    return sum(passkey_accuracy(model, length, d, trials, device=device) for d in depths) / len(depths)
