"""Rotary modules that transformers names otherwise than ``*RotaryEmbedding``.

- Conformer speech encoders (``Wav2Vec2ConformerRotaryPositionalEmbedding``,
  ``Wav2Vec2BertRotaryPositionalEmbedding``, ``SeamlessM4TConformerRotaryPositionalEmbedding``):
  ``forward(hidden_states)`` returns ``torch.stack([cos, sin])`` ``[2, S, 1, 1, D]``, half-split;
  replaced by :class:`HFStackedTableAdapter`.
- CLVP (``ClvpRotaryPositionalEmbedding``): ``forward(hidden_states)`` returns the angles ``[1, S, R]``
  (float32), ``R = max(projection_dim // (2 * heads), 32)``, base 10000; :class:`HFAngleTableAdapter`.
- DINOv3 ViT and Sapiens2 (``*RopePositionEmbedding``): patch centres in ``[-1, 1]``, as EoMT-DINOv3;
  :class:`HFPatchCentreAdapter`.
- V-JEPA 2: RoPE inside ``VJEPA2RopeAttention``, no module: refused with that reason.

Each is checked against its own transformers module at float32 tolerance and against float64 math,
and patched into the sweep's tiny model, whose output stays the same while its rotation moves it.
"""

from __future__ import annotations

import hf_zoo
import pytest
import torch
import transformers
from torch import nn
from transformers.models.clvp.modeling_clvp import ClvpRotaryPositionalEmbedding
from transformers.models.dinov3_vit.modeling_dinov3_vit import DINOv3ViTRopePositionEmbedding
from transformers.models.seamless_m4t.modeling_seamless_m4t import SeamlessM4TConformerRotaryPositionalEmbedding
from transformers.models.wav2vec2_bert.modeling_wav2vec2_bert import Wav2Vec2BertRotaryPositionalEmbedding
from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import (
    Wav2Vec2ConformerRotaryPositionalEmbedding,
)

from ropelab import RopeConfig
from ropelab.errors import PatchError
from ropelab.integrations.hf import (
    HFAngleTableAdapter,
    HFPatchCentreAdapter,
    HFRotaryAdapter,
    HFStackedTableAdapter,
    patch,
    rotary_output_kind,
)

transformers.logging.set_verbosity_error()

NAMED_FAMILIES = ("clvp", "dinov3_vit", "sapiens2", "seamless_m4t", "wav2vec2_bert", "wav2vec2_conformer")

# (module class, config) of each conformer family: 4 heads of 16 channels, base 1000 (not the default).
CONFORMERS = {
    "wav2vec2_conformer": (
        Wav2Vec2ConformerRotaryPositionalEmbedding,
        lambda: transformers.Wav2Vec2ConformerConfig(hidden_size=64, num_attention_heads=4, rotary_embedding_base=1000),
    ),
    "wav2vec2_bert": (
        Wav2Vec2BertRotaryPositionalEmbedding,
        lambda: transformers.Wav2Vec2BertConfig(hidden_size=64, num_attention_heads=4, rotary_embedding_base=1000),
    ),
    "seamless_m4t": (
        SeamlessM4TConformerRotaryPositionalEmbedding,
        lambda: transformers.SeamlessM4TConfig(
            hidden_size=64, speech_encoder_attention_heads=4, rotary_embedding_base=1000
        ),
    ),
}


def _holder(config, module: nn.Module) -> nn.Module:
    """A model-like container: ``config`` and the rotary module as ``embed_positions``."""
    holder = nn.Module()
    holder.config = config
    holder.embed_positions = module
    return holder


def _exact_angles(length: int, rotary_dim: int, base: float) -> torch.Tensor:
    """float64 ``[length, rotary_dim / 2]``: ``s * base ** (-2i / rotary_dim)`` (RoFormer eq. 15)."""
    inv_freq = base ** (-torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim)
    return torch.arange(length, dtype=torch.float64)[:, None] * inv_freq


# ---------------------------------------------------------------- the sweep finds them
def test_the_sweep_finds_every_named_family():
    found = set(hf_zoo.rotary_families())
    assert {*NAMED_FAMILIES, "vjepa2"} <= found
    assert {"llama", "eomt_dinov3", "sam3"} <= found  # the *RotaryEmbedding families stay


# ---------------------------------------------------------------- conformer speech encoders
@pytest.mark.parametrize("family", sorted(CONFORMERS))
def test_conformer_tables_match_the_module_and_float64(family):
    cls, make_config = CONFORMERS[family]
    original = cls(make_config())
    holder = patch(_holder(make_config(), cls(make_config())))
    adapter = holder.embed_positions
    assert isinstance(adapter, HFStackedTableAdapter) and rotary_output_kind(adapter) == "stacked"
    assert (adapter.cfg.head_dim, adapter.cfg.rotary_dim, adapter.cfg.base) == (16, 16, 1000.0)
    hidden = torch.zeros(2, 37, 64)
    got, want = adapter(hidden), original(hidden)
    assert got.shape == want.shape == (2, 37, 1, 1, 16) and got.dtype == want.dtype
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert adapter(hidden.bfloat16()).dtype == torch.bfloat16  # the table follows the hidden states
    # Far positions: the exact angles stay within float32 rounding, transformers' float32 angles do not.
    angles = _exact_angles(20_000, 16, 1000.0).repeat(1, 2)
    exact = torch.stack((angles.cos(), angles.sin()))[:, :, None, None]
    long_hidden = torch.zeros(1, 20_000, 64)
    assert (adapter(long_hidden).double() - exact).abs().max() < 1e-6
    assert (original(long_hidden).double() - exact).abs().max() > 1e-4


def test_stacked_tables_double_their_angles_in_the_sweep():
    angles = _exact_angles(9, 8, 10.0).repeat(1, 2)
    stacked = torch.stack((angles.cos(), angles.sin()))[:, :, None, None]
    doubled = hf_zoo.double_angles(stacked, "stacked")
    torch.testing.assert_close(doubled, torch.stack(((2 * angles).cos(), (2 * angles).sin()))[:, :, None, None])


def test_verification_leaves_the_original_cache_alone():
    cls, make_config = CONFORMERS["wav2vec2_bert"]
    module = cls(make_config())
    with pytest.raises(
        PatchError, match=r"embed_positions \(Wav2Vec2BertRotaryPositionalEmbedding\).*does not reproduce"
    ):
        patch(_holder(make_config(), module), RopeConfig(head_dim=16, base=2.0))
    assert module.cached_sequence_length is None and module.cached_rotary_positional_embedding is None


def test_a_named_module_under_an_unknown_model_type_is_refused_by_name():
    cls, make_config = CONFORMERS["wav2vec2_conformer"]
    holder = _holder(transformers.LlamaConfig(hidden_size=64, num_attention_heads=4), cls(make_config()))
    with pytest.raises(PatchError, match=r"model_type='llama' is not one whose sizes ropelab reads.*wav2vec2-bert"):
        patch(holder)


# ---------------------------------------------------------------- CLVP
def _clvp_config(**changes) -> transformers.ClvpEncoderConfig:
    # 2 heads of 64 channels; projection_dim 64 -> max(64 // 4, 32) = 32 rotated channels
    return transformers.ClvpEncoderConfig(
        **{"hidden_size": 128, "num_attention_heads": 2, "projection_dim": 64, **changes}
    )


def test_clvp_angles_match_the_module_and_float64():
    original = ClvpRotaryPositionalEmbedding(_clvp_config())
    adapter = patch(_holder(_clvp_config(), ClvpRotaryPositionalEmbedding(_clvp_config()))).embed_positions
    assert isinstance(adapter, HFAngleTableAdapter) and rotary_output_kind(original) == "angles"
    assert (adapter.cfg.head_dim, adapter.cfg.rotary_dim, adapter.cfg.base) == (64, 32, 1e4)  # partial rotation
    hidden = torch.zeros(1, 50, 128, dtype=torch.bfloat16)
    got, want = adapter(hidden), original(hidden)
    assert got.shape == want.shape == (1, 50, 32) and got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    exact = _exact_angles(50_000, 32, 1e4).repeat(1, 2)[None]
    got = adapter(torch.zeros(1, 50_000, 128)).double()
    assert ((got - exact).abs() <= exact.abs() * 2.0**-24).all()  # one float32 rounding of the exact angle


def test_clvp_rotating_more_than_a_head_is_refused_by_name():
    config = _clvp_config(hidden_size=32)  # 2 heads of 16, but 32 rotated channels
    with pytest.raises(PatchError, match=r"rotary_dim=32 is invalid: expected at most head_dim=16"):
        patch(_holder(config, ClvpRotaryPositionalEmbedding(config)))


def test_clvp_angles_cannot_carry_an_attention_factor():
    adapter = patch(_holder(_clvp_config(), ClvpRotaryPositionalEmbedding(_clvp_config()))).embed_positions
    adapter.cfg = RopeConfig(
        head_dim=64, rotary_dim=32, rope_type="yarn", factor=4.0, original_max_position_embeddings=64
    )
    with pytest.raises(PatchError, match=r"attention_factor=.* is invalid for HFAngleTableAdapter"):
        adapter(torch.zeros(1, 8, 128))


def test_clvp_encoders_read_their_own_config():
    """In the whole model the modules sit in the text and speech encoders, each with its own config."""
    model, _ = hf_zoo.build("clvp")
    patch(model)
    for encoder in (model.text_encoder_model, model.speech_encoder_model):
        assert isinstance(encoder.rotary_pos_emb, HFAngleTableAdapter)
        assert encoder.rotary_pos_emb.config is encoder.config


# ---------------------------------------------------------------- DINOv3 ViT, Sapiens2
def test_dinov3_vit_patch_centres_on_a_non_square_grid():
    config = transformers.DINOv3ViTConfig(hidden_size=64, num_attention_heads=4, rope_theta=100.0)
    original = DINOv3ViTRopePositionEmbedding(config).eval()  # training mode draws augmented centres
    holder = nn.Module()
    holder.rope_embeddings = DINOv3ViTRopePositionEmbedding(config)
    adapter = patch(holder.eval()).rope_embeddings
    assert isinstance(adapter, HFPatchCentreAdapter) and adapter.cfg.rope_type == "axial"
    pixels = torch.zeros(1, 3, 3 * 16, 5 * 16)  # 3 x 5 patches
    for got, want in zip(adapter(pixels), original(pixels)):
        assert got.shape == want.shape == (15, 16)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    adapter.train()  # pos_embed_rescale=2.0 by default: random in training, not reproduced
    with pytest.raises(PatchError, match="pos_embed_rescale.*model.eval"):
        adapter(pixels)


# ---------------------------------------------------------------- whole tiny models
@pytest.mark.parametrize("family", NAMED_FAMILIES)
def test_named_family_is_identical_after_patch_and_moved_by_its_rotation(family):
    model, inputs = hf_zoo.build(family)
    want = hf_zoo._run(model, inputs)
    names = hf_zoo.rotary_modules(model)
    assert names
    for name in names:  # the sweep's exercise check reaches every module, stacked outputs included
        calls, moved = hf_zoo.reach(model, inputs, want, name)
        assert calls > 0 and moved > hf_zoo.MOVED
    patch(model)
    adapters = [model.get_submodule(name) for name in names]
    assert all(isinstance(a, HFRotaryAdapter) for a in adapters)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) <= hf_zoo.TOLERANCE
    for adapter in adapters:
        adapter.cfg = adapter.cfg.replace(base=2.0)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) > hf_zoo.MOVED


def test_sapiens2_tables_cover_the_patches_not_its_register_tokens():
    model, _ = hf_zoo.build("sapiens2")
    assert model.config.num_register_tokens == 8  # prefix tokens the attention leaves unrotated
    original = model.rope_embeddings
    patch(model)
    pixels = torch.zeros(1, 3, 96, 64)  # 6 x 4 patches
    for got, want in zip(model.rope_embeddings(pixels), original(pixels)):
        assert got.shape == want.shape == (24, model.config.hidden_size // model.config.num_attention_heads)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


# ---------------------------------------------------------------- V-JEPA 2
def test_vjepa2_is_refused_as_rope_inside_attention():
    model, _ = hf_zoo.build("vjepa2")
    with pytest.raises(
        PatchError,
        match=r"VJEPA2Model: RoPE inside attention, no module to replace "
        r"\(computed within VJEPA2RopeAttention, e.g. encoder.layer.0.attention\)",
    ):
        patch(model)
    result = hf_zoo.Result(
        "vjepa2", "refused", error="PatchError: cannot patch VJEPA2Model: RoPE inside attention, no module to replace"
    )
    assert hf_zoo.cause(result) == "RoPE inside attention, no module to replace"
