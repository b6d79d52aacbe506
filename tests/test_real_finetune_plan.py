"""The plan's fine-tune bytes against what the fine-tune really allocates.

Parameters, gradients and AdamW state exactly, for full weights, LoRA (through peft) and FSDP2 over 8
processes, on meta-device builds of two published configs (no weights, nothing allocated): torch's
own AdamW steps on the meta parameters, peft injects its adapters into the meta model, and FSDP2
shards it over a fake 8-process group. The training-step activations against the tensors autograd
really keeps (``saved_tensors_hooks``) on a Llama shape the formula was not fitted on. And the plan
names what fits for Llama-3.1-8B on an 80 GB GPU."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from real_families import PUBLISHED as PUBLISHED_CONFIGS  # noqa: E402

from ropelab.real.finetune import LoraSettings, _attach_lora, _checkpointing, window_logits  # noqa: E402
from ropelab.real.plan import GIB, finetune_bytes, model_shape, plan_bytes, plan_run  # noqa: E402

# config.json as published: the one copy in tests/data/published_configs.json (sources named there)
PUBLISHED = {"Llama-3.1-8B": "llama-3.1-8b", "Qwen2.5-7B": "qwen2.5-7b"}
PARAMETERS = {"Llama-3.1-8B": 8_030_261_248, "Qwen2.5-7B": 7_615_616_512}  # the model cards' counts


def published(name: str):
    from transformers import AutoConfig

    values = dict(PUBLISHED_CONFIGS[PUBLISHED[name]]["config"])
    return AutoConfig.for_model(values.pop("model_type"), **values)


def meta_model(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def adamw_state_bytes(model) -> int:
    """Bytes of the state torch's AdamW creates for ``model``'s trained parameters (one step on meta)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    for parameter in trained:
        parameter.grad = torch.empty_like(parameter)
    optimizer = torch.optim.AdamW(trained, lr=2e-5, betas=(0.9, 0.95), weight_decay=0.0)
    optimizer.step()
    return sum(
        (t.to_local() if hasattr(t, "to_local") else t).numel() * t.element_size()
        for state in optimizer.state.values()
        for t in state.values()
    )


def local_bytes(parameters) -> int:
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size() for p in parameters)


@pytest.fixture(scope="module", params=list(PUBLISHED))
def build(request):
    config = published(request.param)
    return request.param, config, model_shape(config)


def test_full_weights_bytes_are_the_meta_builds(build):
    name, config, shape = build
    model = meta_model(config)
    planned = finetune_bytes(shape, "full", weights_dtype="float32")
    assert shape.parameters == PARAMETERS[name] == sum(p.numel() for p in model.parameters())
    assert planned.weights == local_bytes(model.parameters())
    assert planned.gradients == local_bytes(model.parameters())  # a gradient per weight, its dtype
    assert planned.optimizer == adamw_state_bytes(model)


def test_lora_bytes_are_peft_on_the_meta_build(build):
    _, config, shape = build
    lora = LoraSettings()
    model = meta_model(config)
    wrapped = _attach_lora(model, lora, seed=0)  # peft's adapters, and LongLoRA's embeddings and norms
    trained = [p for p in wrapped.parameters() if p.requires_grad]
    planned = finetune_bytes(shape, "lora", lora=lora, weights_dtype="float32")
    assert planned.trainable == sum(p.numel() for p in trained)
    assert planned.trained_tensors == len(trained)
    assert planned.weights == local_bytes(wrapped.parameters())
    assert planned.gradients == local_bytes(trained)
    assert planned.optimizer == adamw_state_bytes(wrapped)
    untied_output = [n for n, p in wrapped.named_parameters() if n.endswith("lm_head.weight")]
    assert untied_output and not any(p.requires_grad for n, p in wrapped.named_parameters() if n in untied_output)


def test_fsdp_bytes_are_fsdp2_shards_over_8_processes(build):
    """Rank 0 of a fake 8-process group: FSDP2's own shards of the meta build, and AdamW over them."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.testing._internal.distributed.fake_pg import FakeStore

    from ropelab.real.distributed import decoder_layers

    _, config, shape = build
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=8)
    try:
        mesh = init_device_mesh("cpu", (8,))
        model = meta_model(config)
        for layer in decoder_layers(model):
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        planned = finetune_bytes(shape, "fsdp", world_size=8, weights_dtype="float32")
        shards = local_bytes(model.parameters())
        gathered = 2 * (shape.parameters - shape.layers * shape.layer_parameters) + 4 * shape.layer_parameters
        assert planned.weights == 4 * shape.parameters + shards + gathered  # the loaded model + shards + gathered
        assert planned.gradients == shards
        assert planned.optimizer == adamw_state_bytes(model)
    finally:
        dist.destroy_process_group()


def saved_bytes(config, tokens: int, *, lora: bool, bfloat16: bool, checkpointing: bool) -> int:
    """Bytes autograd keeps for backward in one training forward of ``tokens`` tokens (the fine-tune's own
    forward and loss, bfloat16 autocast), distinct tensors counted once, the parameters themselves not."""
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if bfloat16:
        model = model.to(torch.bfloat16)  # what FSDP's mixed precision gathers
    if lora:
        model = _attach_lora(model, LoraSettings(), seed=0)
    model.train()
    _checkpointing(model, checkpointing)
    parameters = {p.data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        if t.data_ptr() not in parameters:
            saved[(t.data_ptr(), t.dtype, tuple(t.shape), t.storage_offset())] = t.numel() * t.element_size()
        return t

    ids = torch.randint(0, config.vocab_size, (1, tokens))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = window_logits(model, ids, torch.arange(tokens)[None])
        F.cross_entropy(logits.flatten(0, 1).float(), ids.flatten())
    return sum(saved.values())


@pytest.mark.parametrize("training", ["full", "lora", "fsdp"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_activations_are_what_autograd_keeps(training, checkpointing):
    """On a Llama shape the per-layer constants were not fitted on (H 384, I 1280, 6 heads of 64, 3 KV
    heads, 3 layers): what the plan says the forward keeps, within 3% of the bytes autograd saves."""
    from transformers import LlamaConfig

    from ropelab.real.plan import training_activation_parts

    config = LlamaConfig(
        hidden_size=384,
        intermediate_size=1280,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=3,
        vocab_size=2048,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    shape = model_shape(config)
    tokens = 192
    measured = saved_bytes(
        config, tokens, lora=training == "lora", bfloat16=training == "fsdp", checkpointing=checkpointing
    )
    lora = LoraSettings()
    held = finetune_bytes(shape, "lora", lora=lora)
    adapters = (held.weights - 4 * shape.parameters) // 4 if training == "lora" else 0
    parts = training_activation_parts(shape, tokens, training, False, checkpointing, lora.rank, adapters)
    assert parts["saved"] == pytest.approx(measured, rel=0.03)
    assert (parts["recompute"] > 0) == checkpointing


def test_the_plan_for_llama_3_1_8b_on_80_gb_names_what_fits():
    config = published("Llama-3.1-8B")
    options = dict(
        device="cuda",
        weights_dtype="float32",
        evaluation_tokens=16384,
        evaluation_forwards=3,
        window=1024,
        steps=80,
        available=80 * GIB,
        rate=400e12,
    )
    full = plan_run(config, training="full", **options)
    assert not full.fits
    assert any("LoRA" in line for line in full.advice) and any("FSDP over" in line for line in full.advice)
    lora = plan_bytes(config, training="lora", **options)
    fsdp = plan_bytes(config, training="fsdp", world_size=8, batch=8, **options)
    assert lora.fits and fsdp.fits
    assert full.training_state == 32_121_044_992 + 64_242_091_148  # 4 P + (8 P + 4 x 291 tensors)
    assert fsdp.training_state == 4_015_130_624 + 8_030_262_412  # rank 0's shards: 4 S + (8 S + 4 x 291)
