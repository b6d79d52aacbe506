"""Passkey retrieval on a real model, many cells per long forward: one haystack, named keys, a KV cache.

The single-key protocol (Mohtashami & Jaggi 2023, "Landmark Attention", arXiv 2305.16300, sec. 4.2;
:func:`ropelab.real.evaluate.single_key_hit`) costs one forward of ``L`` tokens per (length, depth,
key). Here one haystack serves the whole grid of lengths x depths for one trial:

- the filler text carries one named key per distinct needle offset (RULER's multi-key needle,
  Hsieh et al. 2024, arXiv 2404.06654, sec. 3.1): the cell (L, d) owns the needle placed at depth
  ``d`` of the first ``H_L = L - Q`` haystack tokens (``Q`` tokens are kept for the question and
  answer); cells whose needles would land within ``MERGE`` tokens share one;
- the haystack is prefilled once, in causal order, into a KV cache. At each ``H_L`` (ascending) every
  cell of length ``L`` asks for its key's name on the cache: question + answer tokens teacher-forced,
  greedy exact match of the answer (as :func:`~ropelab.real.evaluate.single_key_hit`), then the cache
  is cropped back to ``H_L`` and the prefill goes on. A causal model's prefix of ``H_L`` tokens is
  exactly the haystack of length ``L``, so the long forward is paid once per trial.

Named keys are a harder task than one key alone (the other needles distract); :func:`agreement`
measures how often the two protocols decide a cell the same way.
"""

from __future__ import annotations

import random

import torch

from ropelab.errors import RealModelError
from ropelab.lab.data import PASSKEY_FILLER, PASSKEY_NAMED_KEY, PASSKEY_NAMED_QUESTION, PASSKEY_NAMES
from ropelab.real.evaluate import decoder_and_head, single_key_hit, special_prefix

__all__ = ["Needle", "plan_needles", "haystack", "passkey_records", "grid", "agreement", "MERGE"]

MERGE = 64  # needles wanted closer than this many tokens are one needle


class Needle:
    """A named key at a wanted token offset of the haystack, and the cells (length, depth) it answers."""

    def __init__(self, offset: int, name: str, key: int):
        self.offset, self.name, self.key = offset, name, key
        self.cells: list[tuple[int, float]] = []
        self.start: int | None = None  # where it landed (a filler sentence start at or after offset)


def _tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _reserve(tokenizer) -> int:
    """Tokens kept after ``H_L`` for the longest question + answer."""
    return (
        max(
            len(_tokens(tokenizer, " " + PASSKEY_NAMED_QUESTION.format(name=n))) + len(_tokens(tokenizer, " 99999"))
            for n in PASSKEY_NAMES
        )
        + 2
    )


def plan_needles(tokenizer, lengths, depths, rng: random.Random) -> tuple[list[Needle], int]:
    """One trial's needles (sorted by offset) and the reserve ``Q``."""
    reserve = _reserve(tokenizer)
    size = len(_tokens(tokenizer, " " + PASSKEY_NAMED_KEY.format(name=max(PASSKEY_NAMES, key=len), key=99999))) + 8
    wanted = sorted((round(d * (L - reserve - size)), L, d) for L in lengths for d in depths)
    needles: list[Needle] = []
    for offset, L, d in wanted:
        if not needles or offset - needles[-1].offset >= MERGE:
            if len(needles) == len(PASSKEY_NAMES):
                raise RealModelError(
                    f"passkey grid {list(lengths)} x {list(depths)} needs more than {len(PASSKEY_NAMES)} needles"
                )
            needles.append(Needle(offset, "", 0))
        needles[-1].cells.append((L, d))
    names = rng.sample(PASSKEY_NAMES, len(needles))
    for needle, name in zip(needles, names):
        needle.name, needle.key = name, rng.randint(10000, 99999)
    return needles, reserve


def haystack(tokenizer, needles: list[Needle], total: int) -> torch.Tensor:
    """The tokenizer's prefix, then filler sentences to ``total`` tokens with each needle at the first sentence start at or after its
    offset (its ``start`` is set); int64 ``[total]``."""
    sentences = [_tokens(tokenizer, " " + s.strip() + ".") for s in PASSKEY_FILLER.split(".") if s.strip()]
    ids: list[int] = special_prefix(tokenizer)  # the tokenizer's own BOS, where it adds one
    pending = list(needles)
    index = 0
    while len(ids) < total:
        if pending and len(ids) >= pending[0].offset:
            needle = pending.pop(0)
            needle.start = len(ids)
            ids += _tokens(tokenizer, " " + PASSKEY_NAMED_KEY.format(name=needle.name, key=needle.key))
        else:
            ids += sentences[index % len(sentences)]
            index += 1
    return torch.tensor(ids[:total], dtype=torch.long)


def _ask(model, cache, tokenizer, needle: Needle, prefix: int) -> bool:
    """Teacher-forced question + answer on the cache of ``prefix`` tokens; greedy exact match of the digits."""
    question = _tokens(tokenizer, " " + PASSKEY_NAMED_QUESTION.format(name=needle.name))
    answer = _tokens(tokenizer, f" {needle.key}")
    ids = torch.tensor([question + answer], device=next(model.parameters()).device)
    positions = torch.arange(prefix, prefix + ids.shape[1], device=ids.device)
    logits = model(input_ids=ids, past_key_values=cache, use_cache=True, cache_position=positions).logits[0]
    cache.crop(prefix - cache.get_seq_length())  # a negative count removes tokens (every transformers 4.4x+ and 5.x)
    predicted = logits[len(question) - 1 : -1].argmax(-1)
    return torch.equal(predicted.cpu(), torch.tensor(answer))


def _trial_rng(seed: int, trial: int) -> random.Random:
    return random.Random(seed * 1_000_003 + trial)


def passkey_records(
    model, tokenizer, lengths, depths, trials: int, seed: int = 0, tick=lambda label: None
) -> list[dict]:
    """Every cell's decision in each of ``trials`` haystacks, one prefill of ``max(lengths)`` tokens per
    trial (see the module docstring): ``[{"trial", "length", "depth", "name", "key", "hit"}]``."""
    from transformers import DynamicCache

    body, _ = decoder_and_head(model)
    lengths, depths = sorted(set(lengths)), sorted(set(depths))
    device = next(model.parameters()).device
    records = []
    for trial in range(trials):
        needles, reserve = plan_needles(tokenizer, lengths, depths, _trial_rng(seed, trial))
        ids = haystack(tokenizer, needles, max(lengths) - reserve).to(device)
        # full-attention cache layers for every layer: a sliding-window layer's cache drops old states and
        # cannot be cropped back after a question; the masks still apply each layer's window
        cache, done = DynamicCache(), 0
        with torch.inference_mode():
            for L in lengths:
                end = L - reserve
                body(  # the decoder alone: no full-vocabulary logits for the prefill
                    input_ids=ids[None, done:end],
                    past_key_values=cache,
                    use_cache=True,
                    cache_position=torch.arange(done, end, device=device),
                )
                done = end
                for needle in needles:
                    for length, depth in needle.cells:
                        if length == L:
                            hit = (
                                needle.start is not None
                                and needle.start < end
                                and _ask(model, cache, tokenizer, needle, end)
                            )
                            records.append(
                                {
                                    "trial": trial,
                                    "length": L,
                                    "depth": depth,
                                    "name": needle.name,
                                    "key": needle.key,
                                    "hit": bool(hit),
                                }
                            )
                tick(f"passkey trial {trial + 1}/{trials}, length {L}")
    return records


def grid(records: list[dict]) -> dict:
    """Accuracy per cell from :func:`passkey_records`: ``{str(L): {f"{d:g}": fraction}}``."""
    cells: dict = {}
    for r in records:
        cells.setdefault(str(r["length"]), {}).setdefault(f"{r['depth']:g}", []).append(r["hit"])
    return {L: {d: sum(v) / len(v) for d, v in row.items()} for L, row in cells.items()}


def agreement(model, tokenizer, records: list[dict]) -> list[dict]:
    """Each record of :func:`passkey_records` with the single-key decision for the same length, depth
    and key (:func:`~ropelab.real.evaluate.single_key_hit`, one forward each) added as ``"single"``."""
    return [{**r, "single": single_key_hit(model, tokenizer, r["length"], r["depth"], r["key"])} for r in records]
