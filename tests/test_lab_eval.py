"""Evaluation protocols, passkey scoring, extension configs, report claims."""

from __future__ import annotations

import math

import pytest
import torch

from ropelab import RopeConfig, rope_frequencies
from ropelab.errors import RopeConfigError
from ropelab.extension import EXTENSION_METHODS, extension_config
from ropelab.lab import LabError
from ropelab.lab.data import passkey_example
from ropelab.lab.evaluate import evaluation_lengths, loss_per_position, passkey_accuracy, perplexity
from ropelab.lab.extend import extend_model
from ropelab.lab.model import DecoderLM, ModelConfig
from ropelab.lab.report import check_claims

TINY = dict(num_layers=1, dim=16, num_heads=2, max_positions=16)


class Uniform(torch.nn.Module):
    """A model that predicts every byte with probability 1/256: perplexity exactly 256."""

    def forward(self, tokens):
        return torch.zeros(*tokens.shape, 256)


def test_lengths_are_multiples_of_l_and_reject_non_positive():
    assert evaluation_lengths(64) == [64, 128, 256, 512, 1024]
    with pytest.raises(LabError, match="length=0 is invalid"):
        evaluation_lengths(0)


def test_both_protocols_score_the_same_bytes():
    stream = torch.randint(0, 256, (5000,), dtype=torch.uint8)
    for length in (16, 64, 256):
        assert perplexity(Uniform(), stream, length, 1024) == pytest.approx(256)
        assert perplexity(Uniform(), stream, length, 1024, sliding=True) == pytest.approx(256)


def test_sliding_window_equals_nonoverlap_for_a_position_free_bigram_model():
    torch.manual_seed(0)
    model = DecoderLM(ModelConfig(encoding="nope", num_layers=0, dim=16, num_heads=2, max_positions=16))
    stream = torch.randint(0, 256, (3000,), dtype=torch.uint8)
    # zero layers: the prediction depends on the current byte only, so context cannot matter
    assert perplexity(model, stream, 64, 2048, sliding=True) == pytest.approx(
        perplexity(model, stream, 64, 2048), rel=1e-5
    )
    assert len(loss_per_position(model, stream, 64, 2048)) == 64


class Oracle(torch.nn.Module):
    """Predicts the byte that followed the same byte's previous occurrence (a perfect copier of
    the passkey once the key was seen), else byte 0."""

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, 256)
        for b, row in enumerate(tokens.tolist()):
            for i in range(len(row)):
                for j in range(i - 1, 14, -1):
                    if row[j - 15 : j + 1] == row[i - 15 : i + 1] and j + 1 < len(row):
                        logits[b, i, row[j + 1]] = 1.0
                        break
        return logits


def test_passkey_accuracy_is_the_exact_match_of_greedy_digits():
    prompt, answer = passkey_example(160, 0.5, 31415)
    assert passkey_accuracy(Oracle(), 160, 0.5, trials=3) == 1.0
    assert passkey_accuracy(Uniform(), 160, 0.5, trials=3) == 0.0


def test_extension_configs_scale_the_frequencies_as_each_method_says():
    base = RopeConfig(head_dim=32, max_position_embeddings=128)
    plain, _ = rope_frequencies(base)
    linear, _ = rope_frequencies(extension_config(base, "linear", 128, 4))
    torch.testing.assert_close(linear, plain / 4)
    ntk, _ = rope_frequencies(extension_config(base, "ntk", 128, 4))
    assert ntk[0] == plain[0] and ntk[-1] < plain[-1]  # NTK keeps the fastest pair, slows the slowest
    yarn, attention = rope_frequencies(extension_config(base, "yarn", 128, 4))
    assert attention == pytest.approx(0.1 * math.log(4) + 1)  # Peng et al. 2023, eq. 22
    for method in EXTENSION_METHODS:
        extension_config(base, method, 128, 4)
    with pytest.raises(RopeConfigError, match="method='bogus' is unknown"):
        extension_config(base, "bogus", 128, 4)


def test_extend_model_refuses_other_encodings():
    model = DecoderLM(ModelConfig(encoding="alibi", **TINY))
    state = {"model_config": model.cfg.to_dict(), "model": model.state_dict()}
    with pytest.raises(LabError, match="encoding='rope'"):
        extend_model(state, "linear", 4)


def test_claims_are_read_from_the_results():
    def ppl(values):
        return {"nonoverlap": dict(zip(["16", "32", "64"], values)), "sliding": {}}

    results = {
        "settings": {"length": 16},
        "encodings": {
            "sinusoidal": {"ppl": ppl([4.0, 9.0, 20.0])},
            "alibi": {"ppl": ppl([5.0, 4.8, 4.7])},
            "rope": {"ppl": ppl([4.2, 5.0, 30.0])},
        },
    }
    held = {c["claim"]: c["held"] for c in check_claims(results)}
    assert held == {"sinusoidal breaks past L": True, "ALiBi holds": True, "RoPE degrades": False}


def test_the_quick_run_is_presented_as_a_smoke_test_without_claims():
    from ropelab.lab.report import claims_section

    claims = [{"claim": "ALiBi holds", "check": "ppl(4L) <= 1.1 x ppl(L)", "value": "5 vs 4", "held": False}]
    full = claims_section({"claims": claims})
    smoke = claims_section({"claims": [], "smoke_test": True})
    assert "ALiBi holds" in full and "did not hold" not in smoke.lower()
    assert "smoke test" in smoke and "ALiBi holds" not in smoke and "<table" not in smoke
