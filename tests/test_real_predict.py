"""The predictor reads the q and k that RoPE rotates: for separate projections, a per-head norm (Qwen3),
Phi-3's fused ``qkv_proj`` and GPT-NeoX's per-head ``query_key_value``, :func:`ropelab.real.predict.gather_qk`
equals what each family's own ``apply_rotary_pos_emb`` is handed, position by position."""

from __future__ import annotations

import importlib

import pytest
import torch

pytest.importorskip("transformers")

from real_families import build_family  # noqa: E402

from ropelab.real.predict import gather_qk  # noqa: E402

FAMILIES = ["llama-3.2", "qwen3", "phi-3-mini-128k", "gpt-neox (fused qkv)"]


@pytest.mark.parametrize("family", FAMILIES)
def test_gather_qk_reads_the_q_and_k_that_rope_rotates(family, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_family(family, tmp_path), dtype=torch.float32).eval()
    modeling = importlib.import_module(type(model).__module__)
    handed = []
    rotate = modeling.apply_rotary_pos_emb

    def recording(q, k, *args, **kwargs):  # [B, H, S, Dh] each, before rotation
        handed.append((q[0].detach().clone(), k[0].detach().clone()))
        return rotate(q, k, *args, **kwargs)

    monkeypatch.setattr(modeling, "apply_rotary_pos_emb", recording)
    length = 40
    ids = torch.randint(1, model.config.vocab_size, (length,), generator=torch.Generator().manual_seed(0))
    layers = gather_qk(model, ids, queries=length, keys=length)  # every position: queries from the second half
    assert len(layers) == len(handed) == model.config.num_hidden_layers
    for (q, k), (q_rope, k_rope) in zip(layers, handed):
        assert q.shape == q_rope[:, length // 2 :].shape and k.shape == k_rope.shape
        torch.testing.assert_close(q, q_rope[:, length // 2 :], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(k, k_rope, rtol=1e-5, atol=1e-6)
    assert not torch.equal(layers[0][1], layers[0][1].flip(1))  # distinct positions, not one row repeated
