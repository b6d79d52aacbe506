"""Evaluation past the training length: perplexity two ways, loss per position, passkey accuracy.

Both perplexity protocols score the same validation bytes (the first ``eval_tokens`` of the
validation stream), so numbers are comparable across lengths and encodings:

- **non-overlapping**: cut into windows of ``T`` and score every byte. A byte at offset ``t`` of
  its window sees ``t`` bytes of context, so longer windows lower the perplexity even for a model
  that only uses ``L`` bytes of it: the "early token curse" (Press et al. 2022, appendix B.1-B.2).
- **sliding window**: windows of ``T`` advance by ``stride = T / 4`` (our choice, a cost
  compromise) and only their last ``stride`` bytes are scored (the first window scores all), so
  almost every byte sees at least ``3T/4`` bytes of context (Press et al. 2022, appendix B.1).
"""

from __future__ import annotations

import math
import random

import torch

from ropelab.lab import LabError
from ropelab.lab.data import passkey_example
from ropelab.lab.model import DecoderLM

__all__ = ["perplexity", "loss_per_position", "passkey_accuracy", "evaluation_lengths", "window_batch"]

# Windows per forward such that batch * T * T stays under this (attention scores memory on CPU).
_SCORES_BUDGET = 1 << 23


def evaluation_lengths(train_length: int, multiples=(1, 2, 4, 8, 16)) -> list[int]:
    """``[L, 2L, 4L, 8L, 16L]``; raises :class:`LabError` for a non-positive length."""
    if train_length <= 0:
        raise LabError(f"length={train_length} is invalid: expected a positive integer")
    return [train_length * m for m in multiples]


def window_batch(length: int) -> int:
    """How many windows of ``length`` to run per forward pass."""
    return max(1, _SCORES_BUDGET // (length * length))


@torch.no_grad()
def _window_losses(model: DecoderLM, stream: torch.Tensor, starts: list[int], length: int, device: str) -> torch.Tensor:
    """Per-byte losses ``[len(starts), length]`` of windows ``stream[s : s + length + 1]``."""
    from ropelab.lab.model import causal_lm_loss

    rows = []
    step = window_batch(length)
    for i in range(0, len(starts), step):
        windows = torch.stack([stream[s : s + length + 1] for s in starts[i : i + step]]).long().to(device)
        logits = model(windows[:, :-1])
        rows.append(causal_lm_loss(logits, windows[:, 1:], reduction="none").cpu())
    return torch.cat(rows)


def _check_stream(stream: torch.Tensor, eval_tokens: int, length: int) -> None:
    if length <= 0:
        raise LabError(f"length={length} is invalid: expected a positive integer")
    if eval_tokens < length:
        raise LabError(f"eval_tokens={eval_tokens} is invalid: expected at least the evaluation length {length}")
    if stream.numel() < eval_tokens + 1:
        raise LabError(f"the validation text has {stream.numel()} bytes, fewer than eval_tokens={eval_tokens} + 1")


def perplexity(
    model: DecoderLM, stream: torch.Tensor, length: int, eval_tokens: int, *, sliding: bool = False, device: str = "cpu"
) -> float:
    """Perplexity ``exp(mean loss)`` over the first ``eval_tokens`` bytes (rounded down to whole windows
    for non-overlapping), with windows of ``length`` bytes. See the module docstring for the protocols."""
    _check_stream(stream, eval_tokens, length)
    model.eval()
    if not sliding:
        count = eval_tokens // length
        losses = _window_losses(model, stream, [i * length for i in range(count)], length, device)
        return math.exp(losses.mean().item())
    stride = max(1, length // 4)
    total, scored = 0.0, 0
    starts = list(range(0, eval_tokens - length + 1, stride))
    losses = _window_losses(model, stream, starts, length, device)
    for row, start in zip(losses, starts):
        keep = row if start == 0 else row[-stride:]
        total, scored = total + keep.sum().item(), scored + keep.numel()
    return math.exp(total / scored)


def loss_per_position(
    model: DecoderLM, stream: torch.Tensor, length: int, eval_tokens: int, device: str = "cpu"
) -> list[float]:
    """Mean loss (nats) at each position index ``0..length-1`` over the non-overlapping windows: ``[length]``."""
    _check_stream(stream, eval_tokens, length)
    model.eval()
    count = eval_tokens // length
    return _window_losses(model, stream, [i * length for i in range(count)], length, device).mean(0).tolist()


@torch.no_grad()
def passkey_accuracy(
    model: DecoderLM, total_length: int, depth: float, trials: int, seed: int = 0, device: str = "cpu"
) -> float:
    """Fraction of ``trials`` random five-digit keys retrieved exactly by greedy decoding.

    Greedy decoding reproduces the answer ``" NNNNN"`` exactly if and only if, fed the correct
    prefix, the arg-max at every answer byte is the correct byte; so one teacher-forced forward
    pass over ``prompt + answer`` decides the exact match of the greedy digits.
    """
    model.eval()
    rng = random.Random(seed * 7919 + total_length * 31 + round(depth * 1000))
    examples = [passkey_example(total_length, depth, rng.randint(10000, 99999)) for _ in range(trials)]
    sequences = torch.tensor([list(p + a) for p, a in examples], dtype=torch.long, device=device)
    answer = len(examples[0][1])
    hits = 0
    step = window_batch(total_length)
    for i in range(0, trials, step):
        batch = sequences[i : i + step]
        predicted = model(batch[:, :-1])[:, -answer:].argmax(-1)
        hits += (predicted == batch[:, -answer:]).all(-1).sum().item()
    return hits / trials
