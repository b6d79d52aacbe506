"""Each encoding's defining property, through the one interface."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ropelab import RopeConfig
from ropelab.encodings import (
    ENCODINGS,
    EncodingError,
    PositionEncoding,
    alibi_slopes,
    build_encoding,
    sinusoidal_table,
    t5_causal_bucket,
    xpos_zeta,
)


def test_sinusoidal_values_at_given_positions():
    table = sinusoidal_table(torch.tensor([0, 1, 7]), dim=4)
    # dim 4: frequencies 1 and 10000^(-1/2) = 0.01 (Vaswani et al. 2017, sec. 3.5)
    expected = torch.tensor(
        [
            [0.0, 1.0, 0.0, 1.0],
            [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
            [math.sin(7), math.cos(7), math.sin(0.07), math.cos(0.07)],
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-15)


def test_sinusoidal_encoding_matches_vaswani():
    pe = sinusoidal_table(torch.tensor([3]), 8)[0]
    assert pe[0] == pytest.approx(math.sin(3.0)) and pe[1] == pytest.approx(math.cos(3.0))
    assert pe[2] == pytest.approx(math.sin(3.0 / 10000 ** (2 / 8)))


def test_sinusoidal_embed_adds_table_to_scaled_tokens():
    enc = build_encoding("sinusoidal", dim=8, num_heads=2, max_positions=16)
    x = torch.randn(2, 5, 8)
    out = enc.embed(x, torch.arange(5))
    torch.testing.assert_close(out, x * math.sqrt(8) + sinusoidal_table(torch.arange(5), 8).float())


def test_alibi_slopes_for_8_heads():
    # Press et al. 2022, sec. 3: 1/2, 1/4, ..., 1/256
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-h for h in range(1, 9)], dtype=torch.float64))


def test_alibi_slopes_for_12_heads_not_a_power_of_two():
    expected = [2.0**-h for h in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected, dtype=torch.float64))


def test_alibi_bias_is_minus_slope_times_distance():
    enc = build_encoding("alibi", dim=16, num_heads=2, max_positions=8)
    bias = enc.score_bias(torch.arange(4), torch.arange(4))
    assert bias.shape == (2, 4, 4)
    assert bias[0, 3, 0].item() == pytest.approx(-3 * 2.0**-4)  # 2 heads: slopes 2^-4, 2^-8
    assert bias[1, 2, 1].item() == pytest.approx(-1 * 2.0**-8)
    assert torch.all(bias[:, torch.arange(4), torch.arange(4)] == 0)


def test_t5_bucket_boundaries():
    distances = torch.tensor([0, 1, 15, 16, 18, 19, 112, 113, 127, 128, 10**6, -5])
    buckets = t5_causal_bucket(distances, num_buckets=32, max_distance=128)
    # 16 exact buckets, then 16 log-spaced from 16 to 128: bucket 17 starts at ceil(16 * 8^(1/16)) = 19,
    # bucket 31 at ceil(16 * 8^(15/16)) = 113; the future (-5) shares bucket 0.
    assert buckets.tolist() == [0, 1, 15, 16, 16, 17, 30, 31, 31, 31, 31, 0]


def test_t5_buckets_match_transformers_unidirectional():
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    relative = -torch.arange(0, 3000)  # memory - query for keys in the past
    reference = t5.T5Attention._relative_position_bucket(
        relative, bidirectional=False, num_buckets=32, max_distance=128
    )
    assert torch.equal(t5_causal_bucket(torch.arange(0, 3000)), reference)


def _scores(enc: PositionEncoding, q, k, pos_q, pos_k):
    """Score of one query at pos_q with one key at pos_k through transform_qk ([1, H, 1, D] each)."""
    positions = torch.tensor([pos_q, pos_k])
    qq, kk = enc.transform_qk(torch.stack((q, q), 2), torch.stack((k, k), 2), positions)
    return (qq[:, :, 0] * kk[:, :, 1]).sum(-1)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 10**6), n=st.integers(0, 10**6), shift=st.integers(0, 10**6))
def test_rope_scores_are_shift_invariant(m, n, shift):
    enc = build_encoding("rope", dim=32, num_heads=2, max_positions=64)
    generator = torch.Generator().manual_seed(0)
    q, k = (
        torch.randn(1, 2, 16, generator=generator, dtype=torch.float64),
        torch.randn(1, 2, 16, generator=generator, dtype=torch.float64),
    )
    torch.testing.assert_close(_scores(enc, q, k, m, n), _scores(enc, q, k, m + shift, n + shift), rtol=1e-9, atol=1e-9)


def test_xpos_scale_is_zeta_to_the_distance_over_scale_base():
    cfg = RopeConfig(head_dim=8)
    xpos = build_encoding("xpos", dim=8, num_heads=1, max_positions=64, rope=cfg)
    rope = build_encoding("rope", dim=8, num_heads=1, max_positions=64, rope=cfg)
    zeta = xpos_zeta(4)  # (i/4 + 0.4) / 1.4 (Sun et al. 2022, eq. 9)
    torch.testing.assert_close(zeta, torch.tensor([0.4 / 1.4, 0.65 / 1.4, 0.9 / 1.4, 1.15 / 1.4], dtype=torch.float64))
    for pair in range(4):
        q = torch.zeros(1, 1, 8, dtype=torch.float64)
        q[..., pair] = 1.0
        q[..., pair + 4] = 0.5  # half layout: pair i is channels (i, i + 4)
        k = q.clone()
        for n, m in [(300, 100), (40, 40), (1000, 0)]:
            ratio = _scores(xpos, q, k, n, m) / _scores(rope, q, k, n, m)
            assert ratio.item() == pytest.approx(zeta[pair].item() ** ((n - m) / 512), rel=1e-6)


def test_learned_raises_past_its_table_unless_clamped():
    enc = build_encoding("learned", dim=8, num_heads=2, max_positions=16)
    x = torch.zeros(1, 20, 8)
    with pytest.raises(EncodingError, match="max_positions=16"):
        enc.embed(x, torch.arange(20))
    enc.clamp = True
    out = enc.embed(x, torch.arange(20))
    torch.testing.assert_close(out[0, 19], enc.table.weight[15])


def test_nope_is_identity_everywhere():
    enc = build_encoding("nope", dim=8, num_heads=2, max_positions=16)
    x, q = torch.randn(1, 3, 8), torch.randn(1, 2, 3, 4)
    assert enc.embed(x, torch.arange(3)) is x
    assert enc.transform_qk(q, q, torch.arange(3))[0] is q
    assert enc.score_bias(torch.arange(3), torch.arange(3)) is None


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_encoding_keeps_shapes_with_batched_positions(name):
    enc = build_encoding(name, dim=16, num_heads=2, max_positions=32)
    positions = torch.arange(5).repeat(3, 1) + torch.tensor([[0], [2], [7]])
    x, q = torch.randn(3, 5, 16), torch.randn(3, 2, 5, 8)
    assert enc.embed(x, positions).shape == x.shape
    qq, kk = enc.transform_qk(q, q, positions)
    assert qq.shape == kk.shape == q.shape
    bias = enc.score_bias(positions, positions)
    assert bias is None or bias.shape == (3, 2, 5, 5)


def test_unknown_encoding_names_the_accepted_values():
    with pytest.raises(EncodingError, match="encoding='fancy' is unknown: expected one of sinusoidal"):
        build_encoding("fancy", dim=8, num_heads=2, max_positions=8)


def test_unknown_option_names_the_option_and_the_accepted_ones():
    with pytest.raises(
        EncodingError, match="option clmap=True is unknown for encoding='learned': expected one of clamp"
    ):
        build_encoding("learned", dim=8, num_heads=2, max_positions=8, clmap=True)
    with pytest.raises(EncodingError, match="option rope=None is unknown for encoding='alibi': expected no options"):
        build_encoding("alibi", dim=8, num_heads=2, max_positions=8, rope=None)
