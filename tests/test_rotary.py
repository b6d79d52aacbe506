"""Rotation: exact against float64 and transformers, any positions, partial rotation, autograd, compile."""

import math

import pytest
import torch
from hf_reference import llama_config
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

import ropelab
from ropelab import RopeConfig, RotaryEmbedding, apply_rotary, rope_cos_sin, rotate, rotate_qk
from ropelab.reference import apply_rotary_reference


def reference_rotate(x, positions, cfg, layout):
    """float64 RoPE through the library's reference rotation (RoFormer eq. 34); dynamic types see max(position) + 1."""
    inv_freq, attention = ropelab.rope_frequencies(cfg, int(positions.max()) + 1)
    angles = positions.double()[..., None] * inv_freq  # [*P, R/2]
    if positions.dim() == 2:
        angles = angles[:, None]
    return apply_rotary_reference(x.double(), torch.cos(angles) * attention, torch.sin(angles) * attention, layout)


CONFIGS = [
    RopeConfig(head_dim=64),
    RopeConfig(head_dim=64, rotary_dim=16, base=500000.0),
    RopeConfig(head_dim=80, rotary_dim=48, rope_type="yarn", factor=4.0, original_max_position_embeddings=32),
    RopeConfig(head_dim=32, rope_type="dynamic", factor=2.0, max_position_embeddings=8),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.rope_type}-{c.head_dim}-{c.rotary_dim}")
@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize(
    "dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-6), (torch.bfloat16, 2e-2), (torch.float16, 2e-3)]
)
def test_matches_float64_reference(cfg, layout, dtype, tol):
    x = torch.randn(2, 3, 11, cfg.head_dim).to(dtype)
    positions = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]])
    out = rotate(x, positions, cfg, layout=layout)
    assert out.dtype == dtype and out.shape == x.shape
    expected = reference_rotate(x, positions, cfg, layout)
    # One rounding of the exact result into the output dtype is all the error allowed.
    error = ((out.double() - expected).abs() / expected.abs().clamp(min=1)).max().item()
    assert error <= tol
    # Partial rotation: the pass-through channels are bit-identical.
    assert torch.equal(out[..., cfg.rotary_dim :], x[..., cfg.rotary_dim :])


def test_matches_transformers_llama_and_gptj_application():
    config = llama_config(64, {"rope_type": "default", "rope_theta": 10000.0})
    q, k = torch.randn(2, 4, 9, 64), torch.randn(2, 2, 9, 64)
    positions = torch.arange(9)[None].expand(2, 9)
    cos, sin = LlamaRotaryEmbedding(config)(q, positions)
    hf_q, hf_k = llama_apply(q, k, cos, sin)
    our_q, our_k = rotate_qk(q, k, positions, RopeConfig.from_hf(config))
    assert torch.allclose(our_q, hf_q, atol=1e-5) and torch.allclose(our_k, hf_k, atol=1e-5)
    # GPT-J: interleaved pairs, [B, S, H, D] activations and [B, S, R/2] sin/cos.
    cos_half, sin_half = rope_cos_sin(positions, RopeConfig(head_dim=64))
    x = torch.randn(2, 9, 4, 64)
    hf = gptj_apply(x, sin_half, cos_half)
    ours = rotate(x.transpose(1, 2), positions, RopeConfig(head_dim=64), layout="interleaved").transpose(1, 2)
    assert torch.allclose(ours, hf, atol=1e-6)


def test_kv_cache_offsets_left_padding_and_packed_sequences():
    cfg = RopeConfig(head_dim=32)
    x = torch.randn(3, 2, 6, 32)
    # KV cache: each row continues from its own offset.
    offsets = torch.tensor([0, 100, 100000])
    positions = offsets[:, None] + torch.arange(6)
    out = rotate(x, positions, cfg)
    for row in range(3):
        assert torch.equal(out[row : row + 1], rotate(x[row : row + 1], positions[row], cfg))
    # Left padding: position ids start after the pads, pads get any position (0 here).
    padded = torch.tensor([[0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 1]])
    out = rotate(x, padded, cfg)
    assert torch.equal(out[0, :, 3:], rotate(x[0:1, :, 3:], torch.arange(1, 4), cfg)[0])
    # Packed sequences: positions restart at every document boundary.
    packed = torch.tensor([0, 1, 2, 0, 1, 0])
    out = rotate(x, packed, cfg)
    assert torch.equal(out[..., 3:5, :], rotate(x[..., 3:5, :], torch.arange(2), cfg))
    assert torch.equal(out[..., [0, 3, 5], :], x[..., [0, 3, 5], :])  # every restart is position 0: identity
    for dtype in (torch.int32, torch.int16, torch.uint8):
        assert torch.equal(rotate(x, packed.to(dtype), cfg), out)


def test_gqa_and_attention_factor():
    cfg = RopeConfig(head_dim=64, rope_type="yarn", factor=16.0, original_max_position_embeddings=64)
    _, attention = ropelab.rope_frequencies(cfg)
    assert attention == pytest.approx(0.1 * math.log(16.0) + 1)  # YaRN eq. 22
    q, k = torch.randn(1, 8, 5, 64), torch.randn(1, 2, 5, 64)
    q_out, k_out = rotate_qk(q, k, torch.arange(5), cfg)
    assert q_out.shape == q.shape and k_out.shape == k.shape
    # A rotation keeps norms; the attention factor scales them, as transformers scales cos and sin.
    assert torch.allclose(k_out.norm(dim=-1), attention * k.norm(dim=-1), rtol=1e-5)
    assert torch.equal(q_out, rotate(q, torch.arange(5), cfg))


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_gradcheck_and_backward_is_inverse_rotation(layout):
    cfg = RopeConfig(head_dim=12, rotary_dim=8, rope_type="yarn", factor=4.0, original_max_position_embeddings=16)
    positions = torch.tensor([[3, 4, 5, 6], [0, 1, 0, 1]])
    x = torch.randn(2, 2, 4, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rotate(t, positions, cfg, layout=layout), (x,))
    grad_out = torch.randn(2, 2, 4, 12, dtype=torch.float64)
    (grad,) = torch.autograd.grad(rotate(x, positions, cfg, layout=layout), x, grad_out)
    cos, sin = rope_cos_sin(positions, cfg, dtype=torch.float64)
    inverse = apply_rotary(grad_out, cos[:, None], -sin[:, None], layout=layout)
    assert torch.allclose(grad, inverse, atol=1e-14)


def _scores(q, k, m, n, cfg, rotate_fn):
    """q . k after rotating q at positions m and k at positions n: [pairs]."""
    q_rot = rotate_fn(q[None, None], m, cfg)[0, 0]
    k_rot = rotate_fn(k[None, None], n, cfg)[0, 0]
    return (q_rot.double() * k_rot.double()).sum(-1)


def _hf_llama_rotate(x, positions, cfg):
    config = llama_config(cfg.head_dim, {"rope_type": "default", "rope_theta": cfg.base})
    cos, sin = LlamaRotaryEmbedding(config)(x, positions[None])
    return llama_apply(x, x, cos, sin)[0]


def test_relative_position_property_holds_to_ten_million():
    """score(m + D, n + D) == score(m, n) for RoPE; ropelab keeps it to 1e-5 up to D = 1e7."""
    cfg = RopeConfig(head_dim=128, base=500000.0)
    q, k = torch.randn(64, 128), torch.randn(64, 128)
    m, n = torch.randint(0, 4096, (64,)), torch.randint(0, 4096, (64,))
    reference = _scores(q.double(), k.double(), m, n, cfg, rotate)  # float64 at the unshifted positions
    ours_worst, hf_drift = 0.0, None
    for shift in (0, 10**3, 10**5, 10**6, 10**7):
        ours = _scores(q, k, m + shift, n + shift, cfg, rotate)
        ours_worst = max(ours_worst, ((ours - reference).norm() / reference.norm()).item())
        if shift == 10**6:
            hf = _scores(q, k, m + shift, n + shift, cfg, _hf_llama_rotate)
            hf_drift = ((hf - reference).norm() / reference.norm()).item()
    assert ours_worst <= 1e-5, ours_worst
    # transformers forms position * inv_freq in float32: percent-level drift at D = 1e6.
    assert hf_drift > 100 * ours_worst and hf_drift > 1e-3, (hf_drift, ours_worst)


def test_bad_inputs_raise_clear_errors():
    cfg = RopeConfig(head_dim=16)
    x = torch.randn(1, 1, 4, 16)
    with pytest.raises(TypeError, match="positions.dtype"):
        rotate(x, torch.arange(4.0), cfg)
    with pytest.raises(ValueError, match="positions.shape"):
        rotate(x, torch.arange(5), cfg)
    with pytest.raises(ValueError, match="head_dim=16"):
        rotate(torch.randn(1, 1, 4, 8), torch.arange(4), cfg)
    with pytest.raises(ValueError, match="layout"):
        rotate(x, torch.arange(4), cfg, layout="zigzag")


def test_module_under_compile_fullgraph_with_dynamic_lengths():
    torch._dynamo.reset()
    cfg = RopeConfig(head_dim=32, rotary_dim=24, rope_type="dynamic", factor=4.0, max_position_embeddings=16)
    rope = RotaryEmbedding(cfg)
    compiled = torch.compile(rope, fullgraph=True, dynamic=True)
    for length in (8, 16, 40, 100):  # below, at and above the trained length: different frequencies
        q, k = torch.randn(2, 4, length, 32), torch.randn(2, 2, length, 32)
        positions = torch.arange(length)
        got_q, got_k = compiled(q, k, positions)
        want_q, want_k = rope(q, k, positions)
        assert torch.allclose(got_q, want_q, atol=1e-5) and torch.allclose(got_k, want_k, atol=1e-5)
        assert torch.equal(got_q[..., 24:], q[..., 24:])
    # Nothing mutated: the module has no buffers or state to change.
    assert list(rope.buffers()) == [] and rope.cfg == cfg


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.integers(1, 12),
    extra=st.integers(0, 6),
    layout=st.sampled_from(["half", "interleaved"]),
    start=st.integers(0, 10**8),
    base=st.floats(2.0, 1e7),
)
def test_rotation_is_orthogonal_and_relative(pairs, extra, layout, start, base):
    """Property: rotation keeps norms, its inverse undoes it, and scores depend on m - n only.

    float64 angles carry ~|angle| * 2**-53 of rounding: ~1e-8 rad at position 1e8, hence the
    tolerance on scores (the exactness contract is about million-token positions, not 2**40).
    """
    cfg = RopeConfig(head_dim=2 * pairs + extra, rotary_dim=2 * pairs, base=base)
    x = torch.randn(1, 2, 3, cfg.head_dim, dtype=torch.float64)
    positions = start + torch.arange(3)
    out = rotate(x, positions, cfg, layout=layout)
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), rtol=1e-12)
    cos, sin = rope_cos_sin(positions, cfg, dtype=torch.float64)
    assert torch.allclose(apply_rotary(out, cos, -sin, layout=layout), x, atol=1e-12)
    shifted = rotate(x, positions - start, cfg, layout=layout)
    assert torch.allclose(out @ out.transpose(-1, -2), shifted @ shifted.transpose(-1, -2), atol=1e-7)
