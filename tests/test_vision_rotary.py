"""Axial vision towers beyond Qwen2-VL's layout, and the rotary modules outside the generic (cos, sin) path.

- Axis order and composition as data: Step3p7 and Inkling2 put the column block first, Kimi-K2.5
  alternates column and row pair by pair, MiniMax-M3 rotates three axes (t, h, w) over a partial width.
- Complex ``freqs_cis`` (DeepSeek-V2, Llama 4's text tower; Llama 4's vision tower on a fixed grid).
- Tables that are not one rotation per pair (HunYuan-VL) or not half-split over the whole head
  (Gemma 4's vision tower, one [c, c] half per axis).

Each family is built tiny from its own transformers config and checked against its own module, at
float32 tolerance, on positions whose axes differ; the exact angles are checked against float64.
"""

from __future__ import annotations

import importlib

import pytest
import torch
import transformers

from ropelab import RopeConfig, preset, rope_cos_sin, rope_frequencies, rotate
from ropelab.errors import PatchError, RopeConfigError
from ropelab.explain.cards import axes_rows
from ropelab.integrations.hf import (
    HFChannelTableAdapter,
    HFComplexRotaryAdapter,
    HFFixedGridAdapter,
    HFRotaryAdapter,
    patch,
    unpatch,
)
from ropelab.reference import apply_rotary_reference, pairs_to_channels
from ropelab.rotary import rope_angles

STEP = RopeConfig(head_dim=16, rope_type="axial", axial_order=(1, 0))
KIMI = RopeConfig(head_dim=16, rope_type="axial", axial_order=(1, 0), axial_composition="interleaved")
MINIMAX = RopeConfig(head_dim=20, rotary_dim=18, rope_type="axial", axial_order=(0, 1, 2))
PIXTRAL_INTERLEAVED = RopeConfig(
    head_dim=16, rope_type="axial", axial_frequencies="alternating", axial_composition="interleaved"
)
NEW = [STEP, KIMI, MINIMAX, PIXTRAL_INTERLEAVED]
IDS = ["column-first", "interleaved", "three-axes-partial", "alternating-interleaved"]
TINY = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, initializer_range=0.2)


def _columns(num_axes: int, count: int) -> torch.Tensor:
    """``[N, A]`` patch positions, axis last as the towers pass them, every column a different shuffle."""
    steps = torch.arange(count)
    return torch.stack([(steps * (2 * a + 1) + 3 * a) % (count + 5 * a) for a in range(num_axes)], dim=-1)


def _angles_loop(positions: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    inv_freq, _ = rope_frequencies(cfg)
    return torch.stack([positions[axis].double() * inv_freq[i] for i, axis in enumerate(cfg.pair_axes)], dim=-1)


# ----------------------------------------------------------------------------- config
def test_pair_axes_and_frequencies_of_each_order():
    ladder = 10000.0 ** (-torch.arange(0, 8, 2).double() / 8)  # a RoPE over R/2 = 8 channels, per axis
    assert STEP.pair_axes == (1, 1, 1, 1, 0, 0, 0, 0)
    assert torch.equal(rope_frequencies(STEP)[0], torch.cat([ladder, ladder]))
    assert KIMI.pair_axes == (1, 0) * 4
    assert torch.equal(rope_frequencies(KIMI)[0], ladder.repeat_interleave(2))  # w and h share each entry
    assert MINIMAX.pair_axes == (0,) * 3 + (1,) * 3 + (2,) * 3 and MINIMAX.num_axes == 3
    assert torch.equal(rope_frequencies(MINIMAX)[0], (10000.0 ** (-torch.arange(0, 6, 2).double() / 6)).repeat(3))
    full = 10000.0 ** (-torch.arange(0, 16, 2).double() / 16)  # Pixtral's ladders, dealt out in turn
    assert torch.equal(rope_frequencies(PIXTRAL_INTERLEAVED)[0], torch.stack([full[0::2], full[1::2]], -1).flatten())


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"axial_order": (0, 0)}, "axial_order"),
        ({"axial_order": (1, 2)}, "axial_order"),
        ({"axial_order": (0,)}, "axial_order"),
        ({"axial_order": "hw"}, "axial_order"),
        ({"axial_composition": "zigzag"}, "axial_composition"),
        ({"axial_order": (0, 1, 2)}, "rotary_dim"),  # 8 pairs do not split over 3 axes
    ],
)
def test_bad_axial_fields_name_the_field(kwargs, key):
    with pytest.raises(RopeConfigError, match=key):
        RopeConfig(head_dim=16, rope_type="axial", **kwargs)


@pytest.mark.parametrize("key, value", [("axial_order", (0, 1)), ("axial_composition", "contiguous")])
def test_axial_fields_need_an_axial_config(key, value):
    with pytest.raises(RopeConfigError, match=key):
        RopeConfig(head_dim=16, **{key: value})


@pytest.mark.parametrize("cfg", NEW, ids=IDS)
def test_round_trip_through_to_hf(cfg):
    assert RopeConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("cfg", NEW, ids=IDS)
def test_angles_equal_the_float64_loop_at_large_positions(cfg):
    positions = _columns(cfg.num_axes, 9).T * 100_003 + 10**9  # [A, N], beyond float32's exact integers
    inv_freq, _ = rope_frequencies(cfg)
    assert torch.equal(rope_angles(positions, inv_freq, cfg.pair_axes), _angles_loop(positions, cfg))
    x = torch.randn(1, 2, 9, cfg.head_dim, dtype=torch.float64)
    angles = _angles_loop(positions, cfg)
    want = apply_rotary_reference(x, torch.cos(angles), torch.sin(angles), cfg.layout)
    torch.testing.assert_close(rotate(x, positions, cfg), want, rtol=0, atol=1e-12)
    if cfg.rotary_dim < cfg.head_dim:
        assert torch.equal(rotate(x, positions, cfg)[..., cfg.rotary_dim :], x[..., cfg.rotary_dim :])


# ----------------------------------------------------------------------------- transformers vision rotary modules
def _models(family: str):
    return importlib.import_module(f"transformers.models.{family}.modeling_{family}")


# family: (config class, rotary class, expected fields of RopeConfig.from_hf)
VISION_ROTARY = {
    "kimi_k25": (
        "Kimi_K25VisionConfig",
        "Kimi_K25VisionRotaryEmbedding",
        dict(axial_order=(1, 0), axial_composition="interleaved", rotary_dim=16, layout="half"),
    ),
    "step3p7": (
        "Step3p7VisionConfig",
        "Step3p7VisionRotaryEmbedding",
        dict(axial_order=(1, 0), axial_composition="contiguous", rotary_dim=16, layout="half"),
    ),
    "inkling2": (
        "Inkling2VisionConfig",
        "Inkling2VisionRotaryEmbedding",
        dict(axial_order=(1, 0), axial_composition="contiguous", rotary_dim=16, layout="interleaved"),
    ),
    # head_dim 16: each of t, h, w rotates 2 * ((16 // 3) // 2) = 4 channels, 4 pass through
    "minimax_m3_vl": (
        "MiniMaxM3VLVisionConfig",
        "MiniMaxM3VLVisionRotaryEmbedding",
        dict(axial_order=(0, 1, 2), axial_composition="contiguous", rotary_dim=12, layout="half"),
    ),
}


@pytest.mark.parametrize("family", sorted(VISION_ROTARY))
def test_vision_rotary_modules_match_ropelab_tables(family):
    config_name, module_name, expected = VISION_ROTARY[family]
    config = getattr(_models(family), config_name)(hidden_size=64, num_attention_heads=4)
    cfg = RopeConfig.from_hf(config)
    assert cfg.rope_type == "axial" and {key: getattr(cfg, key) for key in expected} == expected
    module = getattr(_models(family), module_name)(config)
    patches = _columns(cfg.num_axes, 48)
    want_cos, want_sin = module(torch.zeros(1), patches)
    cos, sin = rope_cos_sin(patches.T, cfg)
    torch.testing.assert_close(pairs_to_channels(cos, cfg.layout), want_cos, rtol=0, atol=1e-5)
    torch.testing.assert_close(pairs_to_channels(sin, cfg.layout), want_sin, rtol=0, atol=1e-5)
    reversed_axes = cfg.replace(axial_order=cfg.axial_order[::-1])
    assert (pairs_to_channels(rope_cos_sin(patches.T, reversed_axes)[0], cfg.layout) - want_cos).abs().max() > 0.1
    if cfg.axial_composition == "interleaved":
        blocks = cfg.replace(axial_composition="contiguous")
        assert (pairs_to_channels(rope_cos_sin(patches.T, blocks)[0], cfg.layout) - want_cos).abs().max() > 0.1


# ----------------------------------------------------------------------------- patched vision towers
def _kimi_k25():
    m = _models("kimi_k25")
    config = m.Kimi_K25VisionConfig(**TINY, patch_size=2, pos_emb_height=8, pos_emb_width=8)
    model = m.Kimi_K25VisionModel._from_config(config, attn_implementation="eager")
    return model, {"pixel_values": torch.randn(24, 3, 2, 2), "grid_thw": torch.tensor([[1, 4, 6]])}


def _step3p7():
    m = _models("step3p7")
    config = m.Step3p7VisionConfig(**TINY, patch_size=2, image_size=16)
    return m.Step3p7VisionModel._from_config(config, attn_implementation="eager"), {
        "pixel_values": torch.randn(1, 3, 8, 12)
    }


def _minimax_m3_vl():
    m = _models("minimax_m3_vl")
    config = m.MiniMaxM3VLVisionConfig(**TINY, patch_size=2)
    model = m.MiniMaxM3VLVisionModel._from_config(config, attn_implementation="eager")
    pixels = torch.randn(48, 3 * config.temporal_patch_size * 4)  # two frames of 4 x 6 patches
    return model, {"pixel_values": pixels, "grid_thw": torch.tensor([[2, 4, 6]])}


def _inkling2():
    m = _models("inkling2")
    config = m.Inkling2VisionConfig(
        **TINY, patch_size=2, posemb_grid_size=8, projection_hidden_dim=64, text_hidden_size=64
    )
    model = m.Inkling2VisionModel._from_config(config, attn_implementation="eager")
    # 2 x 3 merged tokens = 4 x 6 patches of one image, plus its class token at (0, 0)
    return model, {"pixel_values": torch.rand(6, 4, 4, 3) * 2 - 1, "image_grid_thw": torch.tensor([[1, 2, 3]])}


def _gemma4():
    m = _models("gemma4")
    config = m.Gemma4VisionConfig(
        **TINY, num_key_value_heads=4, head_dim=16, patch_size=2, pooling_kernel_size=2, position_embedding_size=16
    )
    model = m.Gemma4VisionModel._from_config(config, attn_implementation="eager")
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    xy = torch.stack([cols.flatten(), rows.flatten()], dim=-1)
    xy = torch.cat([xy, torch.full((4, 2), -1)])[None]  # (x, y) of 20 patches, then 4 padding patches at -1
    return model, {"pixel_values": torch.rand(1, 24, 12), "pixel_position_ids": xy}


def _llama4():
    m = _models("llama4")
    config = m.Llama4VisionConfig(
        **{**TINY, "intermediate_size": 256},
        image_size=8,
        patch_size=2,
        vision_output_dim=64,
        projector_input_dim=64,
        projector_output_dim=64,
    )
    return m.Llama4VisionModel._from_config(config, attn_implementation="eager"), {
        "pixel_values": torch.randn(1, 3, 8, 8)
    }


TOWERS = {
    "kimi_k25": _kimi_k25,
    "step3p7": _step3p7,
    "minimax_m3_vl": _minimax_m3_vl,
    "inkling2": _inkling2,
    "gemma4": _gemma4,
    "llama4": _llama4,
}


def _run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state


@pytest.mark.parametrize("family", sorted(TOWERS))
def test_patched_vision_tower_reproduces_the_original(family):
    torch.manual_seed(0)
    model, inputs = TOWERS[family]()
    model.eval()
    want = _run(model, inputs)
    patch(model)
    (adapter,) = [m for m in model.modules() if isinstance(m, HFRotaryAdapter)]
    assert adapter.cfg.rope_type == "axial" and adapter.cfg.num_axes >= 2
    scale = max(1.0, want.abs().max().item())
    assert (_run(model, inputs) - want).abs().max() / scale < 1e-5
    cfg = adapter.cfg
    adapter.cfg = cfg.replace(axial_order=cfg.axial_order[::-1])  # the axes matter: the positions differ by axis
    assert (_run(model, inputs) - want).abs().max() / scale > 1e-3
    adapter.cfg = cfg.replace(base=2.0)  # the adapter is what rotates
    assert (_run(model, inputs) - want).abs().max() / scale > 1e-3
    unpatch(model)
    assert torch.equal(_run(model, inputs), want)


def test_gemma4_vision_tables_are_one_half_per_axis():
    m = _models("gemma4")
    config = m.Gemma4VisionConfig(hidden_size=64, num_attention_heads=4, head_dim=16)
    module = m.Gemma4VisionRotaryEmbedding(config)
    model = torch.nn.ModuleDict({"rotary_emb": module})
    patch(model)
    adapter = model.rotary_emb
    assert isinstance(adapter, HFChannelTableAdapter)
    assert adapter.channel_pairs == (0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7)  # [x, x, y, y]
    xy = _columns(2, 30)[None] * 7  # [1, N, 2] (x, y)
    want, got = module(torch.zeros(1), xy), adapter(torch.zeros(1), xy)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-5)
    angles = _angles_loop(xy[0].T, adapter.cfg)  # float64: [x block | y block], each [c, c]
    x, y = angles.chunk(2, dim=-1)
    exact = torch.cat([x, x, y, y], dim=-1)
    torch.testing.assert_close(got[0][0].double(), torch.cos(exact), rtol=0, atol=1e-7)


def test_llama4_vision_freqs_cis_is_complex_on_the_fixed_grid():
    model, _ = _llama4()
    original = model.rotary_embedding
    patch(model)
    adapter = model.rotary_embedding
    assert isinstance(adapter, HFFixedGridAdapter)
    want, got = original(torch.zeros(1)), adapter(torch.zeros(1))
    assert got.dtype == torch.complex64 and got.shape == want.shape == (4 * 4 + 1, 1, 8)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert torch.equal(got[-1], torch.ones_like(got[-1]))  # the class token: angle 0
    # float64: pair i < 4 turns by (x + 1) * theta_i, pair i >= 4 by (y + 1) * theta_(i-4), theta_k = 10000^(-4k/16)
    theta = 10000.0 ** (-4 * torch.arange(4, dtype=torch.float64) / 16)
    x, y = torch.arange(16) % 4 + 1, torch.arange(16) // 4 + 1
    exact = torch.cat([x[:, None] * theta, y[:, None] * theta], dim=-1)
    torch.testing.assert_close(
        got[:-1, 0], torch.polar(torch.ones_like(exact), exact).to(torch.complex64), rtol=0, atol=1e-7
    )


# ----------------------------------------------------------------------------- complex freqs_cis text towers
def _deepseek_v2():
    config = transformers.DeepseekV2Config(
        **TINY,
        vocab_size=128,
        num_key_value_heads=4,
        kv_lora_rank=16,
        q_lora_rank=32,
        qk_rope_head_dim=16,
        qk_nope_head_dim=16,
        v_head_dim=16,
        moe_intermediate_size=32,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        n_shared_experts=1,
        first_k_dense_replace=1,
    )
    torch.manual_seed(0)
    return transformers.DeepseekV2Model._from_config(config, attn_implementation="eager").eval()


def test_deepseek_v2_freqs_cis_come_from_exact_angles():
    model = _deepseek_v2()
    original = model.rotary_emb
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(input_ids=ids).last_hidden_state
    patch(model)
    adapter = model.rotary_emb
    assert isinstance(adapter, HFComplexRotaryAdapter)
    positions = torch.arange(40)[None] * 97  # up to ~3800: float32 angles drift, ropelab's do not
    with torch.no_grad():
        got, reference = adapter(torch.zeros(1), positions), original(torch.zeros(1), positions)
    assert got.dtype == reference.dtype == torch.complex64 and got.shape == reference.shape == (1, 40, 8)
    assert (got - reference).abs().max() < 1e-3
    inv_freq = 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    exact = positions[..., None].double() * inv_freq
    torch.testing.assert_close(got, torch.polar(torch.ones_like(exact), exact).to(torch.complex64), rtol=0, atol=1e-7)
    scale = max(1.0, want.abs().max().item())
    with torch.no_grad():
        assert (model(input_ids=ids).last_hidden_state - want).abs().max() / scale < 1e-5
        adapter.cfg = adapter.cfg.replace(base=2.0)
        assert (model(input_ids=ids).last_hidden_state - want).abs().max() / scale > 1e-3


# ----------------------------------------------------------------------------- HunYuan-VL: sections of the doubled table
def _hunyuan_vl(sections):
    config = transformers.models.hunyuan_vl.HunYuanVLTextConfig(
        **TINY,
        vocab_size=128,
        num_key_value_heads=2,
        head_dim=16,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": list(sections)},
    )
    torch.manual_seed(0)
    return transformers.models.hunyuan_vl.HunYuanVLTextModel._from_config(config, attn_implementation="eager").eval()


@pytest.mark.parametrize("sections", [(2, 3, 3), (2, 2, 2, 2)], ids=["three-rows", "four-rows"])
def test_hunyuan_vl_tables_and_outputs_with_different_rows(sections):
    model = _hunyuan_vl(sections)
    original = model.rotary_emb
    rows = len(sections)
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    steps = torch.arange(10)
    positions = torch.stack([(steps * (2 * a + 1) + 3 * a) % 13 for a in range(rows)])[:, None].expand(rows, 2, 10)
    with torch.no_grad():
        want = model(input_ids=ids, position_ids=positions).last_hidden_state
        want_text = model(input_ids=ids, position_ids=positions[0]).last_hidden_state
    assert (want - want_text).abs().max() > 1e-2  # the rows matter
    patch(model)
    adapter = model.rotary_emb
    assert isinstance(adapter, HFChannelTableAdapter) and adapter.mrope_section == list(sections)
    scale = max(1.0, want.abs().max().item())
    with torch.no_grad():
        assert (model(input_ids=ids, position_ids=positions).last_hidden_state - want).abs().max() / scale < 1e-5
        assert (
            model(input_ids=ids, position_ids=positions[0]).last_hidden_state - want_text
        ).abs().max() / scale < 1e-5
        for w, g in zip(original(torch.zeros(1), positions * 50), adapter(torch.zeros(1), positions * 50)):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-4)
    # float64: channel c of the doubled table reads row k % rows in the k-th block of 2 * sections[k] channels
    inv_freq = 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    doubled = (positions[..., None].double() * inv_freq).repeat(1, 1, 1, 2)  # [rows, B, S, 16]
    block_rows = [k % rows for k, size in enumerate(sections) for _ in range(2 * size)]
    exact = torch.stack([doubled[row, ..., c] for c, row in enumerate(block_rows)], dim=-1)
    torch.testing.assert_close(adapter(torch.zeros(1), positions)[0].double(), torch.cos(exact), rtol=0, atol=1e-7)


def test_hunyuan_vl_still_refused_by_the_core():
    # The core RopeConfig has no per-channel rows: only the adapter reproduces the module's tables.
    model = _hunyuan_vl((2, 3, 3))
    with pytest.raises(RopeConfigError, match="two channels of a pair"):
        RopeConfig.from_hf(model.config)


def test_a_wrong_reading_of_a_special_module_is_refused():
    model = _deepseek_v2()
    with pytest.raises(PatchError, match="does not reproduce its output"):
        patch(model, RopeConfig(head_dim=16, base=500.0))


# ----------------------------------------------------------------------------- preset and explain
def test_qwen25_vl_vision_preset_is_transformers_reading_of_the_published_vision_config():
    # vision_config of Qwen2.5-VL-7B-Instruct as quoted in the preset's source (no rope_theta there)
    config = transformers.Qwen2_5_VLConfig.from_dict(
        {"vision_config": {"hidden_size": 1280, "num_heads": 16, "depth": 32, "out_hidden_size": 3584}}
    ).vision_config
    cfg = preset("qwen2.5-vl-7b-instruct-vision")
    assert RopeConfig.from_hf(config) == cfg
    module = _models("qwen2_5_vl").Qwen2_5_VLVisionRotaryEmbedding(config)
    patches = _columns(2, 64) * 3
    want_cos, _ = module(torch.zeros(1), patches)
    torch.testing.assert_close(pairs_to_channels(rope_cos_sin(patches.T, cfg)[0], "half"), want_cos, rtol=0, atol=1e-5)


def test_explain_names_the_order_of_each_axial_layout():
    kimi = dict(
        axes_rows(RopeConfig(head_dim=72, rope_type="axial", axial_order=(1, 0), axial_composition="interleaved"))
    )
    assert "column, row in turn, pair by pair" in kimi["position axes"]
    assert kimi["column axis"].startswith("18 pairs: 0, 2, ..., 34 (every 2nd)")
    assert kimi["row axis"].startswith("18 pairs: 1, 3, ..., 35 (every 2nd)")
    step = dict(axes_rows(RopeConfig(head_dim=96, rope_type="axial", axial_order=(1, 0))))
    assert "blocks column | row" in step["position axes"] and step["column axis"].startswith("24 pairs: 0-23")
    minimax = dict(axes_rows(RopeConfig(head_dim=80, rotary_dim=78, rope_type="axial", axial_order=(0, 1, 2))))
    assert minimax["position axes"].startswith("3 per token: axial 3D RoPE")
    assert [minimax[f"{name} axis"][:16] for name in ("temporal", "row", "column")] == [
        "13 pairs: 0-12; ",
        "13 pairs: 13-25;",
        "13 pairs: 26-38;",
    ]


def test_sam3_vit_fractional_positions_and_batch_table_are_reproduced():
    """SAM 3's ViT: one interleaved table for the whole batch (``[1, N, R]``) and, in its global
    layers, fractional patch coordinates; the patched module must match both."""
    from transformers.models.sam3.configuration_sam3 import Sam3ViTConfig
    from transformers.models.sam3.modeling_sam3 import Sam3ViTRotaryEmbedding

    config = Sam3ViTConfig(hidden_size=64, num_attention_heads=4)
    holder = torch.nn.Module()
    holder.rotary_emb = Sam3ViTRotaryEmbedding(config)
    original = holder.rotary_emb
    patch(holder)
    adapter = holder.rotary_emb
    assert isinstance(adapter, HFRotaryAdapter) and adapter.leading_one
    assert adapter.cfg.layout == "interleaved" and adapter.cfg.rope_type == "axial"
    x = torch.zeros(1)
    grid = _columns(2, 48).to(torch.float32)
    for positions in (grid, grid * (24 / 72)):  # integral, then the global layers' fractional scale
        want_cos, want_sin = original(x, positions)
        got_cos, got_sin = adapter(x, positions)
        assert got_cos.shape == want_cos.shape == (1, 48, 16)
        torch.testing.assert_close(got_cos, want_cos, atol=1e-5, rtol=0)
        torch.testing.assert_close(got_sin, want_sin, atol=1e-5, rtol=0)


def test_fractional_angles_are_the_float64_product():
    inv_freq = rope_frequencies(STEP)[0]
    positions = torch.tensor([[0.5, 7.25], [1 / 3, 1e5 + 0.125]], dtype=torch.float64).T  # [A=2, N=2]
    angles = rope_angles(positions, inv_freq, STEP.pair_axes)
    want = torch.stack([positions[axis] * inv_freq[i] for i, axis in enumerate(STEP.pair_axes)], dim=-1)
    assert torch.equal(angles, want)
