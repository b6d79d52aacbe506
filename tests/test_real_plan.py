"""The plan of an extend run, made from the config before any weight loads: exact parameter, weight,
gradient and optimizer bytes against independent meta-device builds of published configs; a run that
cannot fit is refused in one line naming what would fit; ``--plan`` stops before loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from real_families import PUBLISHED, build_family  # noqa: E402
from real_helpers import extend_refuses  # noqa: E402

from ropelab.cli import main  # noqa: E402
from ropelab.real.plan import GIB, plan_run  # noqa: E402


def _config(name: str):
    from transformers import CONFIG_MAPPING

    data = dict(PUBLISHED[name]["config"])
    return CONFIG_MAPPING[data.pop("model_type")](**data)


def _meta(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _meta_counts(config) -> tuple[int, int]:
    """(parameters, LoRA adapter parameters at rank 8 on q/k/v/o) counted here, independently of the plan."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    unique = {id(p): p.numel() for p in model.parameters()}  # tied embeddings once
    adapters = sum(
        8 * (m.in_features + m.out_features)
        for n, m in model.named_modules()
        if n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")
    )
    return sum(unique.values()), adapters


# published parameter counts, at the precision the model cards state them
CARD_BILLIONS = {"llama-3.1-8b": 8.03, "qwen2.5-7b": 7.61}


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b", "gemma-3-12b"])
def test_plan_bytes_are_exact_against_a_meta_device_build(name):
    config = _config(name)
    count, adapters = _meta_counts(config)
    if name in CARD_BILLIONS:
        assert count // 10**7 / 100 == CARD_BILLIONS[name]  # the cards truncate to 2 decimals
    common = dict(device="cpu", evaluation_tokens=4096, evaluation_forwards=1, available=10**15, rate=1e12)
    plan = plan_run(config, weights_dtype="bfloat16", **common)
    assert (plan.parameters, plan.weights, plan.training_state) == (count, 2 * count, 0)
    full = plan_run(config, weights_dtype="bfloat16", training="full", window=1024, **common)
    tensors = len({id(p) for p in _meta(config).parameters()})  # AdamW keeps a float32 step count per tensor
    assert (full.trainable, full.weights, full.training_state) == (
        count,
        4 * count,
        12 * count + 4 * tensors,
    )  # fp32 master; grad 4 + AdamW 8
    fsdp = plan_run(config, weights_dtype="bfloat16", training="fsdp", world_size=8, window=1024, **common)
    shards = sum(-(-p.shape[0] // 8) * p[0].numel() for p in {id(p): p for p in _meta(config).parameters()}.values())
    assert fsdp.training_state == 12 * shards + 4 * tensors  # rank 0's ceil(d0 / 8) rows of every parameter
    lora = plan_run(config, weights_dtype="bfloat16", training="lora", window=1024, **common)
    # LongLoRA's recipe (ropelab.real.finetune.LoraSettings): the adapters, and the parameters named embed or norm
    named = {n: p.numel() for n, p in _meta(config).named_parameters() if "embed" in n or "norm" in n}
    assert lora.trainable == adapters + sum(named.values())
    targets = sum(
        1 for n, _ in _meta(config).named_modules() if n.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")
    )
    assert lora.training_state == 12 * lora.trainable + 4 * (2 * targets + len(named))


def test_llama_8b_full_finetune_does_not_fit_one_80gb_gpu_and_the_plan_says_what_would():
    plan = plan_run(
        _config("llama-3.1-8b"),
        device="cuda",
        weights_dtype="bfloat16",
        evaluation_tokens=32768,
        evaluation_forwards=3,
        kv_tokens=32768,
        training="full",
        window=4096,
        steps=80,
        available=80 * GIB,
        rate=1e15,
    )
    assert not plan.fits and plan.peak_evaluation < 80 * GIB < plan.peak_training
    assert any("LoRA" in line for line in plan.advice) and any("FSDP over" in line for line in plan.advice)


def _folder(tmp_path: Path) -> Path:
    return build_family("llama-3.1", tmp_path / "m")


def test_plan_only_prints_the_plan_and_loads_nothing(tmp_path, capsys):
    folder = _folder(tmp_path)
    (folder / "model.safetensors").unlink()  # a config alone plans: no weight is read
    out = tmp_path / "out"
    assert main(["extend", "--model", str(folder), "--plan", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "Plan on cpu" in text and "before any weight is loaded" in text and "ships llama3 x8" in text
    assert "T = 512" in text and "T0 = 32" in text and not out.exists()


def test_the_plan_is_of_the_fine_tune_asked_for_its_windows_and_its_lora(tmp_path):
    """extend's plan counts the run's own windows per step and LoRA settings (plan_run's, not its defaults)."""
    from ropelab.real import extend
    from ropelab.real.finetune import LoraSettings

    folder = _folder(tmp_path)
    common = dict(finetune="pose", finetune_window=256, plan_only=True, out=None, echo=lambda line: None)

    def planned(**options):
        return extend(str(folder), **common, **options).plan

    one, four = planned(), planned(finetune_batch=4)
    assert four.training_activations > 3 * one.training_activations  # four windows of a step held, not one
    lora, plain = planned(finetune_weights="lora"), planned(finetune_weights="lora", lora_trainable=("none",))
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(folder)
    common_plan = dict(device="cpu", weights_dtype="bfloat16", evaluation_tokens=1024, evaluation_forwards=1)
    for plan, settings in ((lora, LoraSettings()), (plain, LoraSettings(trainable=()))):
        expected = plan_run(config, training="lora", lora=settings, window=256, **common_plan)
        assert plan.trainable == expected.trainable
    assert plain.trainable < lora.trainable  # embeddings and norms not trained


def test_a_run_that_cannot_fit_is_refused_in_one_line_naming_what_would(tmp_path, capsys):
    err = _bad(tmp_path, capsys, ["--model", str(_folder(tmp_path)), "--device-memory", "0.001"])
    assert "does not fit" in err and "GiB available" in err


def test_extend_api_returns_a_typed_result(tmp_path):
    from ropelab.real import ExtendResult, extend

    folder = _folder(tmp_path)
    result = extend(str(folder), methods=("linear",), passkey_keys=0, bin_width=64, out=None, echo=lambda line: None)
    assert isinstance(result, ExtendResult) and result.report is None
    assert result.trained_length == 512 and result.target == 1024 and result.plan.fits
    assert set(result.measurements["methods"]) == {"extrapolate", "linear"}
    positions, losses = result.loss_curve("linear")
    assert positions[:2] == [0, 64] and len(losses) == 1024 // 64
    assert set(result.ppl("extrapolate")) == {"[0, T/2)", "[T/2, T)", "[T, 1024)"}
    assert result.verdict.best == "linear" and "lowest perplexity" in result.verdict.reason
    assert result.prediction["methods"]["linear"]["starts_from"].startswith(
        "the pretraining RoPE (base 500000) at T0 = 32"
    )


def _bad(tmp_path, capsys, args) -> str:
    return extend_refuses(capsys, tmp_path / "bad-out", args)


def test_a_rope_key_ropelab_cannot_read_is_named(tmp_path, capsys):
    folder = _folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["rope_parameters"]["mystery_scale"] = 2.0  # a key no rope type reads
    (folder / "config.json").write_text(json.dumps(config))
    assert "mystery_scale" in _bad(tmp_path, capsys, ["--model", str(folder)])


def test_a_tokenizer_that_contradicts_the_model_is_refused(tmp_path, capsys):
    folder = _folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 100  # fewer embeddings than the tokenizer has tokens
    (folder / "config.json").write_text(json.dumps(config))
    err = _bad(tmp_path, capsys, ["--model", str(folder)])
    assert "vocab_size" in err and "tokenizer" in err


def test_the_time_estimate_counts_every_window_of_a_step():
    """extend's estimate (and progress) counts one training task per window a step trains, not one per step."""
    from dataclasses import replace

    from ropelab.real.api import _tasks
    from ropelab.real.finetune import FinetuneSettings
    from ropelab.real.stages import Settings

    settings = Settings(target=1024, methods=("linear",), passkey_lengths=())
    one = FinetuneSettings(steps=10, window=256, target=1024)

    def training(tuning):
        return sum(kind == "train" for kind, _ in _tasks(settings, tuning, ("linear", "yarn")))

    assert training(one) == 2 * 10 and training(replace(one, batch=4)) == 2 * 10 * 4
