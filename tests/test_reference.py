"""The reference rotation and the one channel pairing, against transformers' own formulas."""

from __future__ import annotations

import pytest
import torch
from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

from ropelab.reference import apply_rotary_reference, pair_views, pairs_to_channels


def _tables(seq: int, half: int):
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * torch.rand(half, dtype=torch.float64)
    return torch.cos(angles).float(), torch.sin(angles).float()  # [S, R/2]


def test_half_layout_is_transformers_llama():
    q, k = torch.randn(2, 3, 7, 16), torch.randn(2, 1, 7, 16)
    cos, sin = _tables(7, 8)
    hf_q, hf_k = llama_apply(q, k, pairs_to_channels(cos, "half")[None], pairs_to_channels(sin, "half")[None])
    torch.testing.assert_close(apply_rotary_reference(q, cos, sin, "half"), hf_q)
    torch.testing.assert_close(apply_rotary_reference(k, cos, sin, "half"), hf_k)


def test_interleaved_layout_is_transformers_gptj():
    x = torch.randn(2, 7, 3, 16)  # GPT-J: [B, S, H, D] activations, [B, S, R/2] tables
    cos, sin = _tables(7, 8)
    hf = gptj_apply(x, sin[None], cos[None])
    ours = apply_rotary_reference(x.transpose(1, 2), cos, sin, "interleaved").transpose(1, 2)
    torch.testing.assert_close(ours, hf)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_partial_rotation_passes_the_rest_through(layout):
    x = torch.randn(2, 5, 24).to(torch.bfloat16)
    cos, sin = _tables(5, 6)  # rotary_dim 12 of 24
    out = apply_rotary_reference(x, cos, sin, layout)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert torch.equal(out[..., 12:], x[..., 12:])


def test_pairing_is_the_same_both_ways():
    """pairs_to_channels puts pair i's value on exactly the channels pair_views reads as pair i."""
    values = torch.arange(1.0, 7.0)  # [R/2] with R = 12
    for layout, channels in (("half", [1, 2, 3, 4, 5, 6] * 2), ("interleaved", [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])):
        spread = pairs_to_channels(values, layout)
        assert spread.tolist() == channels
        a, b = pair_views(spread, 12, layout)
        assert torch.equal(a, values) and torch.equal(b, values)
