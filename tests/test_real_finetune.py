"""Fine-tuning and hand-over on tiny random models: PoSE windows, a fine-tune that resumes to the same weights, the
hand-over folder in plain transformers, the named-key passkey on a KV cache, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from real_helpers import tiny_gpt2, tiny_llama  # noqa: E402

from ropelab.cli import main  # noqa: E402
from ropelab.errors import RealModelError  # noqa: E402
from ropelab.real.evaluate import use_rope  # noqa: E402
from ropelab.real.finetune import FinetuneSettings, finetune, pose_window, window_loss  # noqa: E402
from ropelab.real.handover import write_model_folder  # noqa: E402
from ropelab.real.load import load_model  # noqa: E402
from ropelab.real.passkey import haystack, passkey_records, plan_needles  # noqa: E402
from ropelab.real.stages import hf_config, method_config  # noqa: E402

T, N = 128, 256


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


# ---------------------------------------------------------------- fine-tune: learns, resumes exactly
def test_finetune_lowers_the_loss_and_an_interrupted_run_resumes_to_the_same_weights(folder, tmp_path):
    base = load_model(str(folder))
    cfg = method_config(base.rope, "linear", T, N)
    documents = _documents(base.model.config.vocab_size)
    settings = FinetuneSettings(steps=6, window=32, target=N, lr=3e-3, warmup=1, checkpoint_every=2, autocast=False)

    straight = load_model(str(folder)).model
    use_rope(straight, cfg)
    losses = finetune(straight, documents, settings, method="linear", checkpoint=tmp_path / "a.pt")
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2])

    interrupted = load_model(str(folder)).model
    use_rope(interrupted, cfg)
    finetune(
        interrupted,
        documents,
        FinetuneSettings(**{**settings.__dict__, "steps": 3}),
        method="linear",
        checkpoint=tmp_path / "b.pt",
    )  # stops after step 3; the last checkpoint is step 3's
    resumed = load_model(str(folder)).model  # a fresh process: weights from the checkpoint only
    use_rope(resumed, cfg)
    again = finetune(resumed, documents, settings, method="linear", checkpoint=tmp_path / "b.pt")
    assert again == losses
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_another_finetune_is_refused(folder, tmp_path):
    model = load_model(str(folder)).model
    settings = FinetuneSettings(steps=1, window=32, target=N, autocast=False)
    finetune(model, _documents(model.config.vocab_size), settings, method="linear", checkpoint=tmp_path / "c.pt")
    with pytest.raises(RealModelError, match="another fine-tune"):
        finetune(model, _documents(model.config.vocab_size), settings, method="yarn", checkpoint=tmp_path / "c.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RealModelError, match="corrupt"):
        finetune(model, _documents(model.config.vocab_size), settings, method="linear", checkpoint=tmp_path / "bad.pt")


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
def test_extend_finetune_cli_writes_table_claims_and_a_loadable_folder(folder, tmp_path):
    from transformers import AutoModelForCausalLM

    out, handed = tmp_path / "out", tmp_path / "handed"
    code = main(
        [
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
    )
    assert code == 0
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
    assert (out / "checkpoints" / "linear.pt").is_file()
    page = (out / "report.html").read_text()
    assert "Fine-tuning (PoSE)" in page and "from_pretrained" in page and page.count("data:image/png;base64,") == 4
    assert AutoModelForCausalLM.from_pretrained(handed).config.rope_parameters["rope_type"] in (
        "linear",
        "yarn",
        "default",
    )


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--finetune", "pose", "--finetune-window", str(T + 1)], "--finetune-window 129 is invalid"),
        (["--finetune", "pose", "--finetune-window", "0"], "--finetune-window 0 is invalid"),
        (["--finetune", "pose", "--finetune-steps", "-1"], "--finetune-steps -1 is invalid"),
        (["--finetune", "pose", "--finetune-methods", "dynamic"], "'dynamic' cannot be fine-tuned"),
    ],
)
def test_bad_finetune_input_exits_2_with_one_line_and_writes_nothing(folder, tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["extend", "--model", str(folder), *argv, "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


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
