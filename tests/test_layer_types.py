"""Per-layer-type RoPE (``RopeConfig.by_layer_type``, ``from_hf(layer_type=)``) and p-RoPE (``proportional``).

Goldens: transformers' own rotary modules (their ``{layer_type}_inv_freq`` buffers, float32) and
``_compute_proportional_rope_parameters``; float64 formulas for precision.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
import pickle

import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

import ropelab
from ropelab import RopeConfig, RopeConfigError, rope_frequencies
from ropelab.config import ALL_LAYERS, LayerTypeRope
from ropelab.errors import UnknownLayerTypeError
from ropelab.reference import apply_rotary_reference

transformers.logging.set_verbosity_error()


def _close_to_buffer(inv_freq: torch.Tensor, buffer: torch.Tensor) -> None:
    assert inv_freq.dtype == torch.float64 and inv_freq.shape == buffer.shape
    torch.testing.assert_close(inv_freq, buffer.double(), rtol=1e-6, atol=0)


# ---------------------------------------------------------------- proportional (p-RoPE)
def _proportional_config(head_dim: int, partial: float, base: float, factor: float | None):
    params = {"rope_type": "proportional", "rope_theta": base, "partial_rotary_factor": partial}
    if factor is not None:
        params["factor"] = factor
    return transformers.LlamaConfig(
        hidden_size=2 * head_dim,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=head_dim,
        rope_parameters=params,
    )


@pytest.mark.parametrize(
    "head_dim,partial,base,factor",
    list(itertools.product((16, 80, 256), (0.25, 0.5, 0.3, 1.0), (10_000.0, 1_000_000.0), (None, 8.0))),
)
def test_proportional_matches_transformers(head_dim, partial, base, factor):
    config = _proportional_config(head_dim, partial, base, factor)
    cfg = RopeConfig.from_hf(config)
    want, want_factor = ROPE_INIT_FUNCTIONS["proportional"](config, None)
    got, got_factor = rope_frequencies(cfg)
    assert (cfg.rotary_dim, cfg.rotated_pairs) == (head_dim, int(partial * head_dim // 2))
    assert got.shape == want.shape == (head_dim // 2,)
    torch.testing.assert_close(got, want.double(), rtol=1e-6, atol=0)
    assert got_factor == want_factor == 1.0
    assert bool((got[cfg.rotated_pairs :] == 0).all()) and bool((got[: cfg.rotated_pairs] > 0).all())


def test_proportional_is_the_head_wide_formula_in_float64():
    cfg = RopeConfig(head_dim=256, base=1e6, rope_type="proportional", rotated_pairs=32, factor=2.0)
    i = torch.arange(32, dtype=torch.float64)
    exact = 1e6 ** (-2 * i / 256) / 2.0  # exponents over the whole head, not over 2 * rotated_pairs
    inv_freq, _ = rope_frequencies(cfg)
    assert torch.equal(inv_freq[32:], torch.zeros(96, dtype=torch.float64))
    assert (inv_freq[:32] - exact).abs().max().item() < 1e-16


@pytest.mark.parametrize("head_dim", [16, 100, 256, 512])
def test_proportional_round_trips_for_every_pair_count(head_dim):
    for rotated in range(head_dim // 2 + 1):
        cfg = RopeConfig(head_dim=head_dim, base=1e6, rope_type="proportional", rotated_pairs=rotated)
        hf = cfg.to_hf()
        assert RopeConfig.from_hf(hf) == cfg
        p = hf["rope_parameters"].get("partial_rotary_factor", 1.0)
        assert int(p * head_dim // 2) == rotated  # what transformers computes from the written value


def test_proportional_bad_values_name_the_field():
    with pytest.raises(RopeConfigError, match="rotated_pairs=9 .*head_dim // 2 = 8"):
        RopeConfig(head_dim=16, rope_type="proportional", rotated_pairs=9)
    with pytest.raises(RopeConfigError, match="rotated_pairs=2 .*rope_type='default'"):
        RopeConfig(head_dim=16, rotated_pairs=2)
    with pytest.raises(RopeConfigError, match="rotary_dim=8 .*head_dim=16 for rope_type='proportional'"):
        RopeConfig(head_dim=16, rotary_dim=8, rope_type="proportional")
    assert RopeConfig(head_dim=16, rope_type="proportional").rotated_pairs == 8  # default: every pair


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_frozen_pairs_pass_through_rotate_and_rotate_qk(layout):
    cfg = RopeConfig(head_dim=16, base=1e4, rope_type="proportional", rotated_pairs=3, layout=layout)
    q, k = torch.randn(2, 3, 5, 16), torch.randn(2, 1, 5, 16)
    positions = torch.tensor([[0, 7, 300, 4096, 70_000], [1, 2, 3, 4, 5]])
    cos, sin = ropelab.rope_cos_sin(positions, cfg)
    want_q = apply_rotary_reference(q.double(), cos.double()[:, None], sin.double()[:, None], layout).float()
    got_q, got_k = ropelab.rotate_qk(q, k, positions, cfg)
    torch.testing.assert_close(got_q, want_q, rtol=0, atol=2e-6)
    frozen = [c for p in range(3, 8) for c in ((p, p + 8) if layout == "half" else (2 * p, 2 * p + 1))]
    assert torch.equal(got_q[..., frozen], q[..., frozen]) and torch.equal(got_k[..., frozen], k[..., frozen])
    assert not torch.allclose(got_q[..., 1:], q[..., 1:])  # the turning pairs do turn


def test_proportional_out_of_range_skips_frozen_pairs():
    from ropelab.analysis import out_of_range_pairs

    cfg = RopeConfig(head_dim=64, base=1e6, rope_type="proportional", rotated_pairs=24, max_position_embeddings=4096)
    found = out_of_range_pairs(cfg, 8192)
    assert found.indices and max(found.indices) < 24  # the 8 frozen pairs never meet a new angle
    quarter = cfg.replace(rotated_pairs=8)  # Gemma 4's p = 0.25 keeps only pairs that turn within 4096 positions
    assert out_of_range_pairs(quarter, 8192).count == 0


# ---------------------------------------------------------------- reading per layer type
def _module_buffers(module) -> dict[str, torch.Tensor]:
    return {
        name[: -len("_inv_freq")]: buffer
        for name, buffer in module.named_buffers()
        if name.endswith("_inv_freq") and not name.endswith("original_inv_freq")
    }


def _text_rotary_class(config):
    """The family's own (text) ``*RotaryEmbedding`` class, from the modeling module beside its config."""
    modeling = importlib.import_module(type(config).__module__.replace(".configuration_", ".modeling_"))
    return next(
        getattr(modeling, name) for name in dir(modeling) if name.endswith("RotaryEmbedding") and "Vision" not in name
    )


GEMMA3 = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_hidden_layers=6)


def test_gemma3_layer_types_match_its_rotary_module():
    config = transformers.Gemma3TextConfig(
        **GEMMA3,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
    )
    rope = RopeConfig.by_layer_type(config)
    assert set(rope) == {"full_attention", "sliding_attention"} and not rope.uniform
    assert rope.layers("full_attention") == (5,) and rope.layers("sliding_attention") == (0, 1, 2, 3, 4)
    module = transformers.models.gemma3.modeling_gemma3.Gemma3RotaryEmbedding(config)
    for layer_type, buffer in _module_buffers(module).items():
        _close_to_buffer(rope_frequencies(rope[layer_type])[0], buffer)
        assert RopeConfig.from_hf(config, layer_type=layer_type) == rope[layer_type]
    assert (rope["full_attention"].rope_type, rope["full_attention"].factor) == ("linear", 8.0)


def test_gemma4_full_attention_has_its_own_head_and_p_rope():
    config = transformers.Gemma4TextConfig(**GEMMA3, global_head_dim=64)
    rope = RopeConfig.by_layer_type(config)
    full, sliding = rope["full_attention"], rope["sliding_attention"]
    assert (full.head_dim, full.rotary_dim, full.rope_type, full.rotated_pairs) == (64, 64, "proportional", 8)
    assert (sliding.head_dim, sliding.rope_type) == (16, "default")
    module = transformers.models.gemma4.modeling_gemma4.Gemma4TextRotaryEmbedding(config)
    for layer_type, buffer in _module_buffers(module).items():
        _close_to_buffer(rope_frequencies(rope[layer_type])[0], buffer)
    # The same model as a config.json dict: global_head_dim instead of per_layer_config.
    raw = {
        "model_type": "gemma4_text",
        **GEMMA3,
        "global_head_dim": 64,
        "layer_types": list(config.layer_types),
        "max_position_embeddings": config.max_position_embeddings,
        "rope_parameters": config.to_dict()["rope_parameters"],
    }
    assert RopeConfig.by_layer_type(raw) == rope
    raw.pop("global_head_dim")  # transformers' default: 512
    assert RopeConfig.by_layer_type(raw)["full_attention"].head_dim == 512


@pytest.mark.parametrize(
    "family",
    [
        "olmo3",
        "modernbert",
        "t5gemma2_text",
        "ultrabert",
        "laguna",
        "mellum",
        "mimo_v2_flash",
        "lfm3",
        "beam",
        "embedding_gemma2_text",
        "deepseek_v4",
    ],
)
def test_every_layer_type_matches_the_family_rotary_module(family):
    """The default config of each family, shrunk, against its own rotary module's buffers."""
    config_class = transformers.AutoConfig.for_model(family).__class__
    kwargs = {
        key: value
        for key, value in dict(
            hidden_size=64, num_attention_heads=4, num_key_value_heads=4, head_dim=32, num_hidden_layers=4
        ).items()
        if key in config_class.__dataclass_fields__ or hasattr(config_class(), key)
    }
    config = config_class(**kwargs)
    rope = RopeConfig.by_layer_type(config)
    buffers = _module_buffers(_text_rotary_class(config)(config))
    # LFM3 builds tables only for the labels its layers use (no sliding layer among these four).
    assert (
        buffers
        and set(buffers) <= set(rope.rope_layer_types)
        and (family == "lfm3" or set(buffers) == set(rope.rope_layer_types))
    )
    for layer_type, buffer in buffers.items():
        _close_to_buffer(rope_frequencies(rope[layer_type])[0], buffer)
    if family == "beam":
        assert rope["full_attention"] is None  # a NoPE layer type
        with pytest.raises(RopeConfigError, match="layer_type='full_attention' .*None \\(NoPE\\)"):
            RopeConfig.from_hf(config, layer_type="full_attention")
    if family == "lfm3":
        assert "conv" in rope.layer_types and "conv" not in rope  # conv layers have no RoPE entry
    if family == "deepseek_v4":
        assert set(rope) == {"main", "compress"} and rope["compress"].base != rope["main"].base


def test_nested_config_without_layer_type_says_what_to_call():
    config = transformers.Gemma3TextConfig(**GEMMA3)
    with pytest.raises(RopeConfigError) as error:
        RopeConfig.from_hf(config)
    message = str(error.value)
    assert "full_attention" in message and "sliding_attention" in message
    assert "layer_type=" in message and "by_layer_type" in message


def test_bad_layer_types_name_the_field_and_value():
    config = transformers.Gemma3TextConfig(**GEMMA3)
    with pytest.raises(UnknownLayerTypeError, match="layer_type='chunked_attention' .*sliding_attention"):
        RopeConfig.from_hf(config, layer_type="chunked_attention")
    missing = {
        "head_dim": 16,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
    }
    with pytest.raises(RopeConfigError, match="layer_types='full_attention' .*write null"):
        RopeConfig.by_layer_type(missing)
    flat = {"head_dim": 16, "layer_types": ["sliding_attention", "full_attention"], "rope_theta": 1e4}
    assert RopeConfig.from_hf(flat, layer_type="full_attention") == RopeConfig.from_hf(flat)
    with pytest.raises(RopeConfigError, match="layer_type='global' .*one RoPE for every layer"):
        RopeConfig.from_hf(flat, layer_type="global")
    bad = {
        "head_dim": 16,
        "layer_types": ["full_attention"],
        "rope_parameters": {"full_attention": {"rope_type": "linear", "rope_theta": 1e4}},
    }
    with pytest.raises(RopeConfigError, match="layer type 'full_attention': factor=None"):
        RopeConfig.by_layer_type(bad)


def test_top_level_defaults_fill_each_layer_type_like_transformers():
    """rope_theta and partial_rotary_factor from the top level, original_max_position_embeddings from
    max_position_embeddings (not from a top-level original: that priority is the flat case's), as the
    generic transformers conversion does (LFM3 uses it)."""
    raw = {
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 16,
        "num_hidden_layers": 2,
        "layer_types": ["sliding_attention", "full_attention"],
        "max_position_embeddings": 8192,
        "rope_theta": 5e5,
        "partial_rotary_factor": 0.5,
        "original_max_position_embeddings": 1024,
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default"},
            "full_attention": {"rope_type": "yarn", "factor": 4.0},
        },
    }
    config = transformers.Lfm3Config(**json.loads(json.dumps(raw)))
    rope = RopeConfig.by_layer_type(raw)
    for layer_type, block in config.rope_parameters.items():
        assert rope[layer_type].base == block["rope_theta"] == 5e5
        assert rope[layer_type].partial_rotary_factor == block["partial_rotary_factor"] == 0.5
    assert rope["full_attention"].original_max_position_embeddings == 8192
    module = transformers.models.lfm3.modeling_lfm3.Lfm3RotaryEmbedding(config)
    _close_to_buffer(rope_frequencies(rope["full_attention"])[0], module.full_attention_inv_freq)
    assert rope_frequencies(rope["full_attention"])[1] == pytest.approx(module.full_attention_attention_scaling)


LEGACY = {
    # 4.x config.json keys, converted by each family's transformers config (convert_rope_params_to_dict).
    "gemma3_text": {
        "rope_theta": 1e6,
        "rope_local_base_freq": 1e4,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
    },
    "modernbert": {"global_rope_theta": 160000.0, "local_rope_theta": 10000.0},
    "olmo3": {
        "rope_theta": 5e5,
        "rope_scaling": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 8192},
    },
    # DeepseekV4Config: plain RoPE at rope_theta for "main", the flat block at compress_rope_theta for "compress".
    "deepseek_v4": {
        "rope_theta": 1e4,
        "compress_rope_theta": 160000.0,
        "qk_rope_head_dim": 8,
        "rope_scaling": {"type": "yarn", "factor": 16.0, "original_max_position_embeddings": 4096},
    },
}


@pytest.mark.parametrize("model_type", list(LEGACY))
def test_legacy_flat_keys_convert_like_the_family_config(model_type):
    raw = {
        "model_type": model_type,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "head_dim": 16,
        "num_hidden_layers": 4,
        "max_position_embeddings": 65536,
        **LEGACY[model_type],
    }
    kwargs = {key: value for key, value in json.loads(json.dumps(raw)).items() if key != "model_type"}
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    want = RopeConfig.by_layer_type(config)
    got = RopeConfig.by_layer_type(raw)
    assert {name: got[name] for name in want} == dict(want)
    assert RopeConfig.by_layer_type({"model_type": model_type, "head_dim": 16})  # no RoPE keys: the defaults


def test_dory_config_json_lists_each_layer_as_attention_then_mlp():
    """Dory's config.json (and DoryConfig.to_dict, transformers 5.25) write each decoder layer as two
    blocks, (attention type, "mlp"); DoryConfig reads layer_types[::2]."""
    blocks = {
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        "full_attention": {"rope_type": "default", "rope_theta": 1e7},
    }
    raw = {
        "model_type": "dory",
        "head_dim": 16,
        "num_hidden_layers": 8,
        "rope_parameters": blocks,
        "layer_types": ["sliding_attention", "mlp", "full_attention", "mlp"] * 2,
    }
    rope = RopeConfig.by_layer_type(raw)
    assert rope.layer_types == ("sliding_attention", "full_attention") * 2
    assert (rope["sliding_attention"].base, rope["full_attention"].base) == (1e4, 1e7)
    assert RopeConfig.by_layer_type({**raw, "layer_types": list(rope.layer_types)}) == rope  # the in-memory form
    with pytest.raises(RopeConfigError, match="layer_types='mlp'"):
        RopeConfig.by_layer_type({**raw, "model_type": "llama"})  # other families: "mlp" is a layer type


def test_ergo_flat_block_is_the_sliding_layers_and_full_layers_have_no_rope():
    """ErgoConfig.convert_rope_params_to_dict (transformers 5.25): a flat block (or rope_theta, default
    1e6) describes the sliding-attention layers; its full-attention layers use no position embeddings.
    Its rotary module repeat_interleave's the tables for Cohere2-MoE's interleaved attention."""
    raw = {
        "model_type": "ergo",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
        "rope_theta": 5e5,
    }
    rope = RopeConfig.by_layer_type(raw)
    assert rope["full_attention"] is None and rope.rope_layer_types == ("sliding_attention",)
    assert (rope["sliding_attention"].base, rope["sliding_attention"].layout) == (5e5, "interleaved")
    assert (
        RopeConfig.by_layer_type({k: v for k, v in raw.items() if k != "rope_theta"})["sliding_attention"].base == 1e6
    )
    assert RopeConfig.by_layer_type(rope.to_hf() | {"model_type": "ergo"}) == rope  # the nested form


def test_multimodal_config_json_is_read_from_its_text_config(tmp_path):
    path = tmp_path / "config.json"
    text = {
        "model_type": "gemma3_text",
        "head_dim": 128,
        "hidden_size": 5376,
        "num_attention_heads": 32,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "max_position_embeddings": 131072,
    }
    path.write_text(json.dumps({"model_type": "gemma3", "text_config": text}))
    rope = RopeConfig.by_layer_type(path)
    assert (rope["full_attention"].factor, rope["full_attention"].base, rope["sliding_attention"].base) == (
        8.0,
        1e6,
        1e4,
    )
    assert rope.source == str(path) and str(path) in rope["full_attention"].source


# ---------------------------------------------------------------- the container
def test_flat_configs_read_as_one_all_entry():
    rope = RopeConfig.by_layer_type({"head_dim": 64, "rope_theta": 1e4, "layer_types": ["full_attention"] * 3})
    assert rope.uniform and list(rope) == [ALL_LAYERS] and rope.layers(ALL_LAYERS) == (0, 1, 2)
    assert rope[ALL_LAYERS] == RopeConfig(head_dim=64)
    assert RopeConfig.by_layer_type(rope.to_hf()) == rope


def test_container_is_a_read_only_mapping_with_replace_and_round_trip():
    config = transformers.Gemma4TextConfig(**GEMMA3, global_head_dim=64)
    rope = RopeConfig.by_layer_type(config)
    assert len(rope) == 2 and dict(rope) == dict(rope.configs)
    with pytest.raises(TypeError):
        rope.configs["x"] = None  # read-only
    with pytest.raises(KeyError):
        rope["x"]
    moved = rope.replace(base=2.0)
    assert {cfg.base for cfg in moved.values()} == {2.0} and moved.layer_types == rope.layer_types
    assert moved["full_attention"].rotated_pairs == rope["full_attention"].rotated_pairs
    assert RopeConfig.by_layer_type(rope.to_hf()) == rope
    partial = LayerTypeRope(
        {
            "full_attention": RopeConfig(head_dim=64, rotary_dim=32, base=5e5),  # Laguna's shape
            "sliding_attention": RopeConfig(head_dim=64),
        },
        ("full_attention", "sliding_attention"),
    )
    assert RopeConfig.by_layer_type(partial.to_hf()) == partial
    lossy = LayerTypeRope({"full_attention": RopeConfig(head_dim=44, rotary_dim=30), "sliding_attention": None})
    with pytest.raises(RopeConfigError, match="full_attention.rotary_dim=30"):
        lossy.to_hf()  # int(44 * (30 / 44)) is 29 in floating point
    nope = LayerTypeRope(
        {"sliding_attention": RopeConfig(head_dim=16), "full_attention": None}, ("sliding_attention", "full_attention")
    )
    assert nope.rope_layer_types == ("sliding_attention",) and RopeConfig.by_layer_type(nope.to_hf()) == nope
    with pytest.raises(RopeConfigError, match="configs"):
        LayerTypeRope({})
    # A patched model holding it can be deep-copied and saved.
    copied, pickled = copy.deepcopy(rope), pickle.loads(pickle.dumps(rope))
    assert copied == rope == pickled and pickled.source == rope.source and pickled.layer_types == rope.layer_types


# ---------------------------------------------------------------- the trained length of a linear-scaled layer type
def test_a_linear_layer_type_states_no_trained_length_and_none_is_derived():
    """Gemma 3 pretrains on 32K sequences and reaches 128K with a linear factor of 8 (Gemma 3 Technical
    Report, arXiv 2503.19786): max_position_embeddings / factor = 16384 is not its pretraining
    length, and transformers reads none for a linear block. So none is derived: the trained length stays
    max_position_embeddings and says it is not stated; a stated original_max_position_embeddings is used."""
    config = transformers.Gemma3TextConfig(rope_scaling={"rope_type": "linear", "factor": 8.0})
    rope = RopeConfig.by_layer_type(config)
    full = rope["full_attention"]
    assert config.max_position_embeddings == 131072 and (full.rope_type, full.factor) == ("linear", 8.0)
    assert (full.trained_length, full.states_trained_length) == (131072, False)
    assert rope["sliding_attention"].states_trained_length  # no scaling: max_position_embeddings is the length
    stated = rope.to_hf()
    stated["rope_parameters"]["full_attention"]["original_max_position_embeddings"] = 32768  # the report's 32K
    read = RopeConfig.by_layer_type(stated)
    assert (read["full_attention"].trained_length, read["full_attention"].states_trained_length) == (32768, True)
    assert RopeConfig.by_layer_type(read.to_hf()) == read
    assert torch.equal(rope_frequencies(read["full_attention"])[0], rope_frequencies(full)[0])  # same tables
    assert RopeConfig(head_dim=16, rope_type="dynamic", factor=2.0, max_position_embeddings=4096).states_trained_length
