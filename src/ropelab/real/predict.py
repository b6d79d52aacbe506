"""Predict where a real model breaks, from its own q and k on an input no longer than ``T``.

:func:`gather_qk` runs one forward of at most ``T`` tokens with forward hooks on every attention
layer's query and key projections (``q_norm`` / ``k_norm`` when the model normalises them, as Qwen3
does: that is the q and k that RoPE rotates), keeps a sample of positions, and hands them to the
pure predictor :func:`ropelab.analysis.breaks.predict_break`. Nothing runs past ``T``.
"""

from __future__ import annotations

import torch

from ropelab.analysis.breaks import BreakPrediction, predict_breaks
from ropelab.config import RopeConfig
from ropelab.errors import RealModelError

__all__ = ["gather_qk", "sample_positions", "predict_real", "PROBE_LENGTH", "QUERIES", "KEYS", "PER_HEAD_QKV"]

PROBE_LENGTH = 2048  # tokens of text the q and k come from (at most T)
QUERIES, KEYS = 16, 16  # positions sampled for queries and keys (16 x 16 pairs per head; 30 x 9 heads in SmolLM2)


def sample_positions(length: int, count: int, seed: int, *, start: int = 0) -> torch.Tensor:
    """``count`` distinct positions in ``[start, length)``, sorted (all of them if fewer): int64 ``[count]``."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.arange(start, length)
    return pool[torch.randperm(pool.numel(), generator=generator)[:count]].sort().values


# model_type -> the fused projection whose output holds ``[q | k | v]`` per head (``[S, H, 3 Dh]``)
PER_HEAD_QKV = {"gpt_neox": "query_key_value"}


def _attention_modules(model) -> list:
    fused = PER_HEAD_QKV.get(getattr(model.config, "model_type", None))
    layers = [
        m
        for name, m in model.named_modules()
        if (name.endswith("self_attn") and (hasattr(m, "k_proj") or hasattr(m, "qkv_proj")))
        or (fused is not None and name.endswith("attention") and isinstance(getattr(m, fused, None), torch.nn.Linear))
    ]
    if not layers:
        raise RealModelError(
            f"{type(model).__name__} is unsupported by the predictor: no self_attn modules with q_proj / k_proj, "
            "a fused qkv_proj, or GPT-NeoX's query_key_value to read q and k from"
        )
    return layers


def _sources(attention, head_dim: int) -> dict[str, tuple]:
    """Where q and k are read: ``kind -> (module, take)``, ``take`` mapping the module's output ``[S, C]``
    (or ``[S, H, Dh]``) to ``[S, H, Dh]``. A per-head ``q_norm`` / ``k_norm`` output where the model
    normalises them (Qwen3, Gemma 3), else the projection; a fused ``qkv_proj`` (Phi-3) holds
    ``[q heads | kv heads | kv heads]`` along its output channels, GPT-NeoX's ``query_key_value``
    ``[q | k | v]`` within each head."""
    config = getattr(attention, "config", None)
    fused = PER_HEAD_QKV.get(getattr(config, "model_type", None))
    if fused is not None and hasattr(attention, fused):
        module = getattr(attention, fused)

        def per_head(part: int):
            return lambda x: x.reshape(x.shape[0], -1, 3 * head_dim)[..., part * head_dim : (part + 1) * head_dim]

        return {"q": (module, per_head(0)), "k": (module, per_head(1))}
    if hasattr(attention, "qkv_proj"):
        q_width = config.num_attention_heads * head_dim
        kv_width = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * head_dim

        def channels(start: int, width: int):
            return lambda x: x[..., start : start + width].reshape(x.shape[0], -1, head_dim)

        return {"q": (attention.qkv_proj, channels(0, q_width)), "k": (attention.qkv_proj, channels(q_width, kv_width))}
    out = {}
    for kind in ("q", "k"):
        norm = getattr(attention, f"{kind}_norm", None)
        module = norm if norm is not None else getattr(attention, f"{kind}_proj")
        out[kind] = (module, lambda x: x.reshape(x.shape[0], -1, head_dim))
    return out


def gather_qk(
    model, ids: torch.Tensor, queries: int = QUERIES, keys: int = KEYS, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-rotation q and k of every attention layer at sampled positions of one forward over ``ids [S]``
    (separate or fused projections: :func:`_sources`).

    Queries come from the second half of the input (they have context), keys from anywhere,
    always including position 0 (the attention sink of Xiao et al. 2023, "Efficient Streaming
    Language Models with Attention Sinks", arXiv 2309.17453).

    Returns:
        per layer ``(q [Hq, queries, Dh], k [Hkv, keys, Dh])`` float32.
    """
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    S = ids.numel()
    q_at = sample_positions(S, queries, seed, start=S // 2)
    k_at = torch.cat((torch.zeros(1, dtype=torch.long), sample_positions(S, keys - 1, seed + 1, start=1))).sort().values
    captured, handles = {}, []
    for index, attention in enumerate(_attention_modules(model)):
        sources = _sources(attention, head_dim)
        for kind, at in (("q", q_at), ("k", k_at)):
            module, take = sources[kind]

            def hook(_module, _inputs, output, index=index, kind=kind, at=at, take=take):
                x = take(output[0].detach().float())  # [S, H, Dh]
                captured[index, kind] = x[at.to(x.device)].transpose(0, 1).cpu()

            handles.append(module.register_forward_hook(hook))
    body = model.get_decoder() if hasattr(model, "get_decoder") and model.get_decoder() is not None else model
    try:
        with torch.inference_mode():  # the decoder body only: no lm_head logits (2048 x vocab floats) are needed
            body(input_ids=ids[None].to(next(model.parameters()).device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return [(captured[i, "q"], captured[i, "k"]) for i in range(len(handles) // 2)]


def predict_real(
    model,
    tokenizer,
    trained_cfg: RopeConfig,
    configs: dict[str, RopeConfig],
    trained: int,
    target: int,
    *,
    text: str | None = None,
    probe_length: int = PROBE_LENGTH,
) -> dict[str, BreakPrediction]:
    """Rule (c) for each ``configs`` entry (name -> the RoPE evaluated to ``target``), from one forward of
    ``min(probe_length, T)`` tokens of the text (default: the stdlib validation text) under ``trained_cfg``."""
    from ropelab.real.evaluate import corpus_documents, use_rope

    length = min(probe_length, trained)
    docs, _ = corpus_documents(tokenizer, length, 1, text)
    use_rope(model, trained_cfg)
    layers = gather_qk(model, docs[0][:-1])
    return predict_breaks(layers, trained_cfg, configs, trained, target)
