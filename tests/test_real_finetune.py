"""The real-model fine-tune on tiny random models: PoSE windows, one causal sequence across the position
jump (with gradient checkpointing on and off), a fine-tune that resumes to the same weights and refuses
a checkpoint of another run, LoRA through peft merged into the hand-over, the hand-over folder in plain
transformers, the named-key passkey on a KV cache, and bad input. Across processes:
tests/test_real_distributed.py."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import replace

import pytest
import torch

pytest.importorskip("transformers")

from real_helpers import extend_refuses, tiny_gpt2, tiny_llama  # noqa: E402

from ropelab.cli import main  # noqa: E402
from ropelab.errors import RealModelError  # noqa: E402
from ropelab.real.evaluate import use_rope  # noqa: E402
from ropelab.real.finetune import (  # noqa: E402
    FinetuneSettings,
    PoseWindow,
    finetune,
    pose_window,
    window_logits,
    window_loss,
)
from ropelab.real.handover import write_model_folder  # noqa: E402
from ropelab.real.load import load_model  # noqa: E402
from ropelab.real.passkey import haystack, passkey_records, plan_needles  # noqa: E402
from ropelab.real.stages import hf_config, method_config  # noqa: E402

T, N = 128, 256
needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="LoRA runs through peft")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", max_positions=T)


def _documents(vocab: int, count: int = 4, length: int = 4 * 32 + 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.randint(0, vocab, (length,), generator=generator) for _ in range(count)]


# ---------------------------------------------------------------- PoSE windows
def test_pose_window_two_chunks_true_targets_positions_over_the_target_range():
    document = torch.arange(1000, 1400)  # token i+1 follows token i: every target is its input + 1
    generator = torch.Generator().manual_seed(0)
    largest, firsts = 0, set()
    for _ in range(300):
        w = pose_window(document, 64, 1024, generator)
        assert w.inputs.shape == w.positions.shape == w.targets.shape == (64,)
        assert torch.equal(w.targets, w.inputs + 1)
        jumps = (w.positions.diff() != 1).nonzero()
        assert w.positions[0] == 0 and jumps.numel() <= 1  # two chunks: one skip at most
        first = int(jumps[0]) + 1 if jumps.numel() else None
        if first is not None:
            firsts.add(first)
            assert w.inputs[first] > w.inputs[first - 1]  # the second chunk's text comes later in the document
        assert w.positions.max() < 1024 and bool((w.positions.diff() > 0).all())
        largest = max(largest, int(w.positions.max()))
    assert largest > 900  # relative distances near N are trained from 64-token windows
    assert max(firsts) <= 32 and min(firsts) >= 1


def test_pose_window_needs_a_document_longer_than_the_window():
    with pytest.raises(RealModelError, match="longer than it"):
        pose_window(torch.arange(64), 64, 256, torch.Generator())


def test_the_skip_reaches_the_rotary_and_the_second_chunk_still_sees_the_first(folder):
    """The model sees the window's position ids (a skip changes the second chunk's logits: the relative
    distances changed) and one causal sequence (not two packed ones: the first chunk's tokens matter)."""
    from ropelab.real.finetune import PoseWindow

    model = load_model(str(folder)).model
    use_rope(model, method_config(load_model(str(folder)).rope, "linear", T, N))
    inputs = torch.randint(0, model.config.vocab_size, (32,), generator=torch.Generator().manual_seed(1))
    near, far = torch.arange(32), torch.arange(32)
    far[16:] += 150

    def logits(ids, positions):
        with torch.no_grad():
            return model(input_ids=ids[None], position_ids=positions[None]).logits[0, 16:]

    assert (logits(inputs, near) - logits(inputs, far)).abs().max() > 1e-4
    changed = inputs.clone()
    changed[:8] = (changed[:8] + 1) % model.config.vocab_size
    assert (logits(inputs, far) - logits(changed, far)).abs().max() > 1e-4
    loss = window_loss(model, PoseWindow(inputs, far, inputs.roll(-1)))
    assert loss.ndim == 0 and torch.isfinite(loss)


# ---------------------------------------------------------------- one causal sequence across the jump
def _chunk_two_logits(model, inputs, positions):
    return window_logits(model, inputs[None], positions[None])[0, 16:]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_second_chunk_attends_to_the_first_in_training_with_checkpointing_on_and_off(folder, checkpointing):
    """A training forward (train mode, no KV cache: what gradient checkpointing forces) still sees the two
    chunks as one sequence: changing chunk 1's tokens moves chunk 2's logits. Without the explicit mask the
    same call reads the jump as two packed sequences (the trap window_logits avoids)."""
    from ropelab.real.finetune import _checkpointing

    model = load_model(str(folder)).model
    use_rope(model, method_config(load_model(str(folder)).rope, "linear", T, N))
    inputs = torch.randint(0, model.config.vocab_size, (32,), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(32)
    positions[16:] += 100
    changed = inputs.clone()
    changed[:16] = (changed[:16] + 1) % model.config.vocab_size
    calls, saved = [], []
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda *_: calls.append(1))
    model.train()
    _checkpointing(model, checkpointing)
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            logits = _chunk_two_logits(model, inputs, positions)
        calls.clear()
        logits.sum().backward()  # with checkpointing, backward runs each layer's forward again
        assert len(calls) == (1 if checkpointing else 0)
        assert (sum(saved) < 100_000) == checkpointing  # values kept for backward: 200k without, 32k with
        with torch.no_grad():
            moved = (_chunk_two_logits(model, changed, positions) - logits).abs().max().item()
            packed = model(input_ids=inputs[None], position_ids=positions[None], use_cache=False).logits[0, 16:]
            packed_changed = model(input_ids=changed[None], position_ids=positions[None], use_cache=False).logits
    finally:
        _checkpointing(model, False)
        model.eval()
    assert moved > 1e-3
    assert (packed - packed_changed[0, 16:]).abs().max().item() == 0.0  # transformers 5.23 without a mask


def test_gradient_checkpointing_changes_nothing_but_memory(folder):
    base = load_model(str(folder))
    cfg = method_config(base.rope, "linear", T, N)
    documents = _documents(base.model.config.vocab_size)
    runs = []
    for checkpointing in (False, True):
        model = load_model(str(folder)).model
        use_rope(model, cfg)
        settings = FinetuneSettings(
            steps=3, window=32, target=N, lr=3e-3, warmup=1, autocast=False, gradient_checkpointing=checkpointing
        )
        runs.append((finetune(model, documents, settings, method="linear"), model.state_dict()))
    assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-6)
    for name, weight in runs[0][1].items():
        assert torch.allclose(weight, runs[1][1][name], atol=1e-6), name


# ---------------------------------------------------------------- fine-tune: learns, resumes exactly
def test_finetune_lowers_the_loss_and_an_interrupted_run_resumes_to_the_same_weights(folder, tmp_path):
    base = load_model(str(folder))
    cfg = method_config(base.rope, "linear", T, N)
    documents = _documents(base.model.config.vocab_size)
    settings = FinetuneSettings(steps=6, window=32, target=N, lr=3e-3, warmup=1, checkpoint_every=2, autocast=False)

    straight = load_model(str(folder)).model
    use_rope(straight, cfg)
    losses = finetune(straight, documents, settings, method="linear", checkpoint=tmp_path / "a")
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["latest.json", "step-000006"]

    interrupted = load_model(str(folder)).model
    use_rope(interrupted, cfg)
    finetune(interrupted, documents, replace(settings, steps=3), method="linear", checkpoint=tmp_path / "b")
    # stopped after step 3; the last checkpoint is step 3's
    resumed = load_model(str(folder)).model  # a fresh process: weights from the checkpoint only
    use_rope(resumed, cfg)
    again = finetune(resumed, documents, settings, method="linear", checkpoint=tmp_path / "b")
    assert again == losses
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_batches_of_windows_average_their_windows(folder):
    """A step of B windows is the mean over all their tokens: its loss is the mean of the windows' losses."""
    from ropelab.real.finetune import pose_batch

    model = load_model(str(folder)).model
    documents = _documents(model.config.vocab_size)
    settings = FinetuneSettings(steps=1, window=32, target=N, batch=3)
    batch = pose_batch(documents, settings, torch.Generator().manual_seed(0))
    assert batch.inputs.shape == batch.positions.shape == batch.targets.shape == (3, 32)
    with torch.no_grad():
        together = window_loss(model, batch)
        alone = [
            window_loss(model, PoseWindow(batch.inputs[i], batch.positions[i], batch.targets[i])) for i in range(3)
        ]
    assert together.item() == pytest.approx(torch.stack(alone).mean().item(), rel=1e-5)


# ---------------------------------------------------------------- resume refuses another run
def test_a_checkpoint_of_another_run_is_refused_naming_what_differs(folder, tmp_path):
    model = load_model(str(folder)).model
    documents = _documents(model.config.vocab_size)
    settings = FinetuneSettings(steps=1, window=32, target=N, autocast=False)
    path = tmp_path / "c"
    finetune(model, documents, settings, method="linear", checkpoint=path)
    saved = (path / "latest.json").read_bytes()
    model = load_model(str(folder)).model  # the weights it started from
    cases = [
        (dict(method="yarn"), "belongs to another fine-tune (method 'linear' there, 'yarn' here)"),
        (dict(settings=replace(settings, lr=1e-3)), "belongs to another fine-tune (lr 2e-05 there, 0.001 here)"),
        (dict(model=load_model(str(tiny_llama(tmp_path / "other", max_positions=T, seed=1))).model), "another model"),
        (dict(documents=_documents(model.config.vocab_size, count=5)), "was trained on other data"),
    ]
    for change, needle in cases:
        run = {"model": model, "documents": documents, "settings": settings, "method": "linear", **change}
        with pytest.raises(RealModelError, match=re.escape(needle)) as error:
            finetune(run["model"], run["documents"], run["settings"], method=run["method"], checkpoint=path)
        assert len(str(error.value).splitlines()) == 1 and str(path) in str(error.value)
    assert (path / "latest.json").read_bytes() == saved  # nothing written
    # what may change on resume: more steps, checkpointing, how often it saves
    again = replace(settings, steps=2, gradient_checkpointing=True, checkpoint_every=7)
    assert len(finetune(model, documents, again, method="linear", checkpoint=path)) == 2

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "latest.json").write_text("{not json")
    with pytest.raises(RealModelError, match="corrupt"):
        finetune(model, documents, settings, method="linear", checkpoint=tmp_path / "bad")
    (tmp_path / "file").write_bytes(b"not a checkpoint")
    with pytest.raises(RealModelError, match="a file, expected a checkpoint folder"):
        finetune(model, documents, settings, method="linear", checkpoint=tmp_path / "file")


def test_kept_measurements_of_other_evaluation_settings_are_refused(folder, tmp_path):
    from ropelab.real.finetune import check_finetune_run
    from ropelab.real.stages import Settings

    loaded = load_model(str(folder))
    tuning = FinetuneSettings(steps=2, window=32, target=N)
    settings = Settings(target=N, passkey_keys=2)
    identities = check_finetune_run(loaded.model, loaded.tokenizer, settings, tuning, ("linear",), tmp_path)
    (tmp_path / "linear-step1.json").write_text(json.dumps({"identity": identities["linear"], "measurement": {}}))
    check_finetune_run(loaded.model, loaded.tokenizer, settings, tuning, ("linear",), tmp_path)  # the same run
    with pytest.raises(RealModelError, match=re.escape("other evaluation settings (passkey_keys 2 there, 1 here)")):
        check_finetune_run(
            loaded.model, loaded.tokenizer, replace(settings, passkey_keys=1), tuning, ("linear",), tmp_path
        )
    (tmp_path / "linear-step1.json").write_text(json.dumps({"bins": []}))  # a file of the older format
    with pytest.raises(RealModelError, match="not a ropelab measurement"):
        check_finetune_run(loaded.model, loaded.tokenizer, settings, tuning, ("linear",), tmp_path)


# ---------------------------------------------------------------- LoRA through peft
@needs_peft
def test_lora_trains_adapters_embeddings_and_norms_and_hands_over_merged_weights(folder, tmp_path):
    from transformers import AutoModelForCausalLM

    from ropelab.real.finetune import LoraSettings, lora_parameter_count

    loaded = load_model(str(folder))
    cfg = method_config(loaded.rope, "linear", T, N)
    use_rope(loaded.model, cfg)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    lora = LoraSettings()
    settings = FinetuneSettings(
        steps=4, window=32, target=N, lr=3e-3, warmup=1, autocast=False, lora=lora, checkpoint_every=2
    )
    documents = _documents(loaded.model.config.vocab_size)
    losses = finetune(loaded.model, documents, settings, method="linear", checkpoint=tmp_path / "lora")
    assert sum(losses[-2:]) < sum(losses[:2])
    after = loaded.model.state_dict()
    assert set(after) == set(before)  # a plain model again: no adapter weights left
    assert not any("lora" in type(m).__name__.lower() for m in loaded.model.modules())
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    expected = {k for k in after if any(w in k for w in ("embed", "norm", *lora.targets))}
    assert changed == expected  # the MLP and lm_head are untouched (untied here)
    # the adapters' parameter count, as peft builds them, matches the count without peft
    from ropelab.real.finetune import _attach_lora

    wrapped = _attach_lora(load_model(str(folder)).model, lora, seed=0)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert trainable == lora_parameter_count(load_model(str(folder)).model, lora)["total"]
    # the checkpoint keeps only what trains, not the frozen base
    kept = sum(f.stat().st_size for f in (tmp_path / "lora").rglob("*.distcp"))
    assert kept < 3 * 4 * sum(p.numel() for p in loaded.model.parameters())

    target = write_model_folder(loaded.model, loaded.tokenizer, hf_config(loaded.model.config, cfg), tmp_path / "out")
    plain = AutoModelForCausalLM.from_pretrained(target).eval()
    ids = torch.randint(0, loaded.model.config.vocab_size, (1, N), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (plain(ids).logits - loaded.model(ids).logits).abs().max().item() <= 1e-4


@needs_peft
def test_merged_lora_weights_compute_what_the_adapters_did(folder):
    from ropelab.real.finetune import LoraSettings, _attach_lora, _detach_lora

    model = load_model(str(folder)).model
    wrapped = _attach_lora(model, LoraSettings(rank=4), seed=0)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:  # zero at initialisation: give the adapters something to merge
                parameter.normal_(0, 0.05)
    ids = torch.randint(0, model.config.vocab_size, (1, 48), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        adapted = wrapped(input_ids=ids).logits
        merged_model = _detach_lora(wrapped, merge=True)
        merged = merged_model(input_ids=ids).logits
        plain = load_model(str(folder)).model(input_ids=ids).logits
    assert merged_model is model and not hasattr(model, "peft_config")
    assert (adapted - merged).abs().max().item() <= 1e-5
    assert (merged - plain).abs().max().item() > 1e-3


@needs_peft
def test_an_interrupted_lora_run_resumes_to_the_same_weights(folder, tmp_path):
    from ropelab.real.finetune import LoraSettings

    base = load_model(str(folder))
    cfg = method_config(base.rope, "linear", T, N)
    documents = _documents(base.model.config.vocab_size)
    settings = FinetuneSettings(
        steps=4, window=32, target=N, lr=3e-3, warmup=1, checkpoint_every=2, autocast=False, lora=LoraSettings()
    )
    straight = load_model(str(folder)).model
    use_rope(straight, cfg)
    losses = finetune(straight, documents, settings, method="linear", checkpoint=tmp_path / "a")
    first = load_model(str(folder)).model
    use_rope(first, cfg)
    finetune(first, documents, replace(settings, steps=2), method="linear", checkpoint=tmp_path / "b")
    resumed = load_model(str(folder)).model  # the base model as loaded: the checkpoint holds what trains
    use_rope(resumed, cfg)
    assert finetune(resumed, documents, settings, method="linear", checkpoint=tmp_path / "b") == losses
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_lora_parameter_count_of_published_shapes_on_the_meta_device():
    """LongLoRA's recipe on Llama-3.1-8B's published shape (meta-llama/Llama-3.1-8B config.json: hidden 4096,
    intermediate 14336, 32 layers, 32 heads, 8 KV heads, vocab 128256, untied): adapters 8 x (in + out) on
    q, k, v, o of every layer, plus the embedding and the 65 RMSNorm weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from ropelab.real.finetune import LoraSettings, lora_parameter_count

    config = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    count = lora_parameter_count(model, LoraSettings())
    per_layer = 8 * ((4096 + 4096) + (4096 + 1024) + (4096 + 1024) + (4096 + 4096))
    assert count["adapters"] == 32 * per_layer == 6_815_744
    assert count["full"] == 128256 * 4096 + (2 * 32 + 1) * 4096


# ---------------------------------------------------------------- hand-over
@pytest.mark.parametrize("method", ["linear", "yarn", "ntk"])
def test_handed_over_folder_loads_in_plain_transformers_with_ropelabs_logits(folder, tmp_path, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = load_model(str(folder))
    cfg = method_config(loaded.rope, method, T, N)
    use_rope(loaded.model, cfg)
    finetune(
        loaded.model,
        _documents(loaded.model.config.vocab_size),
        FinetuneSettings(steps=2, window=32, target=N, lr=1e-3),
        method=method,
    )  # weights that differ from the source folder's
    target = write_model_folder(loaded.model, loaded.tokenizer, hf_config(loaded.model.config, cfg), tmp_path / "out")
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in target.iterdir()
    }
    plain = AutoModelForCausalLM.from_pretrained(target).eval()
    assert AutoTokenizer.from_pretrained(target)("def f").input_ids == loaded.tokenizer("def f").input_ids
    ids = torch.randint(0, loaded.model.config.vocab_size, (1, N), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        difference = (plain(ids).logits - loaded.model(ids).logits).abs().max().item()
    assert difference <= 1e-4
    source = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        assert (source(ids).logits - plain(ids).logits).abs().max().item() > 1e-3  # the fine-tuned weights went over


# ---------------------------------------------------------------- named-key passkey on a KV cache
def test_named_keys_asked_on_the_cache_equal_a_fresh_forward_of_prefix_and_question(folder):
    import random

    from ropelab.real import passkey

    loaded = load_model(str(folder))
    model, tokenizer = loaded.model, loaded.tokenizer
    lengths, depths = (128, 256), (0.0, 0.5, 1.0)
    needles, reserve = plan_needles(tokenizer, lengths, depths, random.Random(0))
    ids = haystack(tokenizer, needles, max(lengths) - reserve)
    assert ids.numel() == max(lengths) - reserve
    for needle in needles:  # each needle sits where it was wanted (at the next filler sentence start)
        text = tokenizer.decode(ids[needle.start :])
        assert text.lstrip().startswith(f"The pass key of the {needle.name} is {needle.key}.")
        assert 0 <= needle.start - needle.offset <= 24
    assert {cell for n in needles for cell in n.cells} == {(L, d) for L in lengths for d in depths}

    asked = []
    original = passkey._ask

    def spy(model, cache, tokenizer, needle, prefix):
        question = passkey._tokens(tokenizer, " " + passkey.PASSKEY_NAMED_QUESTION.format(name=needle.name))
        answer = passkey._tokens(tokenizer, f" {needle.key}")
        full = torch.cat((ids[:prefix], torch.tensor(question + answer)))
        with torch.no_grad():
            fresh = model(input_ids=full[None]).logits[0, prefix + len(question) - 1 : -1].argmax(-1)
        hit = original(model, cache, tokenizer, needle, prefix)
        assert cache.get_seq_length() == prefix  # cropped back for the next question
        asked.append(hit == torch.equal(fresh, torch.tensor(answer)))
        return hit

    passkey._ask = spy
    try:
        records = passkey_records(model, tokenizer, lengths, depths, trials=1, seed=0)
    finally:
        passkey._ask = original
    assert asked and all(asked)
    assert len(records) == len(lengths) * len(depths)


# ---------------------------------------------------------------- CLI: fine-tune, hand-over, bad input
def test_extend_finetune_cli_writes_table_claims_and_a_loadable_folder(folder, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out, handed = tmp_path / "out", tmp_path / "handed"
    argv = [
        "extend",
        "--model",
        str(folder),
        "--bin",
        "16",
        "--methods",
        "linear,yarn",
        "--passkey-lengths",
        "128,256",
        "--passkey-depths",
        "0,1",
        "--passkey-keys",
        "1",
        "--finetune",
        "pose",
        "--finetune-steps",
        "4",
        "--finetune-window",
        "32",
        "--write-config",
        str(handed),
        "--out",
        str(out),
        "--quiet",
        "--dtype",
        "float32",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    table = results["finetune"]["table"]
    assert set(table) == {"linear", "yarn"} and set(table["linear"]) == {"0", "2", "4"}
    assert set(table["linear"]["4"]) == {"[0, T/2)", "[T/2, T)", "[T, 256)"}
    assert {"linear+pose", "yarn+pose"} <= set(results["measure"]["methods"])
    claims = {c["claim"]: c for c in results["claims"]}
    assert {
        "PI fine-tuned closes half the in-context gap",
        "PI fine-tuned holds past T",
        "YaRN fine-tuned no worse than zero-shot",
    } <= set(claims)
    assert all(c["held"] in (True, False) for name, c in claims.items() if "fine-tuned" in name)
    assert len(results["finetune"]["loss"]["linear"]) == 4
    assert (out / "checkpoints" / "linear" / "latest.json").is_file()
    page = (out / "report.html").read_text()
    assert "Fine-tuning (PoSE)" in page and "from_pretrained" in page and page.count("data:image/png;base64,") == 4
    assert AutoModelForCausalLM.from_pretrained(handed).config.rope_parameters["rope_type"] in (
        "linear",
        "yarn",
        "default",
    )

    # a rerun into the same --out with other evaluation settings or another model is refused, nothing written
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other = tiny_llama(tmp_path / "other", max_positions=T, seed=1)
    at = argv.index("--write-config")
    del argv[at : at + 2]
    for model, keys, needle in (
        (folder, "2", "other evaluation settings (passkey_keys 1 there, 2 here"),
        (other, "1", "is of another model"),
    ):
        argv[argv.index("--model") + 1] = str(model)
        argv[argv.index("--passkey-keys") + 1] = keys
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == kept


@needs_peft
def test_extend_finetune_cli_with_lora_hands_over_merged_weights(folder, tmp_path):
    from transformers import AutoModelForCausalLM

    out, handed = tmp_path / "out", tmp_path / "handed"
    argv = [
        "extend",
        "--model",
        str(folder),
        "--methods",
        "linear",
        "--passkey-keys",
        "0",
        "--finetune",
        "pose",
        "--finetune-methods",
        "linear",
        "--finetune-steps",
        "2",
        "--finetune-window",
        "32",
        "--finetune-lr",
        "3e-3",
        "--finetune-weights",
        "lora",
        "--lora-rank",
        "4",
        "--gradient-checkpointing",
        "--write-config",
        str(handed),
        "--out",
        str(out),
        "--quiet",
        "--dtype",
        "float32",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["finetune"]["settings"]["lora"]["rank"] == 4
    assert results["finetune"]["settings"]["gradient_checkpointing"] is True
    assert not any("adapter" in p.name for p in handed.iterdir())  # merged: a plain model folder
    plain = AutoModelForCausalLM.from_pretrained(handed)
    source = AutoModelForCausalLM.from_pretrained(folder)
    if results["handover"]["method"] == "linear+pose":
        q = "model.layers.0.self_attn.q_proj.weight"
        assert not torch.equal(plain.state_dict()[q], source.state_dict()[q])
        mlp = "model.layers.0.mlp.up_proj.weight"
        assert torch.equal(plain.state_dict()[mlp], source.state_dict()[mlp])


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--finetune", "pose", "--finetune-window", str(T + 1)], "--finetune-window 129 is invalid"),
        (["--finetune", "pose", "--finetune-window", "0"], "--finetune-window 0 is invalid"),
        (["--finetune", "pose", "--finetune-steps", "-1"], "--finetune-steps -1 is invalid"),
        (["--finetune", "pose", "--finetune-methods", "dynamic"], "'dynamic' cannot be fine-tuned"),
        (["--finetune", "pose", "--finetune-batch", "0"], "--finetune-batch 0 is invalid"),
        (["--finetune", "pose", "--finetune-weights", "lora", "--lora-rank", "0"], "--lora-rank 0 is invalid"),
        (["--finetune", "pose", "--finetune-weights", "lora", "--lora-rank", "-2"], "--lora-rank -2 is invalid"),
        (
            [
                "--finetune",
                "pose",
                "--finetune-weights",
                "lora",
                "--lora-targets",
                "q_proj,qkv_proj",
                "--passkey-keys",
                "0",
            ],
            "--lora-targets qkv_proj is invalid: LlamaForCausalLM has no linear layer of that name",
        ),
    ],
)
def test_bad_finetune_input_exits_2_with_one_line_and_writes_nothing(folder, tmp_path, capsys, argv, needle):
    extend_refuses(capsys, tmp_path / "out", ["--model", str(folder), *argv], needle)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--finetune", "none"], "--finetune none is invalid under torchrun (2 processes)"),
        (
            ["--finetune", "pose", "--finetune-batch", "3"],
            "--finetune-batch 3 is invalid: it must split evenly over the 2",
        ),
        (
            ["--finetune", "pose", "--finetune-batch", "2", "--finetune-weights", "lora"],
            "lora is invalid under torchrun",
        ),
    ],
)
def test_bad_torchrun_input_exits_2_before_joining_the_group(folder, tmp_path, capsys, monkeypatch, argv, needle):
    """What torchrun sets for each process (WORLD_SIZE): the checks run before any process group is joined."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    extend_refuses(capsys, tmp_path / "out", ["--model", str(folder), *argv], needle)
    assert not torch.distributed.is_initialized()


def test_write_config_into_a_non_empty_folder_needs_force(folder, tmp_path, capsys):
    handed = tmp_path / "handed"
    handed.mkdir()
    (handed / "keep.txt").write_text("mine")
    capsys.readouterr()
    code = main(
        ["extend", "--model", str(folder), "--write-config", str(handed), "--out", str(tmp_path / "out"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not empty: pass --force" in err and len(err.splitlines()) == 1
    assert [p.name for p in handed.iterdir()] == ["keep.txt"] and not (tmp_path / "out").exists()


def test_finetune_a_model_without_rope_exits_2(tmp_path, capsys):
    gpt2 = tiny_gpt2(tmp_path / "gpt2")
    capsys.readouterr()
    code = main(["extend", "--model", str(gpt2), "--finetune", "pose", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no rotary position embedding" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
