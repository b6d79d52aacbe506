"""ropelab.real: chunked loss, ropelab's RoPE == transformers' own for every method, the written
config loads in plain transformers with the same logits, prediction, break point, fine-tuning."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytest.importorskip("transformers")

from real_helpers import tiny_gemma3, tiny_llama  # noqa: E402

from ropelab.cli import main  # noqa: E402
from ropelab.config import RopeConfig  # noqa: E402
from ropelab.io import portable_path  # noqa: E402
from ropelab.real.evaluate import passkey_tokens, token_losses, use_rope  # noqa: E402
from ropelab.real.load import LayerTypeExtension, load_config, load_model, resolve  # noqa: E402
from ropelab.real.shipped import Shipped  # noqa: E402
from ropelab.real.stages import AS_IS, METHODS, break_point, hf_config, method_config, predict  # noqa: E402

T, N = 128, 256


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", max_positions=T)


@pytest.fixture(scope="module")
def loaded(folder):
    return load_model(str(folder))


def _ids(n, vocab, seed=1):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def test_chunked_loss_equals_full_logits(loaded):
    model = loaded.model
    ids = _ids(N + 1, model.config.vocab_size)
    with torch.no_grad():
        full = torch.nn.functional.cross_entropy(model(ids[None, :-1]).logits[0].float(), ids[1:], reduction="none")
    chunked = token_losses(model, ids, chunk=37)
    assert chunked.shape == (N,)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", (AS_IS,) + METHODS)
def test_ropelab_evaluation_matches_transformers_for_each_method(folder, loaded, method):
    """The numbers of ropelab's exact RoPE come out of transformers' own implementation of that config."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = method_config(loaded.rope, method, T, N)
    ids = _ids(N + 1, loaded.model.config.vocab_size, seed=2)
    use_rope(loaded.model, cfg)
    with torch.no_grad():
        ours = loaded.model(ids[None, :-1]).logits
    reference = AutoModelForCausalLM.from_pretrained(
        folder, config=LlamaConfig(**hf_config(loaded.model.config, cfg))
    ).eval()
    assert not any(type(m).__name__ == "HFRotaryAdapter" for m in reference.modules())
    with torch.no_grad():
        theirs = reference(ids[None, :-1]).logits
    assert (ours - theirs).abs().max().item() <= 1e-4
    torch.testing.assert_close(token_losses(loaded.model, ids), token_losses(reference, ids), atol=1e-4, rtol=1e-4)


def test_scaling_changes_logits_past_T(loaded):
    """Guard for the test above: the methods really differ from the model as-is at N."""
    ids = _ids(N + 1, loaded.model.config.vocab_size, seed=3)
    use_rope(loaded.model, method_config(loaded.rope, AS_IS, T, N))
    plain = token_losses(loaded.model, ids)
    use_rope(loaded.model, method_config(loaded.rope, "linear", T, N))
    assert (token_losses(loaded.model, ids) - plain).abs().max() > 1e-3


def test_dynamic_keeps_trained_length_as_original(loaded):
    """transformers issue #25306: a dynamic config whose original length is the new max scales nothing."""
    cfg = method_config(loaded.rope, "dynamic", T, N)
    assert cfg.max_position_embeddings == T and cfg.factor == 2


def test_prediction_as_is_breaks_at_T_and_pi_never():
    rope = RopeConfig(head_dim=64, base=1e5, max_position_embeddings=8192)
    p = predict(Shipped.from_rope(rope), 8192, 16384, (AS_IS, "linear", "yarn"))
    assert p["methods"][AS_IS]["break"] == 8192
    assert p["methods"]["linear"]["break"] is None and p["methods"]["linear"]["out_of_range_at_target"] == 0
    assert p["critical_dimension"] == 2 * math.ceil(32 * math.log(8192 / (2 * math.pi)) / math.log(1e5))
    assert len(p["out_of_range_pairs"]) == 32 - p["critical_dimension"] // 2


def test_break_point_definition():
    # width 10, T = 40: the hard stretch inside T (bins 1-2) is content, not a break; bin 5 alone is
    # smoothed away (and, unsmoothed, is not followed by a second bin); the rise from bin 9 on is the break
    bins = [2.0, 3.5, 3.5, 2.0, 2.0, 3.4, 2.0, 2.0, 2.0, 3.0, 3.1, 3.2, 3.3, 3.3]
    assert break_point(bins, 10, 40, reference=2.0, margin=0.5, smooth=4) == 70  # the first 40-position window past 2.5
    assert break_point(bins, 10, 40, reference=2.0, margin=0.5, smooth=1) == 90
    assert break_point(bins, 10, 40, reference=2.0, margin=5.0) is None


def test_passkey_tokens_sized_in_tokens(loaded):
    for length in (128, 256):
        ids, answer = passkey_tokens(loaded.tokenizer, length, 0.5, 54321)
        assert 0.9 * length <= ids.numel() <= length
        assert loaded.tokenizer.decode(ids[-answer:].tolist()).strip() == "54321"


def test_cli_writes_report_and_config_that_plain_transformers_loads(folder, tmp_path, loaded):
    from transformers import AutoConfig, AutoModelForCausalLM

    out, cfg_dir = tmp_path / "out", tmp_path / "cfg"
    code = main(
        [
            "extend",
            "--model",
            str(folder),
            "--bin",
            "16",
            "--methods",
            "linear,yarn,dynamic",
            "--passkey-lengths",
            "128,256",
            "--passkey-depths",
            "0,1",
            "--passkey-keys",
            "2",
            "--out",
            str(out),
            "--write-config",
            str(cfg_dir),
            "--quiet",
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["measure"]["methods"]) == {AS_IS, "linear", "yarn", "dynamic"}
    assert results["finetune"] is None and results["handover"]["load"][0].startswith("from transformers import")
    assert results["target"] == N and results["trained_length"] == T
    assert results["source"]["folder"] == portable_path(folder)  # a package's or home folder loses its machine part
    assert {c["claim"] for c in results["claims"]} >= {"as-is blows up past T", "YaRN holds zero-shot", "passkey"}
    assert (out / "results.csv").read_text().startswith("kind,method")
    # the break is predicted from the model's own q/k, the config rule kept beside it
    as_is = results["prediction"]["methods"][AS_IS]
    assert as_is["first_unseen_angle"] == T and as_is["predictor"].startswith("far attention mass")
    assert "predicted vs measured break" in {c["claim"] for c in results["claims"]}
    for method, entry in results["verdict"]["methods"].items():  # each method against its own in-context loss
        own = (
            results["measure"]["methods"][method]["in_context_loss"]
            - results["measure"]["methods"][AS_IS]["in_context_loss"]
        )
        assert entry["in_context_cost"] == pytest.approx(own)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page
    # the written config in plain transformers (no ropelab patch) gives ropelab's logits for the chosen method
    best = results["verdict"]["best"]
    written = AutoConfig.from_pretrained(cfg_dir)
    assert written.rope_parameters["rope_type"] == ("default" if best in (AS_IS, "ntk") else best)
    plain = AutoModelForCausalLM.from_pretrained(folder, config=written).eval()
    ids = _ids(N + 1, loaded.model.config.vocab_size, seed=4)
    use_rope(loaded.model, method_config(loaded.rope, best, T, N))
    with torch.no_grad():
        assert (plain(ids[None, :-1]).logits - loaded.model(ids[None, :-1]).logits).abs().max().item() <= 1e-4


# ---------------------------------------------------------------- a RoPE per layer type (Gemma 3)
def test_per_layer_type_model_extends_its_full_attention_layers(tmp_path):
    """Gemma 3: the full-attention layers are extended; the sliding-window layers (16 positions, below
    T = 64) only meet distances they saw in training and keep their RoPE. Every method's config, written
    per layer type, loads in plain transformers with ropelab's logits."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    folder = tiny_gemma3(tmp_path / "gemma3", max_positions=64, window=16)
    _, shipped = load_config(resolve(str(folder)))
    rope, trained = shipped.rope, shipped.context
    assert isinstance(rope, LayerTypeExtension) and trained == 64
    assert (rope.extended, rope.kept) == ("full_attention", (("sliding_attention", 16),))
    loaded = load_model(str(folder))
    ids = _ids(129, loaded.model.config.vocab_size, seed=5)
    use_rope(loaded.model, method_config(shipped, AS_IS, 64, 128))
    as_is = token_losses(loaded.model, ids)
    for method in ("linear", "yarn", "dynamic"):
        cfg = method_config(shipped, method, 64, 128)
        assert cfg["full_attention"] == Shipped.from_rope(rope.long).method_config(method, 128)
        sliding = cfg["sliding_attention"]
        assert sliding.replace(max_position_embeddings=None) == rope.rope["sliding_attention"].replace(
            max_position_embeddings=None
        )
        use_rope(loaded.model, cfg)
        with torch.no_grad():
            ours = loaded.model(ids[None, :-1]).logits
        written = Gemma3TextConfig(**hf_config(loaded.model.config, cfg))
        assert written.rope_parameters["sliding_attention"] == {"rope_type": "default", "rope_theta": 10_000.0}
        reference = AutoModelForCausalLM.from_pretrained(folder, config=written).eval()
        with torch.no_grad():
            assert (reference(ids[None, :-1]).logits - ours).abs().max().item() <= 1e-4
        assert (token_losses(loaded.model, ids) - as_is).abs().max() > 1e-3  # the full-attention layers did change
    prediction = predict(shipped, 64, 128, (AS_IS, "linear"))
    one = predict(Shipped.from_rope(rope.long), 64, 128, (AS_IS, "linear"))
    assert prediction["methods"] == one["methods"]  # read from the extended layer type


def test_extend_cli_on_a_per_layer_type_model(tmp_path, capsys):
    from transformers import AutoConfig

    folder = tiny_gemma3(tmp_path / "gemma3", max_positions=64, window=16)
    out, cfg_dir = tmp_path / "out", tmp_path / "cfg"
    assert (
        main(
            [
                "extend",
                "--model",
                str(folder),
                "--bin",
                "16",
                "--methods",
                "linear,yarn",
                "--passkey-keys",
                "0",
                "--out",
                str(out),
                "--write-config",
                str(cfg_dir),
                "--quiet",
            ]
        )
        == 0
    )
    kept = "Layer types: the methods extend full_attention; sliding_attention keeps its RoPE (a window of 16 positions, within T = 64"
    assert kept in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert any(note.startswith(kept) for note in results["notes"]) and kept in (out / "report.html").read_text()
    assert (results["trained_length"], results["target"]) == (64, 128)
    assert set(results["measure"]["methods"]) == {AS_IS, "linear", "yarn"}
    assert results["measure"]["methods"]["linear"]["rope_parameters"]["full_attention"]["factor"] == 2.0
    written = AutoConfig.from_pretrained(cfg_dir)
    assert written.rope_parameters["sliding_attention"] == {"rope_type": "default", "rope_theta": 10_000.0}
    # A linear-scaled full-attention type without a stated pretraining length (Gemma 3's own form) ships for
    # its max_position_embeddings; only linear composes with it (the default yarn is left out, said so),
    # and a method named explicitly that cannot start from it is refused before anything is written.
    scaled = tiny_gemma3(tmp_path / "scaled", max_positions=64, full_attention={"rope_type": "linear", "factor": 2.0})
    capsys.readouterr()
    out2 = tmp_path / "composed"
    assert (
        main(["extend", "--model", str(scaled), "--bin", "16", "--passkey-keys", "0", "--out", str(out2), "--quiet"])
        == 0
    )
    assert "left out: --methods 'yarn' cannot start from this model" in capsys.readouterr().out
    composed = json.loads((out2 / "results.json").read_text())["measure"]["methods"]
    assert set(composed) == {AS_IS, "linear"}
    assert composed[AS_IS]["rope_parameters"]["full_attention"] == {
        "rope_type": "linear",
        "factor": 2.0,
        "rope_theta": 1e6,
    }
    assert composed["linear"]["rope_parameters"]["full_attention"]["factor"] == 4.0  # x2 shipped, then x2 to N
    assert main(["extend", "--model", str(scaled), "--methods", "yarn", "--out", str(tmp_path / "no"), "--quiet"]) == 2
    assert "original_max_position_embeddings" in capsys.readouterr().err and not (tmp_path / "no").exists()
    stated = tiny_gemma3(
        tmp_path / "stated",
        max_positions=64,
        full_attention={"rope_type": "linear", "factor": 2.0, "original_max_position_embeddings": 32},
    )
    shipped = load_config(resolve(str(stated)))[1]
    assert (shipped.context, shipped.pretrained) == (64, 32)
