"""Presets: values from public configs, round trips, and agreement with transformers' defaults."""

import math

import pytest

from ropelab import RopeConfig, RopeConfigError, rope_frequencies
from ropelab.config import LayerTypeRope
from ropelab.errors import UnknownLayerTypeError
from ropelab.presets import PRESETS, UnknownPresetError, preset, preset_configs, preset_info, preset_names

REQUIRED = [
    "gpt-neox-20b", "gpt-j-6b", "llama-7b", "llama-2-7b", "code-llama-7b", "llama-3-8b", "llama-3.1-8b",
    "mistral-7b-v0.1", "falcon-7b", "gemma-7b", "qwen2-7b", "phi-3-mini-128k-instruct", "deepseek-v3",
]  # fmt: skip


def test_every_required_family_is_present():
    assert set(REQUIRED) <= set(preset_names())


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trips_through_transformers_form(name):
    cfg = preset(name)
    read = RopeConfig.by_layer_type if isinstance(cfg, LayerTypeRope) else RopeConfig.from_hf
    assert read(cfg.to_hf()) == cfg
    assert cfg.source and name in cfg.source
    assert PRESETS[name].source  # every preset says where its values come from


@pytest.mark.parametrize("name", list(preset_configs()))
def test_preset_frequencies_are_finite_and_positive(name):
    cfg = preset(name)  # "name:layer_type" for each layer type of a per-layer-type preset
    assert cfg == preset_configs()[name]
    inv_freq, attention_factor = rope_frequencies(cfg, cfg.max_position_embeddings)
    assert inv_freq.shape == (cfg.rotary_dim // 2,)
    assert bool((inv_freq > 0).all()) and math.isfinite(attention_factor)


def test_unknown_preset_lists_the_known_names():
    with pytest.raises(RopeConfigError) as error:
        preset("llama-9")
    assert isinstance(error.value, UnknownPresetError)
    for name in REQUIRED:
        assert name in str(error.value)


def test_names_are_case_and_underscore_insensitive():
    assert preset("Llama_2_7B") == preset("llama-2-7b")


def test_card_specific_values():
    assert preset("gpt-neox-20b").rotary_dim == 24 and preset("gpt-neox-20b").head_dim == 96  # rotary_pct 0.25
    assert preset("gpt-j-6b").layout == "interleaved" and preset("gpt-j-6b").rotary_dim == 64
    assert preset("code-llama-7b").base == 1e6
    assert preset("llama-3-8b").base == 5e5
    llama31 = preset("llama-3.1-8b")
    assert (llama31.rope_type, llama31.factor, llama31.original_max_position_embeddings) == ("llama3", 8.0, 8192)
    deepseek = preset("deepseek-v3")
    assert (deepseek.rope_type, deepseek.factor, deepseek.mscale, deepseek.mscale_all_dim) == ("yarn", 40.0, 1.0, 1.0)
    assert rope_frequencies(deepseek)[1] == 1.0  # mscale == mscale_all_dim: no cos/sin scaling


def test_phi3_longrope_factor_lists():
    cfg = preset("phi-3-mini-128k-instruct")
    assert cfg.rope_type == "longrope" and cfg.head_dim == 96
    assert len(cfg.short_factor) == len(cfg.long_factor) == 48
    assert cfg.long_factor[0] == 1.0299999713897705 and cfg.long_factor[-1] == 64.81001281738281
    assert list(cfg.long_factor) == sorted(cfg.long_factor)  # the published lists grow with the pair index
    assert list(cfg.short_factor) == sorted(cfg.short_factor)
    long_freq, attention_factor = rope_frequencies(cfg, 131072)
    short_freq, _ = rope_frequencies(cfg, 4096)
    assert long_freq[-1] < short_freq[-1] / 20  # the slowest pair is stretched ~21x more past 4096
    assert attention_factor == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))


def test_every_preset_notes_are_strings():
    for info in PRESETS.values():
        assert all(isinstance(note, str) and note for note in info.notes)
    assert "June 2024" in " ".join(preset_info("phi-3-mini-128k-instruct").notes)


# google/gemma-3-12b-it's text_config, the RoPE keys of the copy cited in the preset's source.
GEMMA3_12B_TEXT = {
    "model_type": "gemma3_text",
    "head_dim": 256,
    "hidden_size": 3840,
    "num_attention_heads": 16,
    "num_hidden_layers": 48,
    "max_position_embeddings": 131072,
    "rope_local_base_freq": 10000,
    "rope_theta": 1000000,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024,
    "sliding_window_pattern": 6,
}


def test_gemma3_preset_is_per_layer_type():
    rope = preset("gemma-3-12b-it")
    assert isinstance(rope, LayerTypeRope) and PRESETS["gemma-3-12b-it"].per_layer_type
    assert rope.layers("full_attention") == (5, 11, 17, 23, 29, 35, 41, 47) and len(rope.layer_types) == 48
    full, sliding = preset("gemma-3-12b-it:full_attention"), preset("Gemma_3_12B_IT:sliding_attention")
    assert (full.rope_type, full.factor, full.base, sliding.rope_type, sliding.base) == (
        "linear",
        8.0,
        1e6,
        "default",
        1e4,
    )
    legacy = RopeConfig.by_layer_type(GEMMA3_12B_TEXT)  # the config.json keys, read as transformers reads them
    assert dict(legacy) == dict(rope)
    with pytest.raises(UnknownLayerTypeError, match="layer_type='global' .*sliding_attention"):
        preset("gemma-3-12b-it:global")
    with pytest.raises(UnknownPresetError, match="one RoPE for every layer"):
        preset("llama-2-7b:full_attention")


transformers = pytest.importorskip("transformers")


def test_gemma3_preset_agrees_with_transformers_reading_of_its_config():
    config = transformers.Gemma3TextConfig(**{k: v for k, v in GEMMA3_12B_TEXT.items() if k != "model_type"})
    assert RopeConfig.by_layer_type(config) == preset("gemma-3-12b-it")


# (preset, transformers config class, fields that class's defaults share with the model).
# transformers documents these defaults as the model's own; Mistral's default max_position_embeddings
# (4096 * 32) and Phi-3's (the 4k model) differ from the cards, so only the head is compared there.
HEAD = ("head_dim", "rotary_dim", "base", "layout")
DEFAULTS = [
    ("gpt-neox-20b", "GPTNeoXConfig", HEAD + ("max_position_embeddings",)),
    ("gpt-j-6b", "GPTJConfig", HEAD + ("max_position_embeddings",)),
    ("llama-7b", "LlamaConfig", HEAD + ("max_position_embeddings",)),
    ("falcon-7b", "FalconConfig", HEAD + ("max_position_embeddings",)),
    ("gemma-7b", "GemmaConfig", HEAD + ("max_position_embeddings",)),
    ("mistral-7b-v0.1", "MistralConfig", HEAD),
    ("phi-3-mini-128k-instruct", "Phi3Config", ("head_dim", "rotary_dim", "base")),
    ("deepseek-v3", "DeepseekV3Config", ("head_dim", "rotary_dim", "base")),
]


@pytest.mark.parametrize(("name", "class_name", "fields"), DEFAULTS)
def test_preset_agrees_with_transformers_defaults(name, class_name, fields):
    config_class = getattr(transformers, class_name, None)
    if config_class is None:
        pytest.skip(f"transformers has no {class_name}")
    reference = RopeConfig.from_hf(config_class())
    ours = preset(name)
    for key in fields:
        assert getattr(ours, key) == getattr(reference, key), key
