"""The lab's settings: one object composed of ModelConfig and TrainConfig, validated at construction."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ropelab.encodings import EncodingError
from ropelab.lab import LabError
from ropelab.lab.experiment import DEFAULT, QUICK, LabSettings
from ropelab.lab.extend import extend_model, extended_config
from ropelab.lab.model import DecoderLM, ModelConfig
from ropelab.lab.train import TrainConfig

TINY = dict(num_layers=1, dim=16, num_heads=2, max_positions=16)


def test_settings_compose_the_model_and_training_configs_without_repeating_a_field():
    own = {f.name for f in dataclasses.fields(LabSettings)}
    assert not own & {f.name for f in dataclasses.fields(ModelConfig)}
    assert not own & {f.name for f in dataclasses.fields(TrainConfig)}
    assert isinstance(QUICK.model, ModelConfig) and isinstance(QUICK.train, TrainConfig)
    assert QUICK.length == QUICK.model.max_positions == 64 and DEFAULT.length == 128
    bigger = QUICK.override(model=dict(dim=128), train=dict(steps=7), passkey_trials=2)
    assert (bigger.model.dim, bigger.train.steps, bigger.passkey_trials, QUICK.model.dim) == (128, 7, 2, 64)
    assert bigger.to_dict()["dim"] == 128 and bigger.to_dict()["steps"] == 7  # results.json keeps its flat record


def test_settings_are_validated_when_built():
    with pytest.raises(EncodingError, match="encoding='fancy' is unknown"):
        DEFAULT.override(encodings=("rope", "fancy"))
    with pytest.raises(LabError, match="expected an even head width"):
        DEFAULT.override(model=dict(dim=30, num_heads=4))
    with pytest.raises(LabError, match="steps=0 is invalid"):
        DEFAULT.override(train=dict(steps=0))
    with pytest.raises(LabError, match="method='bogus' is unknown"):
        DEFAULT.override(extend_methods=("linear", "bogus"))
    with pytest.raises(LabError, match="eval_tokens=100 is invalid"):
        DEFAULT.override(eval_tokens=100)
    assert DEFAULT.override(finetune_steps=(0,)).finetune_config() is None


def test_extension_builds_a_new_model_and_leaves_the_trained_config_alone():
    trained = DecoderLM(ModelConfig(encoding="rope", **TINY))
    state = {"model_config": trained.cfg.to_dict(), "model": trained.state_dict()}
    extended = extend_model(state, "linear", 4)
    assert extended.cfg == extended_config(trained.cfg, "linear", 4)
    assert extended.cfg.encoding_options["rope"]["rope_parameters"]["rope_type"] == "linear"
    assert trained.cfg.encoding_options == {} and state["model_config"]["encoding_options"] == {}
    assert all(torch.equal(a, b) for a, b in zip(extended.state_dict().values(), trained.state_dict().values()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        extended.cfg.encoding_options = {}


def test_rope_base_and_rotary_fraction_reach_the_rope_encoding():
    settings = DEFAULT.override(model=TINY, rope_base=500.0, rotary_fraction=0.5)
    cfg = settings.rope_config()
    assert (cfg.base, cfg.rotary_dim, cfg.head_dim, cfg.max_position_embeddings) == (500.0, 4, 8, 16)
    model = DecoderLM(settings.model_config("rope"))
    assert model.encoding.cfg == cfg
    assert settings.model_config("alibi").encoding_options == {}  # other encodings are untouched
    assert DEFAULT.model_config("rope").encoding_options == {}  # plain RoPE stays the default
    assert settings.to_dict()["rope_base"] == 500.0
    for bad in (dict(rope_base=1.0), dict(rotary_fraction=0.0), dict(rotary_fraction=1.5)):
        with pytest.raises(LabError, match=next(iter(bad))):
            DEFAULT.override(model=TINY, **bad)


def test_lab_cli_takes_rope_base_and_rotary_fraction():
    import argparse

    from ropelab.lab.cli import _settings, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["lab", "train", "--encoding", "rope", "--rope-base", "1e6", "--rotary-fraction", "0.5"])
    settings = _settings(args, DEFAULT)
    assert (settings.rope_base, settings.rotary_fraction) == (1e6, 0.5)
