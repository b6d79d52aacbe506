"""Two-axis rotary modules with call signatures of their own: EfficientLoFTR and MusicFlamingo.

- EfficientLoFTR (``EfficientLoFTRRotaryEmbedding``, ``forward(feature_map)``): the 1-based (row,
  column) grid of the aggregated coarse features, pairs alternating row and column over the whole
  hidden vector (before it splits into heads), each axis reading the ladder of a RoPE over
  ``int(head_dim * partial_rotary_factor)`` = hidden_size / 2 channels (``partial_rotary_factor=4.0``).
- MusicFlamingo (``MusicFlamingoRotaryEmbedding``, ``forward(timestamps, seq_len)``): a window-index
  block and a time-index block at fractional positions, every angle times ``-2 pi timestamp``.

Each is read from its own transformers config, checked against its own module at float32 tolerance and
against float64 math, and patched into a tiny model whose output stays the same while its rotation moves it.
"""

from __future__ import annotations

import math

import hf_zoo
import pytest
import torch
import transformers
from transformers.models.efficientloftr.modeling_efficientloftr import EfficientLoFTRRotaryEmbedding
from transformers.models.musicflamingo.modeling_musicflamingo import MusicFlamingoRotaryEmbedding

from ropelab import RopeConfig
from ropelab.errors import PatchError, RopeConfigError
from ropelab.integrations.hf import HFFeatureGridAdapter, HFTimestampAdapter, patch, unpatch

transformers.logging.set_verbosity_error()


def _loftr_config(**changes) -> transformers.EfficientLoFTRConfig:
    return transformers.EfficientLoFTRConfig(**changes)  # hidden_size 256, 8 heads, partial_rotary_factor 4.0


def _flamingo_config() -> transformers.MusicFlamingoConfig:
    return transformers.MusicFlamingoConfig()  # audio hidden_size 1280, partial_rotary_factor 0.2, rope_theta 1200


def _interleave(angles: torch.Tensor) -> torch.Tensor:
    return angles.repeat_interleave(2, dim=-1)


# ---------------------------------------------------------------- reading the configs
def test_efficientloftr_config_is_axial_over_the_whole_hidden_vector():
    cfg = RopeConfig.from_hf(_loftr_config())
    assert (cfg.head_dim, cfg.rotary_dim, cfg.base, cfg.layout) == (256, 256, 1e4, "interleaved")
    assert (cfg.rope_type, cfg.axial_frequencies, cfg.axial_composition) == ("axial", "repeated", "interleaved")
    assert cfg.pair_axes[:4] == (0, 1, 0, 1)  # row, column, row, column, ...


def test_musicflamingo_config_is_two_ladders_over_the_first_channels():
    cfg = RopeConfig.from_hf(_flamingo_config())
    assert (cfg.head_dim, cfg.rotary_dim, cfg.base, cfg.layout) == (1280, 512, 1200.0, "interleaved")
    assert (cfg.rope_type, cfg.axial_composition) == ("axial", "contiguous")
    assert cfg.pair_axes == (0,) * 128 + (1,) * 128  # int(1280 * 0.2) = 256 channels per axis


def test_partial_rotary_factor_above_one_is_read_only_for_its_family():
    with pytest.raises(RopeConfigError, match=r"partial_rotary_factor=4.0 is invalid: expected a fraction"):
        RopeConfig.from_hf({"head_dim": 16, "rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 4.0}})
    # EfficientLoFTR's module fills hidden_size / 4 slots per axis: only 8 heads make the ladder fit.
    loftr = {
        "model_type": "efficientloftr",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 4.0},
    }
    with pytest.raises(
        RopeConfigError, match=r"partial_rotary_factor=4.0 is invalid: .* is 32, half of hidden_size=64"
    ):
        RopeConfig.from_hf(loftr)
    assert RopeConfig.from_hf({**loftr, "num_attention_heads": 8}).rotary_dim == 64
    with pytest.raises(RopeConfigError, match=r"rope_type='linear' is invalid: expected 'default' for efficientloftr"):
        RopeConfig.from_hf(
            {
                **loftr,
                "num_attention_heads": 8,
                "rope_parameters": {**loftr["rope_parameters"], "rope_type": "linear", "factor": 2.0},
            }
        )
    odd = {
        "model_type": "musicflamingo",
        "head_dim": 64,
        "rope_parameters": {"rope_theta": 1200.0, "partial_rotary_factor": 0.3},
    }
    with pytest.raises(RopeConfigError, match=r"partial_rotary_factor=0.3 is invalid: .*a positive even number"):
        RopeConfig.from_hf(odd)  # int(64 * 0.3) = 19: a ladder over an odd width is no RoPE ropelab reads


# ---------------------------------------------------------------- the tables, against the modules
def _loftr_reference(config, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``[1, rows, cols, hidden]``: pair 2k turns by (row + 1) * base^(-2k / L), pair 2k + 1 by
    (col + 1) * the same, L = hidden_size / 2 (EfficientLoFTR's compute_embeddings)."""
    ladder = config.hidden_size // 2
    inv_freq = config.rope_parameters["rope_theta"] ** (-torch.arange(0, ladder, 2, dtype=torch.float64) / ladder)
    row = torch.arange(1, rows + 1, dtype=torch.float64)[:, None, None] * inv_freq
    col = torch.arange(1, cols + 1, dtype=torch.float64)[None, :, None] * inv_freq
    angles = torch.stack(torch.broadcast_tensors(row, col), dim=-1).flatten(-2)  # [rows, cols, hidden / 2]
    return _interleave(angles.cos())[None], _interleave(angles.sin())[None]


def test_efficientloftr_tables_match_the_module_and_float64():
    config = _loftr_config()
    original = EfficientLoFTRRotaryEmbedding(config)
    adapter = HFFeatureGridAdapter(RopeConfig.from_hf(config), config)
    features = torch.zeros(2, config.hidden_size, 4 * 15, 4 * 11)  # 15 x 11 tokens after the 4 x 4 aggregation
    want, got = original(features), adapter(features)
    reference = _loftr_reference(config, 15, 11)
    for w, g, r in zip(want, got, reference):
        assert g.shape == w.shape == (1, 15, 11, 256) and g.dtype == torch.float32
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)  # float32 angles up to 15 rad in transformers
        torch.testing.assert_close(g.double(), r, atol=1e-7, rtol=0)  # exact angles, rounded once
    assert adapter(features.half())[0].dtype == torch.float16  # the tables follow x, as the module's do


def _flamingo_timestamps(config, windows: int, frames: int) -> torch.Tensor:
    """``[windows, frames]`` seconds of one sample, as MusicFlamingoModel._build_audio_timestamps lays them out."""
    return torch.arange(windows * frames, dtype=torch.float32).view(windows, frames) * (4 * config.audio_frame_step)


def _flamingo_reference(config, timestamps: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``[N, T, 2 L]``: [window block | time block], L = int(head_dim * partial_rotary_factor)."""
    ladder = int(config.head_dim * config.rope_parameters["partial_rotary_factor"])
    limit = config.max_position_embeddings
    inv_freq = config.rope_parameters["rope_theta"] ** (-torch.arange(0, ladder, 2, dtype=torch.float64) / ladder)
    seconds = timestamps.double()
    window = torch.round(seconds[:, 0] / (4 * config.audio_frame_step * seq_len)) / limit
    time = torch.arange(seq_len, dtype=torch.float64) * 2 * math.pi / limit
    blocks = [window[:, None, None] * inv_freq, time[None, :, None] * inv_freq]
    angles = torch.cat([_interleave(b) for b in torch.broadcast_tensors(*blocks)], dim=-1)
    angles = angles * (-2 * math.pi * seconds)[..., None]
    return angles.cos(), angles.sin()


def test_musicflamingo_tables_match_the_module_and_float64():
    config = _flamingo_config()
    original = MusicFlamingoRotaryEmbedding(config)
    adapter = HFTimestampAdapter(RopeConfig.from_hf(config), config)
    timestamps = _flamingo_timestamps(config, 6, 40)  # under 10 s: float32 angles stay within ~1e-5 rad
    want, got = original(timestamps, 40), adapter(timestamps, 40)
    reference = _flamingo_reference(config, timestamps, 40)
    for w, g, r in zip(want, got, reference):
        assert g.shape == w.shape == (6, 40, 512) and g.dtype == w.dtype == torch.float32
        torch.testing.assert_close(g, w, atol=2e-5, rtol=0)
        torch.testing.assert_close(g.double(), r, atol=1e-7, rtol=0)


def test_musicflamingo_long_audio_keeps_exact_angles():
    """Five minutes of audio (10 windows of 750 frames): the module's float32 angles reach ~1e4 rad and
    drift by ~1e-3; ropelab's tables stay at the float32 rounding of the float64 ones."""
    config = _flamingo_config()
    timestamps = _flamingo_timestamps(config, 10, 750)
    adapter = HFTimestampAdapter(RopeConfig.from_hf(config), config)
    reference = _flamingo_reference(config, timestamps, 750)
    ours = max((g.double() - r).abs().max().item() for g, r in zip(adapter(timestamps, 750), reference))
    theirs = max(
        (w.double() - r).abs().max().item()
        for w, r in zip(MusicFlamingoRotaryEmbedding(config)(timestamps, 750), reference)
    )
    assert ours < 1e-7 < 1e-4 < theirs


# ---------------------------------------------------------------- patched models
@pytest.mark.parametrize(
    ("family", "name", "kind"),
    [("efficientloftr", "rotary_emb", HFFeatureGridAdapter), ("musicflamingo", "pos_emb", HFTimestampAdapter)],
)
def test_patched_model_is_identical_and_its_rotation_is_exercised(family, name, kind):
    model, inputs = hf_zoo.build(family)
    want = hf_zoo._run(model, inputs)
    assert hf_zoo.reach(model, inputs, want, name)[1] > hf_zoo.MOVED  # the inputs reach the module
    patch(model)
    assert isinstance(model.get_submodule(name), kind)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) <= hf_zoo.TOLERANCE
    calls, moved = hf_zoo.reach(model, inputs, want, name)  # doubling the adapter's angles moves it
    assert calls == 1 and moved > hf_zoo.MOVED
    adapter = model.get_submodule(name)
    adapter.cfg = adapter.cfg.replace(base=2.0)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) > hf_zoo.MOVED
    unpatch(model)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) == 0


@pytest.mark.parametrize(
    ("family", "wrong"),
    [
        ("efficientloftr", {"axial_composition": "contiguous"}),
        ("efficientloftr", {"axial_order": (1, 0)}),
        ("musicflamingo", {"axial_order": (1, 0)}),
    ],
)
def test_a_wrong_reading_fails_the_probe(family, wrong):
    """Patch time compares the adapter with the module on a grid with more rows than columns (on
    windows and frames of different counts): a swapped or regrouped axis is refused."""
    config = _loftr_config() if family == "efficientloftr" else _flamingo_config()
    module = (EfficientLoFTRRotaryEmbedding if family == "efficientloftr" else MusicFlamingoRotaryEmbedding)(config)
    holder = torch.nn.ModuleDict({"rope": module})
    with pytest.raises(PatchError, match="does not reproduce its output"):
        patch(holder, RopeConfig.from_hf(config).replace(**wrong))
    patch(holder)
    assert isinstance(holder["rope"], (HFFeatureGridAdapter, HFTimestampAdapter))
