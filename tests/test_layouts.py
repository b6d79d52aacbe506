"""Layout conversion: interleaved <-> half-split weights give identical attention scores."""

import pytest
import torch

from ropelab import RopeConfig, rotate
from ropelab.layouts import (
    convert_activations,
    convert_qk_weight,
    half_to_interleaved_index,
    interleaved_to_half_index,
)


def test_index_is_a_permutation_and_the_inverse():
    forward = interleaved_to_half_index(10, 6)
    assert forward.tolist() == [0, 2, 4, 1, 3, 5, 6, 7, 8, 9]
    backward = half_to_interleaved_index(10, 6)
    assert torch.equal(forward[backward], torch.arange(10))


@pytest.mark.parametrize("head_dim,rotary_dim", [(16, 16), (24, 8), (80, 48)])
def test_weights_round_trip_and_keep_scores_with_gqa(head_dim, rotary_dim):
    hidden, q_heads, kv_heads, seq = 48, 4, 2, 7
    w_q, w_k = torch.randn(q_heads * head_dim, hidden), torch.randn(kv_heads * head_dim, hidden)
    b_q = torch.randn(q_heads * head_dim)
    for source, target in (("interleaved", "half"), ("half", "interleaved")):
        converted = convert_qk_weight(w_q, q_heads, source=source, target=target, rotary_dim=rotary_dim)
        back = convert_qk_weight(converted, q_heads, source=target, target=source, rotary_dim=rotary_dim)
        assert torch.equal(back, w_q)
        bias_back = convert_qk_weight(
            convert_qk_weight(b_q, q_heads, source=source, target=target, head_dim=head_dim, rotary_dim=rotary_dim),
            q_heads,
            source=target,
            target=source,
            head_dim=head_dim,
            rotary_dim=rotary_dim,
        )
        assert torch.equal(bias_back, b_q)

    cfg = RopeConfig(head_dim=head_dim, rotary_dim=rotary_dim)
    hidden_states = torch.randn(2, seq, hidden)
    positions = torch.arange(seq) + 5

    def scores(w_q, b_q, w_k, layout):
        q = (hidden_states @ w_q.T + b_q).view(2, seq, q_heads, head_dim).transpose(1, 2)
        k = (hidden_states @ w_k.T).view(2, seq, kv_heads, head_dim).transpose(1, 2)
        q, k = rotate(q, positions, cfg, layout=layout), rotate(k, positions, cfg, layout=layout)
        k = k.repeat_interleave(q_heads // kv_heads, dim=1)
        return q @ k.transpose(-1, -2)

    original = scores(w_q, b_q, w_k, "interleaved")
    as_half = scores(
        convert_qk_weight(w_q, q_heads, source="interleaved", target="half", rotary_dim=rotary_dim),
        convert_qk_weight(b_q, q_heads, source="interleaved", target="half", head_dim=head_dim, rotary_dim=rotary_dim),
        convert_qk_weight(w_k, kv_heads, source="interleaved", target="half", rotary_dim=rotary_dim),
        "half",
    )
    assert torch.allclose(original, as_half, atol=1e-4)
    assert not torch.allclose(original, scores(w_q, b_q, w_k, "half"), atol=1e-2)  # confusing them is wrong


def test_activations_commute_with_rotation():
    cfg = RopeConfig(head_dim=32, rotary_dim=24)
    x = torch.randn(1, 2, 5, 32)
    positions = torch.arange(5)
    rotated_then_converted = convert_activations(
        rotate(x, positions, cfg, layout="interleaved"), source="interleaved", target="half", rotary_dim=24
    )
    converted_then_rotated = rotate(
        convert_activations(x, source="interleaved", target="half", rotary_dim=24), positions, cfg, layout="half"
    )
    assert torch.allclose(rotated_then_converted, converted_then_rotated, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_heads=3"):
        convert_qk_weight(torch.randn(64, 8), 3, source="half", target="interleaved", head_dim=16)
    with pytest.raises(ValueError, match="target='meta'"):
        convert_qk_weight(torch.randn(64, 8), 4, source="half", target="meta")
    with pytest.raises(ValueError, match="rotary_dim=5"):
        interleaved_to_half_index(8, 5)
