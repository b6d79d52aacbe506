"""The GGUF hand-over: the keys per method, refusals, and llama.cpp itself agreeing with ropelab.

The llama.cpp tests load the written GGUF in llama-cpp-python (a source build installed by ``make
install``) and compare its loss at every position with :func:`ropelab.real.evaluate.token_losses`
under the same RoPE, on a tiny random Llama / Qwen2 trained at T = 64 and served at N = 128. Without
llama-cpp-python they skip; with ``CI=true`` a missing llama.cpp is a failure.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from real_helpers import byte_tokenizer, extend_refuses, tiny_gemma3  # noqa: E402

from ropelab.cli import main  # noqa: E402
from ropelab.config import RopeConfig  # noqa: E402
from ropelab.errors import RealModelError  # noqa: E402
from ropelab.frequencies import rope_frequencies  # noqa: E402
from ropelab.real.evaluate import corpus_documents, token_losses, use_rope  # noqa: E402
from ropelab.real.gguf_export import (  # noqa: E402
    check_gguf_path,
    gguf_architecture,
    gguf_rope,
    hand_over_gguf,
    llama_cpp_frequencies,
    serving_lines,
    write_gguf,
)
from ropelab.real.llama_cpp_eval import llama_cpp_available, llama_cpp_token_losses  # noqa: E402
from ropelab.real.load import load_model  # noqa: E402
from ropelab.real.stages import method_config  # noqa: E402

T, N = 64, 128
METHODS = ("extrapolate", "linear", "ntk", "yarn", "llama3")
# Per-token loss gap allowed between llama.cpp (F16 KV cache, float32 kernels) and ropelab (float32) on the
# tiny model with F32 tensors; its losses are ~8 nats with a spread of several nats between methods.
TOKEN_GAP = 0.06
PPL_RTOL = 0.005


def needs_llama_cpp():
    if llama_cpp_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("llama-cpp-python is not installed (CI=true: make install builds it)")
    pytest.skip("llama-cpp-python is not installed (make install builds it)")


def _tiny(folder, model_type: str = "llama", seed: int = 0):
    """A random 2-layer model (head_dim 16, GQA 4/2) trained at T, with weights large enough (init 0.3) that
    attention is sharp and the RoPE matters, saved with a byte-level BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = byte_tokenizer(folder)
    torch.manual_seed(seed)
    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[
        model_type
    ]
    config = config_class(
        vocab_size=len(tokenizer) + 16,  # rows past the tokenizer (written as unused [PAD] tokens); Qwen2's adds one
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=T,
        rope_parameters={"rope_type": "default", "rope_theta": 100.0},
        tie_word_embeddings=model_type == "qwen2",
        initializer_range=0.3,
    )
    model = model_class(config)
    if model_type == "qwen2":  # give the q/k/v biases values, so a dropped or misplaced bias shows
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load_model(str(_tiny(tmp_path_factory.mktemp("gguf") / "llama")))


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 300, (N + 1,), generator=torch.Generator().manual_seed(0))


def _ropelab(loaded, cfg, ids):
    use_rope(loaded.model, cfg)
    with torch.inference_mode():
        return token_losses(loaded.model, ids).double()


def _ppl(losses):
    return math.exp(losses.mean().item())


# ---- what is written, without llama.cpp --------------------------------------------------------------------


def test_keys_per_method():
    base = RopeConfig(head_dim=64, base=100_000.0, max_position_embeddings=8192)
    written = {m: gguf_rope(method_config(base, m, 8192, 16384)) for m in METHODS}
    assert written["extrapolate"].summary() == {
        "llama.rope.freq_base": 100_000.0,
        "llama.rope.scaling.type": "none",
        "llama.context_length": 8192,
    }
    assert written["linear"].summary()["llama.rope.scaling.factor"] == 2.0
    assert written["linear"].summary()["llama.rope.scaling.type"] == "linear"
    ntk = written["ntk"].summary()
    assert ntk["llama.rope.scaling.type"] == "none"
    assert ntk["llama.rope.freq_base"] == pytest.approx(100_000.0 * 2 ** (64 / 62))
    yarn = written["yarn"].summary()
    assert yarn["llama.rope.scaling.type"] == "yarn"
    assert yarn["llama.rope.scaling.original_context_length"] == 8192
    assert yarn["llama.rope.scaling.attn_factor"] == pytest.approx(1.0)  # llama.cpp multiplies 1 + 0.1 ln s itself
    assert set(written["llama3"].tensors) == {"rope_freqs.weight"}
    assert written["llama3"].tensors["rope_freqs.weight"].shape == (32,)
    for m in ("linear", "ntk", "yarn", "llama3"):
        assert written[m].context_length == 16384


def test_llama_cpp_reading_of_each_method_is_ropelab_frequencies():
    base = RopeConfig(head_dim=64, base=100_000.0, max_position_embeddings=8192)
    for m in METHODS:
        cfg = method_config(base, m, 8192, 16384)
        ours, magnitude = rope_frequencies(cfg, 16384)
        theirs, their_magnitude = llama_cpp_frequencies(gguf_rope(cfg), 64)
        torch.testing.assert_close(theirs, ours, rtol=1e-7, atol=0)  # rope_freqs is stored as float32
        assert their_magnitude == pytest.approx(magnitude, rel=1e-12)
    yarn = method_config(base, "yarn", 8192, 16384)
    assert llama_cpp_frequencies(gguf_rope(yarn), 64)[1] == pytest.approx(1 + 0.1 * math.log(2))


def test_yarn_explicit_attention_factor_is_divided_by_llama_cpp_own():
    cfg = method_config(RopeConfig(head_dim=64, base=1e4, max_position_embeddings=4096), "yarn", 4096, 16384)
    cfg = cfg.replace(attention_factor=1.0)  # transformers: cos and sin unscaled
    written = gguf_rope(cfg).summary()
    assert written["llama.rope.scaling.attn_factor"] == pytest.approx(1 / (1 + 0.1 * math.log(4)))
    assert llama_cpp_frequencies(gguf_rope(cfg), 64)[1] == pytest.approx(1.0)


def test_longrope_writes_both_factor_tensors():
    short = tuple(1.0 + 0.01 * i for i in range(8))
    long = tuple(1.0 + 0.5 * i for i in range(8))
    cfg = RopeConfig(
        head_dim=16,
        rope_type="longrope",
        base=1e4,
        factor=4.0,
        max_position_embeddings=512,
        original_max_position_embeddings=128,
        short_factor=short,
        long_factor=long,
    )
    written = gguf_rope(cfg)
    assert written.keys["llama.rope.scaling.type"][0] == "longrope"
    np.testing.assert_allclose(written.tensors["rope_factors_long.weight"], long, rtol=1e-6)
    np.testing.assert_allclose(written.tensors["rope_factors_short.weight"], short, rtol=1e-6)
    assert written.keys["llama.rope.scaling.attn_factor"][0] == pytest.approx(
        math.sqrt(1 + math.log(4) / math.log(128))
    )
    # llama.cpp takes the short factors when served within the original length, like transformers
    ours, _ = rope_frequencies(cfg, 100)
    torch.testing.assert_close(llama_cpp_frequencies(written, 16, context=100)[0], ours, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "cfg, needle",
    [
        (RopeConfig(head_dim=64, rope_type="dynamic", factor=2.0, max_position_embeddings=4096), "'dynamic'"),
        (RopeConfig(head_dim=64, rotary_dim=32, max_position_embeddings=4096), "rotary_dim 32 of head_dim 64"),
        (
            RopeConfig(
                head_dim=64,
                rope_type="yarn",
                factor=4.0,
                original_max_position_embeddings=4096,
                max_position_embeddings=16384,
                beta_fast=16.0,
            ),
            "beta_fast=16.0",
        ),
        (RopeConfig(head_dim=64, rope_type="proportional", rotated_pairs=8), "'proportional'"),
    ],
)
def test_methods_llama_cpp_cannot_express_are_refused(cfg, needle):
    with pytest.raises(RealModelError, match="--write-gguf") as error:
        gguf_rope(cfg)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_architecture_names():
    class Config:
        def __init__(self, model_type, **kw):
            self.model_type = model_type
            self.__dict__.update(kw)

    assert gguf_architecture(Config("llama")) == "llama"
    assert gguf_architecture(Config("mistral", sliding_window=None)) == "llama"
    assert gguf_architecture(Config("qwen2")) == "qwen2"
    with pytest.raises(RealModelError, match="writes GGUFs for llama, mistral, qwen2"):
        gguf_architecture(Config("gemma3"))  # a GGUF name, not written by ropelab
    with pytest.raises(RealModelError, match="has no architecture of that name"):
        gguf_architecture(Config("rwkv_unheard_of"))
    with pytest.raises(RealModelError, match="sliding_window=4096"):
        gguf_architecture(Config("mistral", sliding_window=4096))


def test_output_path_checks(tmp_path):
    with pytest.raises(RealModelError, match="does not exist"):
        check_gguf_path(tmp_path / "nowhere" / "m.gguf", force=False)
    with pytest.raises(RealModelError, match="ending in .gguf"):
        check_gguf_path(tmp_path / "m.bin", force=False)
    (tmp_path / "m.gguf").write_bytes(b"old")
    with pytest.raises(RealModelError, match="pass --force"):
        check_gguf_path(tmp_path / "m.gguf", force=False)
    assert check_gguf_path(tmp_path / "m.gguf", force=True) == tmp_path / "m.gguf"
    (tmp_path / "Modelfile").write_text("FROM ./other.gguf\n")
    check_gguf_path(tmp_path / "n.gguf", force=False)  # write_gguf alone writes no Modelfile
    with pytest.raises(RealModelError, match="Modelfile"):
        check_gguf_path(tmp_path / "n.gguf", force=False, modelfile=True)


def test_written_file_holds_the_model_with_interleaved_q_and_k(llama, tmp_path):
    cfg = method_config(llama.rope, "yarn", T, N)
    path, record = write_gguf(llama.model, llama.tokenizer, llama.model.config, cfg, tmp_path / "m.gguf", dtype="f32")
    reader = gguf.GGUFReader(path)
    assert reader.fields["llama.rope.scaling.type"].contents() == "yarn"
    assert reader.fields["llama.context_length"].contents() == N
    assert reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == llama.model.config.vocab_size
    tensors = {t.name: t for t in reader.tensors}
    assert record["tensors"] == len(tensors) == 2 * 9 + 3
    q = llama.model.model.layers[0].self_attn.q_proj.weight.detach()
    written = torch.from_numpy(np.array(tensors["blk.0.attn_q.weight"].data))
    head = 16
    # pair i of head h: transformers rows h*16 + i and h*16 + 8 + i become llama.cpp rows h*16 + 2i, + 2i + 1
    torch.testing.assert_close(written[2 * 3], q[3])
    torch.testing.assert_close(written[2 * 3 + 1], q[3 + head // 2])
    torch.testing.assert_close(written[head + 2 * 5 + 1], q[head + 5 + head // 2])
    v = llama.model.model.layers[1].self_attn.v_proj.weight.detach()
    torch.testing.assert_close(torch.from_numpy(np.array(tensors["blk.1.attn_v.weight"].data)), v)


def test_write_gguf_refuses_a_bad_request_and_writes_nothing(llama, tmp_path):
    dynamic = method_config(llama.rope, "dynamic", T, N)
    with pytest.raises(RealModelError, match="'dynamic'"):
        write_gguf(llama.model, llama.tokenizer, llama.model.config, dynamic, tmp_path / "d.gguf")
    with pytest.raises(RealModelError, match="not read from a GGUF"):
        write_gguf(
            llama.model, llama.tokenizer, llama.model.config, llama.rope.as_is, tmp_path / "s.gguf", dtype="source"
        )
    assert list(tmp_path.iterdir()) == []


def test_serving_lines_and_modelfile(llama, tmp_path):
    cfg = method_config(llama.rope, "linear", T, N)
    lines = []
    record = hand_over_gguf(
        llama.model,
        llama.tokenizer,
        llama.model.config,
        cfg,
        tmp_path / "tiny.gguf",
        source=llama.source,
        fine_tuned=False,
        folder="hf-folder",
        echo=lines.append,
    )
    assert record["dtype"] == "f16"  # a folder input: the model's tensors
    assert (tmp_path / "Modelfile").read_text() == f"FROM ./tiny.gguf\nPARAMETER num_ctx {N}\n"
    assert record["serve"] == serving_lines(tmp_path / "tiny.gguf", N, "hf-folder")
    assert f"llama-server -m {tmp_path / 'tiny.gguf'} -c {N}" in record["serve"]
    assert f"vllm serve hf-folder --max-model-len {N}" in record["serve"]
    assert any(line.startswith("llama-perplexity") for line in record["serve"])
    assert "llama.rope.scaling.type=linear" in lines[0]


# ---- the CLI's bad input: one line, exit 2, nothing written --------------------------------------------------


def _cli_fails(capsys, tmp_path, argv, *needles):
    return extend_refuses(capsys, tmp_path / "out", [*argv, "--bin", "16", "--passkey-keys", "0"], *needles)


def test_cli_refuses_a_gguf_path_whose_folder_does_not_exist(llama, tmp_path, capsys):
    target = tmp_path / "nowhere" / "m.gguf"
    _cli_fails(capsys, tmp_path, ["--model", llama.source["folder"], "--write-gguf", str(target)], "does not exist")
    assert not target.parent.exists()


def test_cli_refuses_an_existing_file_without_force(llama, tmp_path, capsys):
    target = tmp_path / "m.gguf"
    target.write_bytes(b"mine")
    _cli_fails(capsys, tmp_path, ["--model", llama.source["folder"], "--write-gguf", str(target)], "--force")
    assert target.read_bytes() == b"mine"


def test_cli_refuses_a_method_llama_cpp_cannot_express(llama, tmp_path, capsys):
    target = tmp_path / "m.gguf"
    argv = ["--model", llama.source["folder"], "--methods", "yarn,dynamic", "--write-gguf", str(target)]
    _cli_fails(capsys, tmp_path, argv, "'dynamic'", "llama.cpp has no dynamic NTK")
    assert not target.exists()


def test_cli_refuses_an_architecture_llama_cpp_has_no_name_for(tmp_path, capsys):
    folder = tiny_gemma3(tmp_path / "gemma3")
    target = tmp_path / "m.gguf"
    _cli_fails(capsys, tmp_path, ["--model", str(folder), "--write-gguf", str(target)], "model_type='gemma3_text'")
    assert not target.exists()


# ---- llama.cpp itself ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_llama_cpp_computes_ropelab_losses(llama, ids, tmp_path, method):
    """llama.cpp on the written GGUF (F32 tensors) gives ropelab's loss at every position, as-is at T and
    every method at N = 2T, while the methods differ from each other by far more than that gap."""
    needs_llama_cpp()
    context = T if method == "extrapolate" else N
    cfg = method_config(llama.rope, method, T, context)
    path, _ = write_gguf(llama.model, llama.tokenizer, llama.model.config, cfg, tmp_path / "m.gguf", dtype="f32")
    ours = _ropelab(llama, cfg, ids[: context + 1])
    theirs = llama_cpp_token_losses(path, ids[: context + 1], context)
    assert (theirs - ours).abs().max().item() < TOKEN_GAP
    assert _ppl(theirs[context // 2 :]) == pytest.approx(_ppl(ours[context // 2 :]), rel=PPL_RTOL)
    other = _ropelab(llama, method_config(llama.rope, "linear" if method != "linear" else "ntk", T, N), ids)
    assert (other[:context] - ours).abs().max().item() > 10 * TOKEN_GAP


@pytest.mark.slow
def test_yarn_attention_factor_convention_is_what_makes_llama_cpp_agree(llama, ids, tmp_path):
    """A YaRN with transformers' attention_factor = 1: the written attn_factor 1 / (1 + 0.1 ln 2) makes
    llama.cpp agree; the GGUF of plain YaRN (attn_factor 1: llama.cpp's own 1 + 0.1 ln 2) does not."""
    needs_llama_cpp()
    yarn = method_config(llama.rope, "yarn", T, N)
    unscaled = yarn.replace(attention_factor=1.0)
    ours = _ropelab(llama, unscaled, ids)
    right, _ = write_gguf(llama.model, llama.tokenizer, llama.model.config, unscaled, tmp_path / "a.gguf", dtype="f32")
    plain, _ = write_gguf(llama.model, llama.tokenizer, llama.model.config, yarn, tmp_path / "b.gguf", dtype="f32")
    assert (llama_cpp_token_losses(right, ids, N) - ours).abs().max().item() < TOKEN_GAP
    assert (llama_cpp_token_losses(plain, ids, N) - ours).abs().max().item() > 10 * TOKEN_GAP


@pytest.mark.slow
@pytest.mark.parametrize(
    "dtype, gap", [("f16", 2 * TOKEN_GAP), ("bf16", 0.5), ("q8_0", 1.0)]
)  # quantized weights vs float32
def test_llama_cpp_loads_each_tensor_type(llama, ids, tmp_path, dtype, gap):
    needs_llama_cpp()
    cfg = method_config(llama.rope, "yarn", T, N)
    path, record = write_gguf(llama.model, llama.tokenizer, llama.model.config, cfg, tmp_path / "m.gguf", dtype=dtype)
    ours, theirs = _ropelab(llama, cfg, ids), llama_cpp_token_losses(path, ids, N)
    assert record["dtype"] == dtype
    assert (theirs - ours).abs().max().item() < gap
    assert _ppl(theirs[T:]) == pytest.approx(_ppl(ours[T:]), rel=0.05)


@pytest.mark.slow
def test_qwen2_with_biases_and_tied_embeddings(tmp_path, ids):
    needs_llama_cpp()
    loaded = load_model(str(_tiny(tmp_path / "qwen2", "qwen2")))
    cfg = method_config(loaded.rope, "yarn", T, N)
    path, record = write_gguf(
        loaded.model, loaded.tokenizer, loaded.model.config, cfg, tmp_path / "q.gguf", dtype="f32"
    )
    assert record["architecture"] == "qwen2"
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(path).tensors}  # tied: llama.cpp reuses token_embd
    ours, theirs = _ropelab(loaded, cfg, ids), llama_cpp_token_losses(path, ids, N)
    assert (theirs - ours).abs().max().item() < TOKEN_GAP


@pytest.mark.slow
def test_a_gguf_input_hands_over_its_own_tensors(llama, ids, tmp_path):
    """The path of the embedded model: a GGUF read by transformers, written back with the source's
    tensors byte for byte and the method's metadata, agrees with ropelab in llama.cpp."""
    needs_llama_cpp()
    first, _ = write_gguf(
        llama.model, llama.tokenizer, llama.model.config, llama.rope.as_is, tmp_path / "source.gguf", dtype="q8_0"
    )
    source = load_model(str(first))
    cfg = method_config(source.rope, "linear", T, N)
    (tmp_path / "out").mkdir()
    record = hand_over_gguf(
        source.model,
        source.tokenizer,
        source.model.config,
        cfg,
        tmp_path / "out" / "linear.gguf",
        source=source.source,
        fine_tuned=False,
        echo=lambda line: None,
    )
    assert record["dtype"] == "source"
    before = {t.name: bytes(t.data) for t in gguf.GGUFReader(first).tensors}
    after = {t.name: bytes(t.data) for t in gguf.GGUFReader(record["path"]).tensors}
    assert after == before
    ours, theirs = _ropelab(source, cfg, ids), llama_cpp_token_losses(record["path"], ids, N)
    assert (theirs - ours).abs().max().item() < 0.5  # Q8_0 kernels quantize activations to 8 bits as well
    assert _ppl(theirs[T:]) == pytest.approx(_ppl(ours[T:]), rel=0.02)
    # fine-tuned weights of a GGUF input: the model's tensors (q and k back to interleaved rows), the source's
    # tokenizer and sizes
    with torch.no_grad():
        source.model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    tuned = hand_over_gguf(
        source.model,
        source.tokenizer,
        source.model.config,
        cfg,
        tmp_path / "out" / "tuned.gguf",
        source=source.source,
        fine_tuned=True,
        dtype="f32",
        force=True,
        echo=lambda line: None,
    )
    reader = gguf.GGUFReader(tuned["path"])
    assert tuned["dtype"] == "f32" and reader.fields["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert reader.fields["general.file_type"].contents() == 0
    ours, theirs = _ropelab(source, cfg, ids), llama_cpp_token_losses(tuned["path"], ids, N)
    assert (theirs - ours).abs().max().item() < TOKEN_GAP


@pytest.mark.slow
def test_llama_cpp_tokenizes_text_as_transformers(llama, tmp_path):
    needs_llama_cpp()
    import llama_cpp

    cfg = method_config(llama.rope, "linear", T, N)
    path, _ = write_gguf(llama.model, llama.tokenizer, llama.model.config, cfg, tmp_path / "m.gguf", dtype="f32")
    text = "def f(x):\n    return x + 1\nThe pass key is 12345. The grass is green."
    engine = llama_cpp.Llama(str(path), n_ctx=N, verbose=False)
    assert engine.tokenize(text.encode(), add_bos=False, special=False) == llama.tokenizer(text)["input_ids"]


@pytest.mark.slow
def test_extend_cli_writes_a_gguf_that_llama_cpp_runs_with_ropelab_numbers(llama, tmp_path, capsys):
    """``ropelab extend --write-gguf``: the best method's GGUF and Modelfile, the serving lines printed, and
    llama.cpp's perplexity on the GGUF equal to the one the report states for that method."""
    needs_llama_cpp()
    out, target = tmp_path / "out", tmp_path / "serve" / "tiny.gguf"
    target.parent.mkdir()
    argv = ["extend", "--model", llama.source["folder"], "--methods", "linear,yarn", "--bin", "16"]
    argv += ["--passkey-keys", "0", "--dtype", "float32", "--out", str(out), "--write-gguf", str(target), "--quiet"]
    assert main(argv + ["--write-config", str(tmp_path / "hf")]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    best = results["verdict"]["best"]
    assert results["gguf"]["method"] == best and results["gguf"]["dtype"] == "f16"
    assert (tmp_path / "serve" / "Modelfile").read_text() == f"FROM ./tiny.gguf\nPARAMETER num_ctx {N}\n"
    assert f"llama-server -m {target} -c {N}" in printed and f"--max-model-len {N}" in printed
    ids = corpus_documents(llama.tokenizer, N, 1)[0][0]
    theirs = llama_cpp_token_losses(target, ids, N, first=T)
    assert _ppl(theirs) == pytest.approx(results["measure"]["methods"][best]["ppl_past_T"], rel=PPL_RTOL)
