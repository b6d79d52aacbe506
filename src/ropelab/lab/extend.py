"""Context extension of a RoPE model trained at ``L`` to ``L' = factor * L``.

Each method is the :class:`RopeConfig` that :func:`ropelab.extension.extension_config` builds,
swapped into the trained model, weights unchanged (the methods are listed there).

Each is evaluated zero-shot and after fine-tuning for ``N`` steps at ``L'`` (warm-up then a
constant rate; Chen et al. 2023, sec. 3.1, warm up linearly over 20 steps from 10% of the peak
rate and name no decay after it).
"""

from __future__ import annotations

from dataclasses import replace

from ropelab.extension import EXTENSION_METHODS, extension_config
from ropelab.lab import LabError
from ropelab.lab.data import Corpus
from ropelab.lab.evaluate import passkey_accuracy, perplexity
from ropelab.lab.model import DecoderLM
from ropelab.lab.train import TrainConfig, model_from_checkpoint, train

__all__ = ["extend_model", "run_extension"]

def extend_model(state: dict, method: str, factor: float, device: str = "cpu") -> DecoderLM:
    """The trained RoPE model of checkpoint ``state`` with ``method``'s RoPE swapped in."""
    if state["model_config"]["encoding"] != "rope":
        raise LabError(
            f"extension needs a checkpoint trained with encoding='rope', got encoding={state['model_config']['encoding']!r}"
        )
    model = model_from_checkpoint(state, device)
    model.encoding.cfg = extension_config(model.encoding.cfg, method, model.cfg.max_positions, factor)
    model.cfg.encoding_options = {**model.cfg.encoding_options, "rope": model.encoding.cfg.to_hf()}
    return model


def run_extension(
    state: dict,
    corpus: Corpus,
    *,
    methods=EXTENSION_METHODS,
    factor: int = 4,
    finetune_steps=(0, 50, 100, 200),
    eval_tokens: int,
    finetune: TrainConfig,
    passkey_depths=(0.0, 0.5, 1.0),
    passkey_trials: int = 10,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Zero-shot and fine-tuned perplexity at ``L' = factor * L`` for every method.

    Fine-tuning runs once per method for ``max(finetune_steps)`` steps at ``L'`` (global batch
    ``finetune.batch_size``); perplexity (non-overlapping, ``L'`` windows) is taken at each step
    count in ``finetune_steps``, and passkey accuracy at ``L'`` zero-shot and after the last step.

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
        if last > 0:
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
            "rope": model.encoding.cfg.to_hf(),
            "length": target,
            "ppl": {int(k): v for k, v in sorted(curve.items())},
            "passkey": {"zero_shot": zero_shot_passkey, "finetuned": tuned_passkey},
        }
    return results


def _passkey_mean(model: DecoderLM, length: int, depths, trials: int, device: str) -> float:
    return sum(passkey_accuracy(model, length, d, trials, device=device) for d in depths) / len(depths)
