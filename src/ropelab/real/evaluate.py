"""Zero-shot evaluation of a real model under a chosen RoPE: loss per position, perplexity, passkey.

- :func:`use_rope` imposes a :class:`RopeConfig` through :func:`ropelab.integrations.hf.patch`
  (``verify=False``: a scaled RoPE differs from the checkpoint's on purpose).
- :func:`token_losses` runs the model body once and applies ``lm_head`` + cross-entropy in chunks
  of positions, so full-vocabulary float32 logits are never held for the whole sequence
  (16k tokens x 49k vocab would be ~3 GB).
- :func:`passkey_tokens` is the lab's passkey protocol (:func:`ropelab.lab.data.passkey_example`)
  measured in the model's tokens; :func:`single_key_hit` decides greedy exact match of the digits
  with one teacher-forced forward, as the lab does.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import RealModelError
from ropelab.integrations.hf import patch, unpatch
from ropelab.lab.data import load_corpus, passkey_example

__all__ = [
    "use_rope",
    "precision",
    "token_losses",
    "bin_losses",
    "segment_perplexities",
    "corpus_documents",
    "special_prefix",
    "decoder_and_head",
    "passkey_tokens",
    "single_key_hit",
    "LOSS_CHUNK",
]

LOSS_CHUNK = 1024  # positions per lm_head + cross-entropy chunk: 1024 x 49152 x 4 B = 200 MB


def use_rope(model, cfg: RopeConfig | LayerTypeRope):
    """Make ``model`` compute RoPE as ``cfg`` says (ropelab's exact tables; one per layer type for a
    :class:`~ropelab.config.LayerTypeRope`); returns ``model``."""
    unpatch(model)
    return patch(model, cfg, verify=False)


def decoder_and_head(model):
    """The decoder body (hidden states, no logits) and the ``lm_head`` of a causal LM."""
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    head = model.get_output_embeddings()
    if body is None or head is None:
        raise RealModelError(f"{type(model).__name__} exposes no decoder body or lm_head")
    return body, head


def token_losses(model, ids: torch.Tensor, chunk: int = LOSS_CHUNK, *, grad: bool = False) -> torch.Tensor:
    """Next-token loss (nats) at every position of one sequence.

    Args:
        ids: int64 ``[S + 1]`` token ids (the last one is only a target).
    Returns:
        float32 ``[S]``: ``loss[t] = -log p(ids[t + 1] | ids[: t + 1])``.
    """
    body, head = decoder_and_head(model)
    device = next(model.parameters()).device
    ids = ids.to(device)
    with torch.set_grad_enabled(grad):
        # no KV cache: one forward needs none (positions are 0..S-1, so no jump reads as packing)
        hidden = body(input_ids=ids[None, :-1], use_cache=False).last_hidden_state[0]  # [S, D]
        parts = []
        for start in range(0, hidden.shape[0], chunk):
            logits = head(hidden[start : start + chunk]).float()  # [chunk, V]
            parts.append(F.cross_entropy(logits, ids[start + 1 : start + 1 + chunk], reduction="none"))
        return torch.cat(parts)


def special_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts before a text by its own convention (Llama 3's and Gemma's BOS; none
    for SmolLM2's): what ``tokenizer(text)`` adds in front of ``tokenizer(text, add_special_tokens=False)``."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def bin_losses(losses: torch.Tensor, width: int) -> list[float]:
    """Mean loss per bin of ``width`` positions (the last bin may be shorter): ``[ceil(S / width)]``."""
    return [losses[i : i + width].mean().item() for i in range(0, losses.numel(), width)]


def segment_perplexities(losses: torch.Tensor, width: int) -> dict[str, float]:
    """``{"start-end": exp(mean loss)}`` over consecutive segments of ``width`` positions."""
    out = {}
    for start in range(0, losses.numel(), width):
        part = losses[start : start + width]
        out[f"{start}-{start + part.numel()}"] = math.exp(part.mean().item())
    return out


def precision(model, dtype: str):
    """The context a forward runs in: ``"bfloat16"`` is autocast over the float32 weights (matmuls and
    attention in bfloat16; ``benchmarks/real_speed.py`` measures its speed and perplexity), ``"float32"``
    is plain float32."""
    if dtype not in ("bfloat16", "float32"):
        raise RealModelError(f"--dtype {dtype!r} is invalid: expected bfloat16 or float32")
    return torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")


@functools.lru_cache(maxsize=4)
def _corpus(text: str | None):
    """The lab's corpus, read once per process (walking the stdlib sources takes seconds)."""
    return load_corpus(text)


def corpus_documents(
    tokenizer, length: int, count: int, text: str | None = None, *, split: str = "val"
) -> tuple[list[torch.Tensor], str]:
    """``count`` documents of ``length + 1`` tokens from the lab's validation text (default: the
    Python standard library sources; or ``--text``), tokenized with the model's tokenizer, each
    starting with the tokenizer's own prefix (:func:`special_prefix`: a BOS where it adds one).
    ``split="train"`` takes them from the stdlib's training files whatever ``text`` is (the lab's
    split by file: disjoint from the validation files), for fine-tuning.

    Raises:
        RealModelError: the text holds fewer than ``count * (length + 1)`` tokens.
    """
    from ropelab.errors import LabError

    if split not in ("val", "train"):
        raise ValueError(f"split={split!r} is invalid: expected 'val' or 'train'")
    text = None if split == "train" else text
    try:
        corpus = _corpus(text)
    except LabError as error:
        raise RealModelError(str(error)) from None
    # the stdlib's validation (or training) files, as the lab splits them; a user text is used whole
    # for evaluation unless a training split is asked for
    if text is None:
        stream = corpus.val if split == "val" else corpus.train
    else:
        stream = torch.cat((corpus.train, corpus.val))
    prefix = special_prefix(tokenizer)
    body = length + 1 - len(prefix)  # text tokens per document
    need = count * body
    chars = min(stream.numel(), need * 8)
    while True:
        data = bytes(stream[:chars].tolist()).decode("utf-8", errors="replace")
        ids = tokenizer(data, add_special_tokens=False)["input_ids"]
        if len(ids) >= need or chars >= stream.numel():
            break
        chars = min(stream.numel(), chars * 2)
    if len(ids) < need:
        raise RealModelError(
            f"--text {text or 'stdlib'!r} is too short: {len(ids):,} tokens, "
            f"need {count} document(s) of {length + 1:,} tokens"
        )
    ids = torch.tensor(ids[:need], dtype=torch.long).view(count, body)
    if prefix:
        ids = torch.cat((torch.tensor(prefix, dtype=torch.long).expand(count, -1), ids), dim=1)
    return list(ids), corpus.source


def passkey_tokens(tokenizer, total_tokens: int, depth: float, key: int) -> tuple[torch.Tensor, int]:
    """The lab's passkey prompt sized to about ``total_tokens`` tokens (prompt + answer), after the
    tokenizer's own prefix (:func:`special_prefix`).

    The byte length handed to :func:`passkey_example` is adjusted until the tokenized prompt +
    answer is within 1% of ``total_tokens`` (never above it). Returns ``(ids [n], answer_tokens)``.
    """
    prefix = special_prefix(tokenizer)
    ratio = 4.0
    size = max(200, int(total_tokens * ratio))
    best = None
    for _ in range(8):
        prompt, answer = passkey_example(size, depth, key)
        p = prefix + tokenizer(prompt.decode(), add_special_tokens=False)["input_ids"]
        a = tokenizer(answer.decode(), add_special_tokens=False)["input_ids"]
        n = len(p) + len(a)
        if n <= total_tokens and (best is None or n > best[0]):
            best = (n, p, a)
        if n <= total_tokens and n >= 0.99 * total_tokens:
            break
        size = max(200, int(size * total_tokens / n) - (2 if n > total_tokens else 0))
    if best is None:
        raise RealModelError(f"--passkey-lengths {total_tokens} is too short: the passkey prompt needs more tokens")
    _, p, a = best
    return torch.tensor(p + a, dtype=torch.long), len(a)


def single_key_hit(model, tokenizer, total_tokens: int, depth: float, key: int) -> bool:
    """Whether greedy decoding reproduces ``key`` from the single-key prompt (:func:`passkey_tokens`).

    One teacher-forced forward decides it: greedy decoding emits the answer exactly iff, fed the
    right prefix, the arg-max at every answer token is the right token.
    """
    body, head = decoder_and_head(model)
    ids, answer = passkey_tokens(tokenizer, total_tokens, depth, key)
    ids = ids.to(next(model.parameters()).device)
    with torch.inference_mode():
        hidden = body(input_ids=ids[None, :-1], use_cache=False).last_hidden_state[0, -answer:]
        return torch.equal(head(hidden).argmax(-1), ids[-answer:])
