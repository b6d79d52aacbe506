"""RopeConfig: reading every transformers form, round trips, and clear errors for bad input."""

import json

import pytest
from hf_reference import llama_config

from ropelab import RopeConfig, RopeConfigError


def test_reads_transformers_config_object():
    config = llama_config(
        64,
        {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        131072,
    )
    cfg = RopeConfig.from_hf(config)
    assert (cfg.rope_type, cfg.base, cfg.factor, cfg.head_dim, cfg.rotary_dim) == ("llama3", 500000.0, 8.0, 64, 64)
    assert cfg.original_max_position_embeddings == 8192 and cfg.max_position_embeddings == 131072


def test_reads_legacy_rope_scaling_with_type_alias_and_top_level_theta():
    legacy = {
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "rope_theta": 1e6,
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "linear", "factor": 2.0},
    }
    cfg = RopeConfig.from_hf(legacy)
    assert (cfg.rope_type, cfg.factor, cfg.base, cfg.head_dim) == ("linear", 2.0, 1e6, 128)


def test_reads_rotary_pct_rotary_dim_and_partial_factor():
    neox = {
        "model_type": "gpt_neox",
        "hidden_size": 6144,
        "num_attention_heads": 64,
        "rotary_pct": 0.25,
        "rotary_emb_base": 10000,
        "max_position_embeddings": 2048,
    }
    assert RopeConfig.from_hf(neox).rotary_dim == 24
    gptj = {"model_type": "gptj", "n_embd": 4096, "n_head": 16, "rotary_dim": 64, "n_positions": 2048}
    cfg = RopeConfig.from_hf(gptj)
    assert (cfg.head_dim, cfg.rotary_dim, cfg.layout, cfg.max_position_embeddings) == (256, 64, "interleaved", 2048)
    phi = {"hidden_size": 2560, "num_attention_heads": 32, "partial_rotary_factor": 0.4}
    assert RopeConfig.from_hf(phi).rotary_dim == 32
    nested = {
        "head_dim": 128,
        "rope_parameters": {"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.5},
    }
    assert RopeConfig.from_hf(nested).rotary_dim == 64


def test_deepseek_rope_interleave_flag_means_interleaved_layout():
    from transformers import DeepseekV3Config

    cfg = RopeConfig.from_hf(DeepseekV3Config(rope_interleave=True))
    assert cfg.layout == "interleaved" and cfg.rotary_dim == DeepseekV3Config().qk_rope_head_dim
    assert RopeConfig.from_hf(DeepseekV3Config(rope_interleave=False)).layout == "half"


def test_hy_v4_vl_text_is_interleaved_mrope_over_deinterleaved_rope_channels():
    """HY-V4-VL's text model (transformers 5.25): Qwen3-VL's interleaved M-RoPE (sections [12, 10, 10]
    unless given) over the qk_rope_head_dim channels, which its attention de-interleaves as DeepSeek-V3's
    rope_interleave does (half-split tables)."""
    from ropelab.integrations.hf.verify import _table_layout

    raw = {
        "model_type": "hy_v4_vl_text",
        "head_dim": 256,
        "qk_rope_head_dim": 64,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
    }
    cfg = RopeConfig.from_hf(raw)
    assert (cfg.head_dim, cfg.rotary_dim, cfg.layout) == (64, 64, "interleaved")
    assert (cfg.mrope_section, cfg.mrope_composition) == ((12, 10, 10), "interleaved")
    assert _table_layout(cfg, raw, 64, "rotary_emb") == "half"
    given = RopeConfig.from_hf({**raw, "rope_parameters": {**raw["rope_parameters"], "mrope_section": [16, 8, 8]}})
    assert given.mrope_section == (16, 8, 8)


def test_reads_config_json_path_and_round_trips(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "head_dim": 128,
                "max_position_embeddings": 32768,
                "rope_parameters": {
                    "rope_type": "yarn",
                    "rope_theta": 1e6,
                    "factor": 4.0,
                    "original_max_position_embeddings": 8192,
                    "beta_fast": 32,
                },
            }
        )
    )
    cfg = RopeConfig.from_hf(path)
    assert cfg.rope_type == "yarn" and cfg.source == str(path)
    assert RopeConfig.from_hf(cfg.to_hf()) == cfg
    partial = RopeConfig(head_dim=80, rotary_dim=24, layout="interleaved")
    assert RopeConfig.from_hf(partial.to_hf()) == partial


def test_phi3_top_level_original_length_has_priority():
    cfg = RopeConfig.from_hf(
        {
            "hidden_size": 3072,
            "num_attention_heads": 32,
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {
                "type": "longrope",
                "short_factor": [1.0] * 48,
                "long_factor": [2.0] * 48,
                "original_max_position_embeddings": 999,
            },
        }
    )
    assert cfg.original_max_position_embeddings == 4096 and cfg.factor == 32.0


@pytest.mark.parametrize(
    "fields,key",
    [
        ({"head_dim": 64, "rope_type": "rotary"}, "rope_type"),
        ({"head_dim": 64, "rope_type": "linear", "factor": 0.5}, "factor"),
        ({"head_dim": 64, "rope_type": "linear"}, "factor"),
        ({"head_dim": 64, "rope_type": "yarn", "factor": 4.0}, "original_max_position_embeddings"),
        (
            {"head_dim": 64, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
            "original_max_position_embeddings",
        ),
        ({"head_dim": 64, "rotary_dim": 31}, "rotary_dim"),
        ({"head_dim": 64, "rotary_dim": 96}, "rotary_dim"),
        ({"head_dim": 64, "layout": "zigzag"}, "layout"),
        (
            {
                "head_dim": 64,
                "rope_type": "longrope",
                "original_max_position_embeddings": 4096,
                "short_factor": [1.0] * 32,
                "long_factor": [1.0] * 31,
            },
            "long_factor",
        ),
        (
            {
                "head_dim": 64,
                "rope_type": "longrope",
                "original_max_position_embeddings": 4096,
                "short_factor": [1.0] * 3,
                "long_factor": [1.0] * 32,
            },
            "short_factor",
        ),
        ({"head_dim": 64, "base": float("nan")}, "rope_theta"),
    ],
)
def test_invalid_configs_name_the_key_and_what_is_accepted(fields, key):
    with pytest.raises(RopeConfigError, match=key) as error:
        RopeConfig(**fields)
    assert "expected" in str(error.value)


def test_invalid_hf_dicts_raise_config_error():
    with pytest.raises(RopeConfigError, match="rope_type='su2'"):
        RopeConfig.from_hf({"head_dim": 64, "rope_scaling": {"type": "su2"}})
    with pytest.raises(RopeConfigError, match="factor"):
        RopeConfig.from_hf({"head_dim": 64, "rope_scaling": {"rope_type": "dynamic", "factor": 0.9}})
    with pytest.raises(RopeConfigError, match="head_dim"):
        RopeConfig.from_hf({"rope_theta": 10000})
    with pytest.raises(RopeConfigError, match="head_dim=None"):  # no head count to divide by
        RopeConfig.from_hf({"hidden_size": 64, "num_attention_heads": 0})


def test_config_json_that_is_not_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{ this is not json")
    with pytest.raises(RopeConfigError, match="not JSON"):
        RopeConfig.from_hf(path)
    with pytest.raises(RopeConfigError, match="no such file"):
        RopeConfig.from_hf(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(RopeConfigError, match="JSON object"):
        RopeConfig.from_hf(tmp_path / "list.json")


def test_every_user_error_shares_one_base_and_keeps_its_builtin_base():
    from ropelab import errors

    for name in errors.__all__:
        error_type = getattr(errors, name)
        assert issubclass(error_type, errors.RopelabError), name
    assert issubclass(errors.RopeConfigError, ValueError)
    assert issubclass(errors.PatchError, RuntimeError)
    assert issubclass(errors.LabError, ValueError)
