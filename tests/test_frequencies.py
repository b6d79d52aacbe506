"""Frequency goldens: every rope type against transformers' own functions, over a grid of configs."""

import itertools
import math

import pytest
import torch
from hf_reference import hf_frequencies, llama_config

from ropelab import RopeConfig, rope_frequencies

HEAD_DIMS = (64, 80, 128)  # 80: a head width that is not a power of two
PARTIALS = (1.0, 0.5)
BASES = (10000.0, 500000.0)
FACTORS = (2.0, 8.0)

SCALED = {
    "linear": lambda f: {"factor": f},
    "dynamic": lambda f: {"factor": f},
    "yarn": lambda f: {"factor": f, "original_max_position_embeddings": 4096},
    "yarn-deepseek": lambda f: {
        "factor": f,
        "original_max_position_embeddings": 4096,
        "mscale": 1.0,
        "mscale_all_dim": 0.707,
        "beta_fast": 32,
        "beta_slow": 1,
    },
    "yarn-untruncated": lambda f: {
        "factor": f,
        "original_max_position_embeddings": 2048,
        "truncate": False,
        "beta_fast": 16,
        "beta_slow": 2,
    },
    "yarn-attention": lambda f: {"factor": f, "original_max_position_embeddings": 4096, "attention_factor": 0.9},
    "llama3": lambda f: {
        "factor": f,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 2048,
    },
}


def _assert_close(ours, reference):
    inv_freq, attention = ours
    ref_inv_freq, ref_attention = reference
    assert inv_freq.dtype == torch.float64
    assert inv_freq.shape == ref_inv_freq.shape
    rel = ((inv_freq - ref_inv_freq.double()).abs() / ref_inv_freq.double().abs()).max().item()
    assert rel <= 1e-5, rel
    assert attention == pytest.approx(float(ref_attention), rel=1e-6)


@pytest.mark.parametrize("head_dim,partial,base", list(itertools.product(HEAD_DIMS, PARTIALS, BASES)))
def test_default_matches_transformers(head_dim, partial, base):
    params = {"rope_type": "default", "rope_theta": base, "partial_rotary_factor": partial}
    config = llama_config(head_dim, params)
    _assert_close(rope_frequencies(RopeConfig.from_hf(config)), hf_frequencies(config))


@pytest.mark.parametrize(
    "variant,head_dim,partial,base,factor", list(itertools.product(SCALED, HEAD_DIMS, PARTIALS, BASES, FACTORS))
)
def test_scaled_types_match_transformers(variant, head_dim, partial, base, factor):
    rope_type = variant.split("-")[0]
    params = {"rope_type": rope_type, "rope_theta": base, "partial_rotary_factor": partial, **SCALED[variant](factor)}
    config = llama_config(head_dim, params)
    cfg = RopeConfig.from_hf(config)
    assert cfg.rope_type == rope_type
    for seq_len in (None, 100, 4096, 4097, 3 * 4096 + 5):
        _assert_close(rope_frequencies(cfg, seq_len), hf_frequencies(config, seq_len))


@pytest.mark.parametrize("head_dim,partial", list(itertools.product(HEAD_DIMS, PARTIALS)))
def test_longrope_matches_transformers_both_sides_of_original_length(head_dim, partial):
    pairs = int(head_dim * partial) // 2
    gen = torch.Generator().manual_seed(head_dim)
    short = (1 + torch.rand(pairs, generator=gen)).tolist()
    long = (1 + 30 * torch.rand(pairs, generator=gen)).sort().values.tolist()
    params = {
        "rope_type": "longrope",
        "rope_theta": 10000.0,
        "partial_rotary_factor": partial,
        "short_factor": short,
        "long_factor": long,
        "original_max_position_embeddings": 4096,
    }
    config = llama_config(head_dim, params, max_position_embeddings=131072)
    cfg = RopeConfig.from_hf(config)
    assert cfg.factor == 32.0  # inferred from the two lengths, as transformers does
    for seq_len in (None, 10, 4096, 4097, 100000):
        _assert_close(rope_frequencies(cfg, seq_len), hf_frequencies(config, seq_len))
    # The switch is on the current length, also when it arrives as a tensor (compiled graphs).
    above = rope_frequencies(cfg, torch.tensor(4097))[0]
    assert torch.equal(above, rope_frequencies(cfg, 4097)[0])
    assert not torch.equal(above, rope_frequencies(cfg, 4096)[0])


def test_dynamic_accepts_tensor_seq_len():
    cfg = RopeConfig(head_dim=64, rope_type="dynamic", factor=4.0, max_position_embeddings=128)
    for length in (5, 128, 129, 1000):
        assert torch.allclose(rope_frequencies(cfg, torch.tensor(length))[0], rope_frequencies(cfg, length)[0])
    # At or below the trained length, dynamic NTK is the default RoPE.
    assert torch.equal(rope_frequencies(cfg, 100)[0], rope_frequencies(RopeConfig(head_dim=64))[0])


def test_ntk_stretches_lowest_frequency_by_factor():
    """NTK-aware scaling: base' = base * s**(d/(d-2)) gives theta_last' = theta_last / s exactly,
    and equals the default RoPE at that base (the transformers reference for a plain base)."""
    cfg = RopeConfig(head_dim=128, rope_type="ntk", factor=4.0)
    inv_freq, attention = rope_frequencies(cfg)
    default = rope_frequencies(RopeConfig(head_dim=128))[0]
    assert attention == 1.0
    assert inv_freq[0] == default[0]
    assert inv_freq[-1].item() == pytest.approx(default[-1].item() / 4.0, rel=1e-12)
    new_base = 10000.0 * 4.0 ** (128 / 126)
    config = llama_config(128, {"rope_type": "default", "rope_theta": new_base})
    _assert_close((inv_freq, attention), hf_frequencies(config))


def test_linear_is_position_interpolation():
    cfg = RopeConfig(head_dim=64, rope_type="linear", factor=4.0)
    angles_scaled = 400 * rope_frequencies(cfg)[0]
    angles_default = 100 * rope_frequencies(RopeConfig(head_dim=64))[0]
    assert torch.allclose(angles_scaled, angles_default, rtol=1e-14)


def test_frequencies_are_float64_and_exact():
    inv_freq, _ = rope_frequencies(RopeConfig(head_dim=128, base=500000.0))
    exact = [500000.0 ** (-2 * i / 128) for i in range(64)]
    assert max(abs(a - b) / b for a, b in zip(inv_freq.tolist(), exact)) < 1e-15
    assert not math.isclose(inv_freq[1].item(), float(torch.tensor(exact[1], dtype=torch.float32)), rel_tol=1e-12)
