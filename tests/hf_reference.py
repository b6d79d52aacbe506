"""Helpers that build tiny transformers configs and call transformers' own RoPE code (the golden reference)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


def llama_config(head_dim: int, rope_parameters: dict, max_position_embeddings: int = 4096, **extra) -> LlamaConfig:
    heads = 2
    return LlamaConfig(
        hidden_size=head_dim * heads,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=head_dim,
        max_position_embeddings=max_position_embeddings,
        rope_parameters=dict(rope_parameters),
        **extra,
    )


def hf_frequencies(config, seq_len=None) -> tuple[torch.Tensor, float]:
    """transformers' (inv_freq, attention_factor) for the config's rope type."""
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        # transformers' default init ignores partial rotation in Llama; use the linear init at factor 1,
        # which is the same formula with partial rotation honoured.
        params = dict(config.rope_parameters, rope_type="linear", factor=1.0)
        config = llama_config(config.head_dim, params, config.max_position_embeddings)
        rope_type = "linear"
    return ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len)
