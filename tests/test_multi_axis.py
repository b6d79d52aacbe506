"""Multi-axis RoPE: M-RoPE (Qwen2-VL and its relatives) and 2D axial RoPE for image patches.

Pair ``i`` turns by ``positions[pair_axes[i]] * inv_freq[i]``. Checked against a float64 loop,
against transformers' own rotary modules (text towers with three position rows, vision towers
with (row, column) patch positions), and through whole patched transformers models whose three
position rows differ, so that a wrong section mapping would show.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import transformers

from ropelab import RopeConfig, preset, rope_cos_sin, rope_frequencies, rotate, rotate_qk
from ropelab.cache import bypass
from ropelab.errors import EncodingError, PatchError, RopeConfigError
from ropelab.explain.cards import axes_rows, card_summary, compare_rows, summary_rows, verdict
from ropelab.integrations.hf import HFRotaryAdapter, patch, unpatch
from ropelab.reference import apply_rotary_reference, pairs_to_channels
from ropelab.rotary import rope_angles

CONTIGUOUS = RopeConfig(head_dim=16, mrope_section=(2, 3, 3))
INTERLEAVED = RopeConfig(head_dim=16, mrope_section=(4, 2, 2), mrope_composition="interleaved")
SPATIAL = RopeConfig(head_dim=16, mrope_section=(3, 3, 2), mrope_composition="spatial_interleaved")
AXIAL = RopeConfig(head_dim=16, rope_type="axial")
AXIAL_ALTERNATING = RopeConfig(head_dim=16, rope_type="axial", axial_frequencies="alternating")
ROW_COLUMN = RopeConfig(head_dim=16, mrope_section=(4, 4), mrope_composition="interleaved")  # NeoMME's two axes
MULTI = [CONTIGUOUS, INTERLEAVED, SPATIAL, AXIAL, AXIAL_ALTERNATING, ROW_COLUMN]
IDS = ["contiguous", "interleaved", "spatial", "axial", "axial-alternating", "row-column"]


def _rows(cfg: RopeConfig, seq: int, batch: int | None = None, offset: int = 0) -> torch.Tensor:
    """Positions with a different value on every row: ``[A, S]`` or ``[A, B, S]``."""
    steps = torch.arange(seq)
    rows = torch.stack([(steps * (2 * a + 1) + 3 * a + offset) % (seq + 5 * a) for a in range(cfg.num_axes)])
    if batch is None:
        return rows
    return torch.stack([rows + 7 * b for b in range(batch)], dim=1)


def _angles_loop(positions: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    """float64 ``positions[pair_axes[i]] * inv_freq[i]``, one pair at a time."""
    inv_freq, _ = rope_frequencies(cfg)
    columns = [positions[axis].double() * inv_freq[i] for i, axis in enumerate(cfg.pair_axes)]
    return torch.stack(columns, dim=-1)


# ----------------------------------------------------------------------------- config
def test_pair_axes_of_each_composition():
    assert CONTIGUOUS.pair_axes == (0, 0, 1, 1, 1, 2, 2, 2)
    # transformers' Qwen3-VL rule: h where i % 3 == 1 and i < 3h, w where i % 3 == 2 and i < 3w, t elsewhere
    assert INTERLEAVED.pair_axes == (0, 1, 2, 0, 1, 2, 0, 0)
    # Ernie 4.5-VL: sections (h, w, t), h and w alternate first
    assert SPATIAL.pair_axes == (1, 2, 1, 2, 1, 2, 0, 0)
    assert AXIAL.pair_axes == (0, 0, 0, 0, 1, 1, 1, 1)
    # two sections (row, column), interleaved: row0-col0-row1-col1 (NeoMMERotaryEmbedding)
    assert ROW_COLUMN.pair_axes == (0, 1, 0, 1, 0, 1, 0, 1)
    assert ROW_COLUMN.replace(mrope_composition="contiguous").pair_axes == (0, 0, 0, 0, 1, 1, 1, 1)
    assert RopeConfig(head_dim=16).pair_axes == (0,) * 8
    assert [cfg.num_axes for cfg in MULTI] == [3, 3, 3, 2, 2, 2] and RopeConfig(head_dim=16).num_axes == 1


def test_qwen3_vl_sections_give_each_row_its_share():
    cfg = RopeConfig(head_dim=128, mrope_section=(24, 20, 20), mrope_composition="interleaved")
    assert [cfg.pair_axes.count(axis) for axis in range(3)] == [24, 20, 20]
    assert cfg.pair_axes[:6] == (0, 1, 2, 0, 1, 2) and cfg.pair_axes[60:] == (0, 0, 0, 0)


def test_axial_frequencies_in_pair_order():
    ladder16, ladder8 = (
        10000.0 ** (-torch.arange(0, 16, 2).double() / 16),
        10000.0 ** (-torch.arange(0, 8, 2).double() / 8),
    )
    assert torch.equal(rope_frequencies(AXIAL)[0], torch.cat([ladder8, ladder8]))  # Qwen2-VL: base^(-2k/(R/2)) per axis
    assert torch.equal(rope_frequencies(AXIAL_ALTERNATING)[0], torch.cat([ladder16[0::2], ladder16[1::2]]))  # Pixtral
    assert torch.equal(rope_frequencies(CONTIGUOUS)[0], rope_frequencies(RopeConfig(head_dim=16))[0])


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"head_dim": 16, "mrope_section": (2, 2, 2)}, "mrope_section"),  # sums to 6, not 8
        ({"head_dim": 16, "mrope_section": (4, 5, -1)}, "mrope_section"),
        ({"head_dim": 16, "mrope_section": (2, 2, 2, 2)}, "mrope_section"),  # two or three axes
        ({"head_dim": 16, "mrope_section": (8,)}, "mrope_section"),
        ({"head_dim": 16, "mrope_section": (4, 4), "mrope_composition": "spatial_interleaved"}, "mrope_section"),
        ({"head_dim": 16, "mrope_section": (2.0, 3, 3)}, "mrope_section"),
        ({"head_dim": 16, "rotary_dim": 8, "mrope_section": (2, 3, 3)}, "mrope_section"),  # partial: 4 pairs
        ({"head_dim": 16, "mrope_section": (2, 3, 3), "mrope_composition": "zigzag"}, "mrope_composition"),
        ({"head_dim": 16, "mrope_section": (4, 2, 2), "mrope_composition": "spatial_interleaved"}, "mrope_section"),
        ({"head_dim": 16, "mrope_composition": "interleaved"}, "mrope_composition"),
        ({"head_dim": 12, "rotary_dim": 10, "rope_type": "axial"}, "rotary_dim"),  # 5 pairs: odd
        ({"head_dim": 16, "rope_type": "axial", "axial_frequencies": "shuffled"}, "axial_frequencies"),
        ({"head_dim": 16, "axial_frequencies": "repeated"}, "axial_frequencies"),
        ({"head_dim": 16, "rope_type": "axial", "mrope_section": (2, 3, 3)}, "mrope_section"),
    ],
)
def test_bad_multi_axis_config_names_the_field(kwargs, key):
    with pytest.raises(RopeConfigError, match=key):
        RopeConfig(**kwargs)


def test_sections_sum_to_the_rotated_pairs_with_partial_rotation():
    # GLM-4V rotates half of each head: transformers splits rotary_dim // 2 pairs, not head_dim // 2.
    cfg = RopeConfig(head_dim=16, rotary_dim=8, mrope_section=(1, 1, 2))
    assert cfg.pair_axes == (0, 1, 2, 2)
    with pytest.raises(RopeConfigError, match=r"rotary_dim // 2 = 4"):
        RopeConfig(head_dim=16, rotary_dim=8, mrope_section=(2, 3, 3))


@pytest.mark.parametrize("cfg", MULTI, ids=IDS)
def test_round_trip_through_to_hf(cfg):
    assert RopeConfig.from_hf(cfg.to_hf()) == cfg


def test_from_hf_reads_published_and_transformers_spellings():
    published = {  # Qwen2-VL / Qwen2.5-VL config.json form
        "model_type": "qwen2_5_vl",
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 128000,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    }
    cfg = RopeConfig.from_hf(published)
    assert (cfg.rope_type, cfg.mrope_section, cfg.mrope_composition) == ("default", (16, 24, 24), "contiguous")
    assert cfg == preset("qwen2.5-vl-7b-instruct")
    qwen3 = {
        "head_dim": 128,
        "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True},
    }
    assert RopeConfig.from_hf(qwen3).mrope_composition == "interleaved"
    omni = {"head_dim": 128, "rope_parameters": {"mrope_section": [24, 20, 20], "interleaved": True}}
    assert RopeConfig.from_hf(omni).mrope_composition == "interleaved"


# transformers' text rotary module of each family, and the model_type its config carries.
TEXT_ROTARY = {
    "qwen2_vl": ("Qwen2VLTextConfig", "Qwen2VLRotaryEmbedding"),
    "qwen3_vl": ("Qwen3VLTextConfig", "Qwen3VLTextRotaryEmbedding"),
    "glm4v": ("Glm4vTextConfig", "Glm4vTextRotaryEmbedding"),
    "ernie4_5_vl_moe": ("Ernie4_5_VLMoeTextConfig", "Ernie4_5_VLMoeTextRotaryEmbedding"),
    "qwen3_5": ("Qwen3_5TextConfig", "Qwen3_5TextRotaryEmbedding"),
}


def _family(name: str):
    return getattr(transformers.models, name)


@pytest.mark.parametrize("family", sorted(TEXT_ROTARY))
def test_from_hf_uses_the_module_defaults_when_the_config_has_no_sections(family):
    config_name, module_name = TEXT_ROTARY[family]
    # GLM-4V's published configs rotate half of each head (transformers' default config leaves that out
    # and then cannot run: 64 pairs against sections summing to 32).
    kwargs = {"rope_parameters": {"rope_type": "default", "partial_rotary_factor": 0.5}} if family == "glm4v" else {}
    config = getattr(_family(family), config_name)(**kwargs)
    module = getattr(getattr(_family(family), f"modeling_{family}"), module_name)(config)
    assert "mrope_section" not in config.rope_parameters
    assert RopeConfig.from_hf(config).mrope_section == tuple(module.mrope_section)


def test_from_hf_reads_the_text_tower_of_a_multimodal_config():
    config = transformers.Qwen2VLConfig()
    assert RopeConfig.from_hf(config) == RopeConfig.from_hf(config.text_config)
    assert RopeConfig.from_hf(config).num_axes == 3


def test_hunyuan_vl_is_refused_with_the_reason():
    config = transformers.models.hunyuan_vl.HunYuanVLTextConfig(
        hidden_size=64,
        num_attention_heads=4,
        head_dim=16,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]},
    )
    with pytest.raises(RopeConfigError, match="mrope_section.*two channels of a pair"):
        RopeConfig.from_hf(config)


# ----------------------------------------------------------------------------- exact angles and tables
@pytest.mark.parametrize("cfg", MULTI, ids=IDS)
def test_angles_equal_the_float64_loop_at_large_positions(cfg):
    positions = _rows(cfg, 9, batch=2) * 100_003 + 10**9  # beyond float32's exact integers
    inv_freq, _ = rope_frequencies(cfg)
    assert torch.equal(rope_angles(positions, inv_freq, cfg.pair_axes), _angles_loop(positions, cfg))
    cos, sin = rope_cos_sin(positions, cfg, dtype=torch.float64)
    assert torch.equal(cos, torch.cos(_angles_loop(positions, cfg)))
    assert torch.equal(sin, torch.sin(_angles_loop(positions, cfg)))


@pytest.mark.parametrize("cfg", MULTI, ids=IDS)
def test_cached_tables_are_bitwise_the_uncached_ones(cfg):
    positions = _rows(cfg, 6, batch=2)
    with bypass():
        want = rope_cos_sin(positions, cfg)
        x = torch.randn(2, 3, 6, 16)
        want_x = rotate(x, positions, cfg)
        want_decode = rotate(x[:, :, :1], torch.full((cfg.num_axes, 2, 1), 40), cfg)
    for _ in range(2):  # the second call reads the cache and the per-thread memo
        got = rope_cos_sin(positions, cfg)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert torch.equal(rotate(x, positions, cfg), want_x)
        assert torch.equal(rotate(x[:, :, :1], torch.full((cfg.num_axes, 2, 1), 40), cfg), want_decode)


def test_the_cache_keeps_compositions_apart():
    # Same sections, same frequencies, same positions: only the axes differ, and so must the tables.
    positions = _rows(CONTIGUOUS, 8)
    interleaved = CONTIGUOUS.replace(mrope_section=(4, 2, 2), mrope_composition="interleaved")
    contiguous = CONTIGUOUS.replace(mrope_section=(4, 2, 2))
    first, second = rope_cos_sin(positions, contiguous)[0], rope_cos_sin(positions, interleaved)[0]
    with bypass():
        assert torch.equal(first, rope_cos_sin(positions, contiguous)[0])
        assert torch.equal(second, rope_cos_sin(positions, interleaved)[0])
    assert not torch.equal(first, second)


@pytest.mark.parametrize("cfg", MULTI, ids=IDS)
def test_rotate_matches_the_float64_reference(cfg):
    positions = _rows(cfg, 7, batch=2)
    x = torch.randn(2, 3, 7, 16, dtype=torch.float64)
    angles = _angles_loop(positions, cfg)
    want = apply_rotary_reference(x, torch.cos(angles)[:, None], torch.sin(angles)[:, None], cfg.layout)
    torch.testing.assert_close(rotate(x, positions, cfg), want, rtol=0, atol=1e-12)
    q, k = rotate_qk(x.float(), x[:, :1].float(), positions, cfg)
    torch.testing.assert_close(q.double(), want, rtol=0, atol=2e-6)
    torch.testing.assert_close(k.double(), want[:, :1], rtol=0, atol=2e-6)


@pytest.mark.parametrize("cfg", MULTI, ids=IDS)
def test_every_position_form_means_the_same(cfg):
    axes, x = cfg.num_axes, torch.randn(4, 2, 5, 16)  # batch 4: neither 2 nor 3 axes, so [B, S] is unambiguous
    per_axis = _rows(cfg, 5)  # [A, S]
    full = rotate(x, per_axis[:, None].expand(axes, 4, 5), cfg)
    assert torch.equal(rotate(x, per_axis, cfg), full)
    tokens = torch.arange(5) + 6 * torch.arange(4)[:, None]  # [B, S]: the same value on every axis
    assert torch.equal(rotate(x, tokens, cfg), rotate(x, tokens.expand(axes, 4, 5), cfg))
    assert torch.equal(rotate(x, tokens[0], cfg), rotate(x, tokens[:1].expand(axes, 4, 5), cfg))
    assert not torch.equal(full, rotate(x, per_axis[:1].expand(axes, 4, 5), cfg))  # the rows matter


def test_text_positions_make_mrope_the_one_axis_rope():
    # Qwen2-VL sec. 2.1: a text token has equal temporal, height and width ids, so M-RoPE is 1D RoPE for text.
    x, positions = torch.randn(1, 2, 9, 16), torch.arange(9)
    one_axis = rotate(x, positions, RopeConfig(head_dim=16))
    for cfg in MULTI[:3]:
        assert torch.equal(rotate(x, positions, cfg), one_axis)


@pytest.mark.parametrize(
    "positions, batch",
    [
        (torch.zeros(4, 2, 5, dtype=torch.long), 2),
        (torch.zeros(3, 2, 2, 5, dtype=torch.long), 2),
        (torch.zeros(3, 5, dtype=torch.long), 3),
        (torch.zeros((), dtype=torch.long), 2),
    ],
    ids=["wrong-leading-size", "rank-4", "ambiguous-batch", "scalar"],
)
def test_bad_positions_name_their_shape(positions, batch):
    x = torch.randn(batch, 2, 5, 16)
    with pytest.raises(EncodingError, match=r"positions\.shape"):
        rotate(x, positions, CONTIGUOUS)


def test_wrong_leading_size_fails_in_rope_cos_sin_too():
    with pytest.raises(EncodingError, match=r"positions\.shape=\(2, 1, 5\)"):
        rope_cos_sin(torch.zeros(2, 1, 5, dtype=torch.long), CONTIGUOUS)


# ----------------------------------------------------------------------------- transformers modules
def _text_rotary(family: str, sections, partial: float | None = None):
    config_name, module_name = TEXT_ROTARY[family]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(sections)}
    if partial:
        rope["partial_rotary_factor"] = partial
    extra = {"moe_intermediate_size": [32, 32]} if family == "ernie4_5_vl_moe" else {}
    config = getattr(_family(family), config_name)(hidden_size=64, num_attention_heads=4, rope_parameters=rope, **extra)
    if hasattr(config, "head_dim"):
        config.head_dim = 16
    module = getattr(getattr(_family(family), f"modeling_{family}"), module_name)(config)
    return config, module


@pytest.mark.parametrize(
    "family, sections, partial",
    [
        ("qwen2_vl", (2, 3, 3), None),
        ("qwen3_vl", (4, 2, 2), None),
        ("glm4v", (1, 1, 2), 0.5),
        ("ernie4_5_vl_moe", (3, 3, 2), None),
        ("qwen3_5", (2, 1, 1), 0.5),
    ],
)
def test_text_rotary_modules_match_ropelab_tables(family, sections, partial):
    config, module = _text_rotary(family, sections, partial)
    cfg = RopeConfig.from_hf(config)
    assert cfg.mrope_section == sections
    positions = _rows(cfg, 40, batch=2) * 11  # up to ~500: float32 angles are ~3e-5 rad off
    want_cos, want_sin = module(torch.zeros(1), positions)
    cos, sin = rope_cos_sin(positions, cfg)
    torch.testing.assert_close(pairs_to_channels(cos, cfg.layout), want_cos.float(), rtol=0, atol=1e-4)
    torch.testing.assert_close(pairs_to_channels(sin, cfg.layout), want_sin.float(), rtol=0, atol=1e-4)
    wrong = cfg.replace(mrope_composition="interleaved" if cfg.mrope_composition == "contiguous" else "contiguous")
    if family != "ernie4_5_vl_moe":  # its (h, w, t) sections do not fit another composition's order
        assert (pairs_to_channels(rope_cos_sin(positions, wrong)[0], cfg.layout) - want_cos).abs().max() > 0.1


def test_vision_rotary_modules_match_ropelab_tables():
    patches = torch.stack([torch.arange(48) // 8, torch.arange(48) % 8], dim=-1)  # [N, 2]: (row, column)
    qwen = transformers.models.qwen2_vl.Qwen2VLVisionConfig(embed_dim=64, hidden_size=32, num_heads=4)
    pixtral = transformers.PixtralVisionConfig(hidden_size=64, num_attention_heads=4)
    for config, module_class, frequencies in (
        (qwen, transformers.models.qwen2_vl.modeling_qwen2_vl.Qwen2VLVisionRotaryEmbedding, "repeated"),
        (pixtral, transformers.models.pixtral.modeling_pixtral.PixtralVisionRotaryEmbedding, "alternating"),
    ):
        cfg = RopeConfig.from_hf(config)
        assert (cfg.rope_type, cfg.head_dim, cfg.axial_frequencies) == ("axial", 16, frequencies)
        want_cos, want_sin = module_class(config)(torch.zeros(1), patches)
        cos, sin = rope_cos_sin(patches.T, cfg)
        torch.testing.assert_close(pairs_to_channels(cos, "half"), want_cos, rtol=0, atol=1e-6)
        torch.testing.assert_close(pairs_to_channels(sin, "half"), want_sin, rtol=0, atol=1e-6)
        swapped = rope_cos_sin(patches.T.flip(0), cfg)[0]
        assert (pairs_to_channels(swapped, "half") - want_cos).abs().max() > 0.1  # row and column not confused


def _neomme_rotary(**kwargs):
    from transformers.models.neomme.modeling_neomme import NeoMMERotaryEmbedding

    config = transformers.NeoMMEConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_hidden_layers=2, **kwargs
    )
    return config, NeoMMERotaryEmbedding(config)


def test_neomme_two_axis_tables_per_layer_type():
    """NeoMME: per layer type, even pairs turn by the row and odd pairs by the column (two-section
    interleaved M-RoPE), the full-attention layers over a quarter of the head; positions [2, B, S]."""
    config, module = _neomme_rotary()
    rope = RopeConfig.by_layer_type(config)
    assert {name: (cfg.rotary_dim, cfg.mrope_section) for name, cfg in rope.items()} == {
        "sliding_attention": (16, (4, 4)),
        "full_attention": (4, (1, 1)),
    }
    cfg = rope["sliding_attention"]
    positions = _rows(cfg, 40, batch=2) * 11  # rows differ; up to ~500: float32 angles are ~3e-5 rad off
    for layer_type, cfg in rope.items():
        want_cos, want_sin = module(torch.zeros(1), positions, layer_type)
        cos, sin = rope_cos_sin(positions, cfg)
        torch.testing.assert_close(pairs_to_channels(cos, "half"), want_cos, rtol=0, atol=1e-4)
        torch.testing.assert_close(pairs_to_channels(sin, "half"), want_sin, rtol=0, atol=1e-4)
        swapped = pairs_to_channels(rope_cos_sin(positions.flip(0), cfg)[0], "half")
        assert (swapped - want_cos).abs().max() > 0.1  # row and column not confused
    contiguous = rope["sliding_attention"].replace(mrope_composition="contiguous")
    wrong = pairs_to_channels(rope_cos_sin(positions, contiguous)[0], "half")
    assert (wrong - module(torch.zeros(1), positions, "sliding_attention")[0]).abs().max() > 0.1
    # [B, S] text positions: the module expands them to both axes, as ropelab does (batch 3: not read as [A, S]);
    # with equal axes the composition no longer matters, so even the contiguous reading gives its tables
    text = torch.arange(40).expand(3, 40) * 7
    torch.testing.assert_close(
        pairs_to_channels(rope_cos_sin(text, contiguous)[0], "half"),
        module(torch.zeros(1), text, "sliding_attention")[0],
        rtol=0,
        atol=1e-4,
    )


# ----------------------------------------------------------------------------- patched text towers
TINY = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    initializer_range=0.2,
)
MOE = dict(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2)
# family: (text config, text model, extra config keys, partial_rotary_factor, sections for the rotated pairs)
TEXT_TOWERS = {
    "qwen2_vl": ("Qwen2VLTextConfig", "Qwen2VLTextModel", {}, None, (2, 3, 3)),
    "qwen2_5_vl": ("Qwen2_5_VLTextConfig", "Qwen2_5_VLTextModel", {}, None, (2, 3, 3)),
    "qwen2_5_omni": ("Qwen2_5OmniTextConfig", "Qwen2_5OmniThinkerTextModel", {}, None, (2, 3, 3)),
    "paddleocr_vl": ("PaddleOCRTextConfig", "PaddleOCRTextModel", {"head_dim": 16}, None, (2, 3, 3)),
    "qwen3_vl": ("Qwen3VLTextConfig", "Qwen3VLTextModel", {"head_dim": 16}, None, (4, 2, 2)),
    "qwen3_vl_moe": ("Qwen3VLMoeTextConfig", "Qwen3VLMoeTextModel", {"head_dim": 16, **MOE}, None, (4, 2, 2)),
    "qwen3_omni_moe": ("Qwen3OmniMoeTextConfig", "Qwen3OmniMoeThinkerTextModel", MOE, None, (4, 2, 2)),
    "cosmos3_edge": ("Cosmos3EdgeTextConfig", "Cosmos3EdgeTextModel", {"head_dim": 16}, None, (4, 2, 2)),
    "qwen3_5": (
        "Qwen3_5TextConfig",
        "Qwen3_5TextModel",
        {"head_dim": 16, "layer_types": ["full_attention"] * 2},
        0.5,
        (2, 1, 1),
    ),
    "glm4v": ("Glm4vTextConfig", "Glm4vTextModel", {}, 0.5, (1, 1, 2)),
    "glm4v_moe": (
        "Glm4vMoeTextConfig",
        "Glm4vMoeTextModel",
        {
            "moe_intermediate_size": 32,
            "n_routed_experts": 4,
            "num_experts_per_tok": 2,
            "n_group": 1,
            "topk_group": 1,
            "n_shared_experts": 1,
        },
        0.5,
        (1, 1, 2),
    ),
    "glm_image": ("GlmImageTextConfig", "GlmImageTextModel", {"pad_token_id": 0, "eos_token_id": 1}, 0.5, (1, 1, 2)),
    "glm_ocr": ("GlmOcrTextConfig", "GlmOcrTextModel", {}, 0.5, (1, 1, 2)),
    "ernie4_5_vl_moe": (
        "Ernie4_5_VLMoeTextConfig",
        "Ernie4_5_VLMoeTextModel",
        {"moe_intermediate_size": [32, 32], "moe_num_experts": 4, "moe_k": 2},
        None,
        (3, 3, 2),
    ),
}


def _text_tower(family: str):
    config_name, model_name, extra, partial, sections = TEXT_TOWERS[family]
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(sections)}
    if partial:
        rope["partial_rotary_factor"] = partial
    config = getattr(_family(family), config_name)(**TINY, **extra, rope_parameters=rope)
    torch.manual_seed(0)
    model = getattr(_family(family), model_name)._from_config(config, attn_implementation="eager").eval()
    return model


def _hidden(model, ids, positions):
    with torch.no_grad():
        return model(input_ids=ids, position_ids=positions).last_hidden_state


@pytest.mark.parametrize("family", sorted(TEXT_TOWERS))
def test_patched_text_tower_reproduces_three_row_positions(family):
    model = _text_tower(family)
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    cfg = RopeConfig.from_hf(model.config)
    positions = _rows(cfg, 10, batch=2)  # [3, B, S], every row different
    want, want_text = _hidden(model, ids, positions), _hidden(model, ids, positions[0])
    assert (want - want_text).abs().max() > 1e-2  # the rows matter: M-RoPE is exercised
    patch(model)
    adapters = [m for m in model.modules() if isinstance(m, HFRotaryAdapter)]
    assert adapters and all(a.cfg.num_axes == 3 for a in adapters)
    scale = max(1.0, want.abs().max().item())
    assert (_hidden(model, ids, positions) - want).abs().max() / scale < 1e-4
    assert (_hidden(model, ids, positions[0]) - want_text).abs().max() / scale < 1e-4  # [B, S] positions
    for adapter in adapters:
        adapter.cfg = adapter.cfg.replace(base=2.0)
    assert (_hidden(model, ids, positions) - want).abs().max() / scale > 1e-3  # the adapter is what rotates


def test_patch_refuses_a_wrong_composition_at_probe_time():
    model = _text_tower("qwen2_vl")
    wrong = RopeConfig.from_hf(model.config).replace(mrope_composition="interleaved")
    with pytest.raises(PatchError, match="does not reproduce"):
        patch(model, wrong)


# HunYuan-VL's text tower is patched by a per-channel adapter: tests/test_vision_rotary.py.


# ----------------------------------------------------------------------------- patched vision towers
def _qwen2_vl_vision():
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    config = transformers.models.qwen2_vl.Qwen2VLVisionConfig(
        depth=2, embed_dim=64, hidden_size=64, num_heads=4, patch_size=2, temporal_patch_size=1, initializer_range=0.2
    )
    torch.manual_seed(0)
    model = Qwen2VisionTransformerPretrainedModel._from_config(config, attn_implementation="eager").eval()
    grid = torch.tensor([[1, 4, 6]])  # one image of 4 x 6 patches
    return model, {"hidden_states": torch.randn(24, 3 * 2 * 2), "grid_thw": grid}


def _pixtral_vision():
    config = transformers.PixtralVisionConfig(
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=16,
        patch_size=2,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = transformers.PixtralVisionModel._from_config(config, attn_implementation="eager").eval()
    return model, {"pixel_values": torch.randn(1, 3, 12, 16)}


@pytest.mark.parametrize("build", [_qwen2_vl_vision, _pixtral_vision], ids=["qwen2_vl", "pixtral"])
def test_patched_vision_tower_reproduces_the_original(build):
    model, inputs = build()
    with torch.no_grad():
        want = model(**inputs).last_hidden_state
    patch(model)
    (adapter,) = [m for m in model.modules() if isinstance(m, HFRotaryAdapter)]
    assert adapter.cfg.rope_type == "axial"
    with torch.no_grad():
        got = model(**inputs).last_hidden_state
    scale = max(1.0, want.abs().max().item())
    assert (got - want).abs().max() / scale < 1e-5
    adapter.cfg = adapter.cfg.replace(base=2.0)
    with torch.no_grad():
        assert (model(**inputs).last_hidden_state - want).abs().max() / scale > 1e-3
    unpatch(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).last_hidden_state, want)


# ----------------------------------------------------------------------------- explain
def test_explain_shows_which_pairs_read_which_axis():
    rows = dict(summary_rows(card_summary(preset("qwen2.5-vl-7b-instruct"), 32768)))
    assert "[16, 24, 24] contiguous" in rows["position axes"]
    assert rows["temporal axis"].startswith("16 pairs: 0-15; wavelengths 6.283 ..")
    assert rows["height axis"].startswith("24 pairs: 16-39")
    assert rows["width axis"].startswith("24 pairs: 40-63")
    width_longest = 2 * math.pi * 1e6 ** (126 / 128)
    assert f"{width_longest:.4g} positions" in rows["width axis"]
    assert "same position on all three" in verdict(card_summary(preset("qwen2.5-vl-7b-instruct"), 4096))


def test_explain_axes_of_interleaved_and_axial_cards():
    interleaved = dict(axes_rows(RopeConfig(head_dim=128, mrope_section=(24, 20, 20), mrope_composition="interleaved")))
    assert interleaved["temporal axis"].startswith("24 pairs: 0, 3, ..., 60 (every 3rd); 61-63")
    assert interleaved["height axis"].startswith("20 pairs: 1, 4, ..., 58 (every 3rd)")
    vision = dict(axes_rows(RopeConfig(head_dim=80, rope_type="axial")))  # Qwen2.5-VL's vision heads
    assert vision["row axis"].startswith("20 pairs: 0-19") and vision["column axis"].startswith("20 pairs: 20-39")
    assert vision["row axis"].endswith(f"wavelengths 6.283 .. {2 * math.pi * 1e4 ** (38 / 40):.4g} positions")
    assert axes_rows(RopeConfig(head_dim=16)) == []


def test_explain_names_the_row_and_column_of_two_section_mrope():
    rows = dict(axes_rows(ROW_COLUMN))
    assert rows["row axis"].startswith("4 pairs: 0, 2, ..., 6 (every 2nd)")
    assert rows["column axis"].startswith("4 pairs: 1, 3, ..., 7 (every 2nd)")
    assert "same position on both" in verdict(card_summary(ROW_COLUMN.replace(max_position_embeddings=4096), 1024))


def test_compare_marks_the_position_axes():
    cards = [card_summary(preset(name), 4096, with_base_bound=False) for name in ("qwen2-7b", "qwen2.5-vl-7b-instruct")]
    axes = {name: (values, differs) for name, values, differs in compare_rows(cards)}["position axes"]
    assert axes == (["1", "3: temporal 16, height 24, width 24 pairs (contiguous)"], True)


def test_explain_cli_reads_a_vision_config_json(tmp_path, capsys):
    from ropelab.cli import main

    path = tmp_path / "config.json"  # Qwen2-VL's vision_config: attention width in embed_dim, not hidden_size
    path.write_text(
        json.dumps(
            {
                "model_type": "qwen2_vl_vision",
                "embed_dim": 1280,
                "hidden_size": 3584,
                "num_heads": 16,
                "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},
            }
        )
    )
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert "column axis" in out and "80 / 80" in out and "row or the column of an image patch" in out


def test_multi_axis_rotation_compiles_without_graph_breaks():
    cfg = INTERLEAVED
    x, positions = torch.randn(2, 3, 5, 16), _rows(cfg, 5, batch=2)
    compiled = torch.compile(lambda x, p: rotate(x, p, cfg), fullgraph=True)
    torch.testing.assert_close(compiled(x, positions), rotate(x, positions, cfg), rtol=0, atol=1e-6)
