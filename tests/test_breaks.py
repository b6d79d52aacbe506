"""The break predictors: rule (a) first unseen angle, rule (b) Liu et al. 2023's T_extra, rule (c) the
logit-excess predictor, on hand-made q/k and a tiny random lab model (seconds)."""

from __future__ import annotations

import math

import pytest
import torch

from ropelab.analysis.breaks import (
    as_pairs,
    extrapolation_bound,
    first_unseen_angle,
    logit_excess,
    method_frequencies,
    predict_break,
    threshold_crossing,
)
from ropelab.config import RopeConfig
from ropelab.extension import extension_config


def _cfg(base=10000.0, head=64, T=1024):
    return RopeConfig(head_dim=head, base=base, max_position_embeddings=T)


def test_rule_a_is_T_for_the_model_as_is_and_scales_with_linear():
    cfg = _cfg()
    theta = method_frequencies(cfg, 1024)
    assert first_unseen_angle(theta, theta, 1024) == 1024
    linear = method_frequencies(extension_config(cfg, "linear", 1024, 2.0), 2048)
    assert first_unseen_angle(theta, linear, 1024) == 2047  # floor(1023 * 2) + 1


def test_rule_a_none_when_every_pair_turns_within_T():
    theta = method_frequencies(_cfg(base=10.0, head=16, T=64), 64)
    assert first_unseen_angle(theta, theta, 64) is None
    assert extrapolation_bound(theta, theta, 64) is None


def test_rule_b_matches_liu_et_al_formula():
    # Liu et al. 2023: T_extra = 2 pi beta^(d_extra / d), d_extra = 2 ceil(d/2 log_beta(T / 2 pi)).
    d, beta, T = 64, 100000.0, 8192
    d_extra = 2 * math.ceil(d / 2 * math.log(T / (2 * math.pi)) / math.log(beta))
    theta = method_frequencies(_cfg(base=beta, head=d, T=T), T)
    assert extrapolation_bound(theta, theta, T) == round(2 * math.pi * beta ** (d_extra / d))
    assert extrapolation_bound(theta, theta, T) == 8379  # SmolLM2-135M's T_extra (base 1e5, head_dim 64)


def test_as_pairs_layouts():
    x = torch.arange(4.0)
    assert torch.equal(as_pairs(x, "half"), torch.complex(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])))
    assert torch.equal(as_pairs(x, "interleaved"), torch.complex(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 3.0])))


def test_excess_is_zero_when_only_seen_pairs_carry_weight():
    # q and k with weight on the fastest pair only (a full turn every ~6 positions): no new angles, no excess.
    cfg = _cfg(head=8, T=256)
    theta = method_frequencies(cfg, 256)
    q = torch.zeros(1, 3, 4, dtype=torch.complex64)
    q[..., 0] = torch.tensor([1 + 0j, 0.5 + 1j, -1 + 0.2j])
    _, excess = logit_excess(q, q.clone(), theta, theta, 256, 1024, scale=1.0)
    assert float(excess.max()) < 1e-3


def test_excess_grows_on_a_slow_pair_past_T():
    # weight on the slowest pair, q and k pointing so the score rises with distance beyond what T allowed
    cfg = _cfg(head=8, T=256)
    theta = method_frequencies(cfg, 256)
    q = torch.zeros(1, 1, 4, dtype=torch.complex64)
    k = torch.zeros(1, 1, 4, dtype=torch.complex64)
    q[..., 3], k[..., 3] = 4.0, 4.0 * complex(math.cos(1.0), math.sin(1.0))  # score 16 cos(Delta theta_3 - 1)
    distances, excess = logit_excess(q, k, theta, theta, 256, 4096, scale=1.0)
    assert float(excess[0, 0]) < 0.05 and float(excess[0].max()) > 1.0  # peaks where Delta theta_3 = 1
    assert threshold_crossing(distances, excess[0], 0.5) > 256


def test_predict_break_on_a_tiny_random_lab_model_in_seconds():
    from ropelab.lab.model import DecoderLM, ModelConfig
    from ropelab.lab.predict import predict_lab

    torch.manual_seed(0)
    L = 32
    cfg = RopeConfig(head_dim=16, base=1e6, max_position_embeddings=L)
    model = DecoderLM(
        ModelConfig(max_positions=L, num_layers=1, dim=32, num_heads=2, encoding_options={"rope": cfg.to_hf()})
    )
    windows = torch.randint(0, 256, (4, L))
    out = predict_lab(model, windows, cfg, {"as-is": cfg, "linear-4": extension_config(cfg, "linear", L, 4.0)}, 8 * L)
    asis, linear = out["as-is"], out["linear-4"]
    assert asis.first_unseen_angle == L and linear.first_unseen_angle > 3 * L
    assert asis.position is None or asis.position >= L
    assert len(asis.distances) == len(asis.excess) > 0
    # linear x4 keeps every angle inside the trained range up to 4L: no excess before then
    inside = [e for d, e in zip(linear.distances, linear.excess) if d < 4 * L - 4]
    assert max(inside) < 1e-3
    with pytest.raises(ValueError, match="at most L"):
        predict_lab(model, torch.randint(0, 256, (1, 2 * L)), cfg, {"as-is": cfg}, 8 * L)


def test_predict_break_validates():
    cfg = _cfg(head=8, T=64)
    q = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match="target"):
        predict_break([(q, q)], cfg, cfg, 64, 64)
    with pytest.raises(ValueError, match="multiple"):
        predict_break([(torch.randn(3, 3, 8), torch.randn(2, 3, 8))], cfg, cfg, 64, 128)


def test_far_mass_is_the_unseen_share_for_flat_attention():
    # every score 0 (q = 0): each distance weighs the same, so F(n) = (n - T) / n
    cfg = _cfg(head=8, T=64)
    q = torch.zeros(1, 4, 8)
    p = predict_break([(q, q.clone())], cfg, cfg, 64, 256)
    d, f = torch.tensor(p.distances), torch.tensor(p.far_mass)
    assert torch.allclose(f, (d + 1 - 64).double().float() / (d + 1).float(), atol=0.02)
    assert (
        p.mechanism == "far mass" and 64 / (1 - p.far_threshold) - 16 <= p.position <= 64 / (1 - p.far_threshold) + 16
    )
