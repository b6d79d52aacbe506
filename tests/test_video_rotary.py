"""Rotary modules read from configs of their own: the SAM 2 video family's memory attention and ESMFold 2's atoms.

- SAM 2 video, SAM 3 tracker video and EdgeTAM video: 2D axial RoPE over the memory attention's (w, h)
  feature grid, interleaved tables, head size ``memory_attention_hidden_size // (downsample_rate * heads)``
  (``compute_axial_rope_parameters`` of each family's ``*VisionRotaryEmbedding``).
- ESMFold 2's atom encoders: RoPE over physical coordinates (x, y, z) and a per-atom space uid, a base
  per slot of pairs, frozen (zero-frequency) pairs after them, float positions
  (``EsmFold2RotaryEmbedding``; ``axial_pairs`` / ``axial_bases`` in RopeConfig).

Each module is built tiny from its own transformers config and compared with ropelab's tables on positions
whose axes differ; the submodules that hold them (the memory attention, the atom encoder) are compared
before and after patch, with RoPE shown to move their output (the zoo sweep's own runners and checks).
"""

from __future__ import annotations

import importlib

import hf_zoo
import hf_zoo_configs
import hf_zoo_inputs
import pytest
import torch
import transformers

from ropelab import RopeConfig, rope_frequencies
from ropelab.errors import PatchError, RopeConfigError
from ropelab.integrations.hf import HFCoordinateAdapter, HFRotaryAdapter, patch
from ropelab.rotary import rope_angles

VIDEO = {  # family -> (config class, module prefix)
    "sam2_video": ("Sam2VideoConfig", "Sam2Video"),
    "sam3_tracker_video": ("Sam3TrackerVideoConfig", "Sam3TrackerVideo"),
    "edgetam_video": ("EdgeTamVideoConfig", "EdgeTamVideo"),
}
# 2 heads of 64 // 2 channels: 16 by the family's formula (32 if the downsample rate were missed)
MEMORY = dict(
    memory_attention_hidden_size=64,
    memory_attention_num_attention_heads=2,
    memory_attention_downsample_rate=2,
    memory_attention_num_layers=2,
    memory_attention_rope_feat_sizes=[6, 4],
)


def _video(family: str):
    """(config, modeling module) of a SAM 2 video family, its memory attention made small."""
    config_class, _ = VIDEO[family]
    extra = {"memory_attention_rope_k_sizes": [3, 2]} if family == "edgetam_video" else {}
    transformers.logging.set_verbosity_error()
    config = getattr(transformers, config_class)(**MEMORY, **extra)
    config.memory_attention_rope_feat_sizes = MEMORY["memory_attention_rope_feat_sizes"]  # SAM 3's image_size resets it
    return config, importlib.import_module(f"transformers.models.{family}.modeling_{family}")


def _columns(num_axes: int, count: int) -> torch.Tensor:
    """``[N, A]`` positions, axis last, every column a different shuffle."""
    steps = torch.arange(count)
    return torch.stack([(steps * (2 * a + 1) + 3 * a) % (count + 5 * a) for a in range(num_axes)], dim=-1)


def _holder(**modules) -> torch.nn.Module:
    holder = torch.nn.Module()
    for name, module in modules.items():
        setattr(holder, name, module)
    return holder


def _identical_and_exercised(holder, run, rotary_names):
    """Patch ``holder``; its runner's output must stay within the sweep's tolerance, and turning each
    rotary module twice as far, or giving every patched rotation another base, must move it."""
    torch.manual_seed(0)
    want = hf_zoo._run(holder, run)
    for name in rotary_names:
        calls, moved = hf_zoo.reach(holder, run, want, name)
        assert calls >= 1 and moved > hf_zoo.MOVED, (name, calls, moved)
    patch(holder)
    assert hf_zoo._distance(hf_zoo._run(holder, run), want) <= hf_zoo.TOLERANCE
    assert hf_zoo._perturb(holder) == len(rotary_names)
    assert hf_zoo._distance(hf_zoo._run(holder, run), want) > hf_zoo.MOVED


# ----------------------------------------------------------------------------- SAM 2 video family
@pytest.mark.parametrize("family", sorted(VIDEO))
def test_memory_attention_config_is_read_with_the_family_head_size(family):
    config, modeling = _video(family)
    cfg = RopeConfig.from_hf(config)
    memory_attention = getattr(modeling, f"{VIDEO[family][1]}MemoryAttention")(config)
    assert cfg.head_dim == memory_attention.layers[0].self_attn.head_dim == 16
    assert (cfg.rope_type, cfg.layout, cfg.axial_order, cfg.base) == ("axial", "interleaved", (0, 1), 10000.0)
    module = getattr(modeling, f"{VIDEO[family][1]}VisionRotaryEmbedding")(config)
    inv_freq, _ = rope_frequencies(cfg)
    torch.testing.assert_close(inv_freq[: cfg.num_pairs // 2].float(), module.inv_freq, atol=0, rtol=1e-6)
    assert torch.equal(inv_freq[: cfg.num_pairs // 2], inv_freq[cfg.num_pairs // 2 :])  # one ladder per axis
    assert RopeConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("family", sorted(VIDEO))
def test_memory_attention_tables_match_on_distinct_rows_and_columns(family):
    config, modeling = _video(family)
    original = getattr(modeling, f"{VIDEO[family][1]}VisionRotaryEmbedding")(config)
    holder = _holder(rotary_emb=original)
    patch(holder)
    adapter = holder.rotary_emb
    assert type(adapter) is HFRotaryAdapter and adapter.leading_one and adapter.table_dtype == torch.float32
    positions = _columns(2, 40)
    want, got = original(torch.zeros(1), positions), adapter(torch.zeros(1), positions)
    assert got[0].shape == want[0].shape == (1, 40, 16)
    for w, g in zip(want, got):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=0)
    # float64 angles: pair i of token n turns by positions[n, pair_axes[i]] * inv_freq[i]
    cfg = adapter.cfg
    angles = rope_angles(positions.T, rope_frequencies(cfg)[0], cfg.pair_axes)
    torch.testing.assert_close(got[0][0, :, ::2].double(), angles.cos(), atol=1e-7, rtol=0)


@pytest.mark.parametrize("family", sorted(VIDEO))
def test_patched_memory_attention_is_identical_and_exercised(family):
    """The sweep's own runner (the memory attention over 2 memory frames and 2 object pointers), on
    the memory attention alone: patched output identical, each rotation moving it."""
    config, modeling = _video(family)
    torch.manual_seed(0)
    holder = _holder(memory_attention=getattr(modeling, f"{VIDEO[family][1]}MemoryAttention")(config).eval())
    holder.config = config
    _identical_and_exercised(holder, hf_zoo_inputs.Run(("memory_attention",)), ["memory_attention.rotary_emb"])


def test_sweep_configs_shrink_the_memory_grid_and_keep_the_formula_apart():
    transformers.logging.set_verbosity_error()
    for family in VIDEO:
        config = hf_zoo_configs.tiny_config(family)
        assert RopeConfig.from_hf(config).head_dim == 16 != config.memory_attention_hidden_size // 2
        assert isinstance(hf_zoo_inputs.FAMILY_INPUTS[family]["runner"], (str, tuple))


def test_bad_memory_attention_sizes_name_the_key():
    data = {
        "model_type": "sam2_video",
        "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},
        "memory_attention_hidden_size": 64,
        "memory_attention_downsample_rate": 1,
        "memory_attention_num_attention_heads": 0,
    }
    with pytest.raises(
        RopeConfigError,
        match=r"memory_attention_num_attention_heads=0 is invalid.*"
        r"memory_attention_hidden_size // \(",
    ):
        RopeConfig.from_hf(data)
    with pytest.raises(RopeConfigError, match="memory_attention_hidden_size=None"):
        RopeConfig.from_hf({**data, "memory_attention_num_attention_heads": 1, "memory_attention_hidden_size": None})


# ----------------------------------------------------------------------------- ESMFold 2's atom encoders
def _atom_config(**changes):
    from transformers.models.esmfold2.configuration_esmfold2 import EsmFold2AtomEncoderConfig

    # 2 heads of 64: 32 pairs, 3 x 2 spatial + 10 uid, so 16 inactive (frozen) pairs
    return EsmFold2AtomEncoderConfig(**{"hidden_size": 128, "num_attention_heads": 2, **changes})


ESM_PAIRS = (2, 2, 2, 10)


def test_esmfold2_atom_config_is_read_as_axial_slots_with_their_bases():
    cfg = RopeConfig.from_hf(_atom_config())
    assert (cfg.head_dim, cfg.rotary_dim, cfg.layout, cfg.axial_order) == (64, 64, "half", (0, 1, 2, 3))
    assert cfg.axial_pairs == ESM_PAIRS and cfg.axial_bases == (20.0, 20.0, 20.0, 10000.0)
    assert cfg.pair_axes == (0, 0, 1, 1, 2, 2) + (3,) * 26  # the frozen pairs read the uid, as the module's
    spatial = 20.0 ** (-torch.arange(2, dtype=torch.float64) / 2)  # base ** (-k / pairs), per coordinate
    uid = 10000.0 ** (-torch.arange(10, dtype=torch.float64) / 10)
    want = torch.cat([spatial, spatial, spatial, uid, torch.zeros(16, dtype=torch.float64)])
    torch.testing.assert_close(rope_frequencies(cfg)[0], want, atol=0, rtol=1e-15)
    assert RopeConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("changes", [{}, {"hidden_size": 64}], ids=["inactive-pairs", "packed-head"])
def test_esmfold2_tables_match_on_fractional_coordinates(changes):
    from transformers.models.esmfold2.modeling_esmfold2 import EsmFold2RotaryEmbedding

    atom_config = _atom_config(**changes)
    original = EsmFold2RotaryEmbedding(atom_config)
    holder = _holder(rotary_emb=original)
    patch(holder)
    adapter = holder.rotary_emb
    assert isinstance(adapter, HFCoordinateAdapter) and adapter.cfg == RopeConfig.from_hf(atom_config)
    generator = torch.Generator().manual_seed(0)
    ref_pos = 12.0 * torch.randn(2, 30, 3, generator=generator)  # angstrom-sized, every axis its own values
    uid = torch.randint(0, 40, (2, 30), generator=generator)
    for dtype in (torch.float32, torch.bfloat16):
        want, got = original(ref_pos, uid, dtype=dtype), adapter(ref_pos, uid, dtype=dtype)
        assert got[0].dtype == want[0].dtype == dtype and got[0].shape == want[0].shape == (2, 30, atom_config.head_dim)
        for w, g in zip(want, got):
            torch.testing.assert_close(g.float(), w.float(), atol=1e-4 if dtype == torch.float32 else 1e-2, rtol=0)
    cos, sin = adapter(ref_pos, uid, dtype=torch.float64)
    pairs = adapter.cfg.num_pairs
    active = sum(ESM_PAIRS)
    assert torch.equal(cos[..., active:pairs], torch.ones_like(cos[..., active:pairs]))  # frozen pairs
    positions = torch.cat([ref_pos.double(), uid.double()[..., None]], -1).movedim(-1, 0)
    angles = rope_angles(positions, rope_frequencies(adapter.cfg)[0], adapter.cfg.pair_axes)
    torch.testing.assert_close(sin[..., :pairs], angles.sin(), atol=1e-12, rtol=0)


def test_patched_esmfold2_atom_encoder_is_identical_and_exercised():
    from transformers.models.esmfold2.modeling_esmfold2 import EsmFold2AtomEncoder

    transformers.logging.set_verbosity_error()
    config = hf_zoo_configs.tiny_config("esmfold2")
    torch.manual_seed(0)
    encoder = EsmFold2AtomEncoder(config, _atom_config())  # built outside _init_weights: no zero adaLN gates
    holder = _holder(atom_encoder=encoder.eval())
    holder.config = config
    _identical_and_exercised(holder, hf_zoo_inputs.Run(("atom_encoders",)), ["atom_encoder.rotary_emb"])


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"axial_pairs": (2, 2, 2)}, "axial_pairs"),  # one per slot
        ({"axial_pairs": (2, 2, 2, 0)}, "axial_pairs"),
        ({"axial_pairs": (4, 4, 4, 10)}, "axial_pairs"),  # 22 pairs of a 16-pair head
        ({"axial_pairs": (2, 2, 2, 10), "axial_composition": "interleaved"}, "axial_pairs"),
        ({"axial_bases": (20.0, 20.0, 20.0, 1.0)}, "axial_bases"),
        ({"axial_bases": (20.0, 20.0)}, "axial_bases"),
        ({"axial_bases": (20.0,) * 4, "axial_frequencies": "alternating"}, "axial_bases"),
    ],
)
def test_bad_axial_slots_name_the_field(kwargs, key):
    with pytest.raises(RopeConfigError, match=f"{key}=.* is invalid"):
        RopeConfig(head_dim=32, rope_type="axial", axial_order=(0, 1, 2, 3), **kwargs)


def test_axial_slots_need_an_axial_config_and_default_to_the_even_split():
    with pytest.raises(RopeConfigError, match="axial_pairs"):
        RopeConfig(head_dim=16, axial_pairs=(4, 4))
    plain = RopeConfig(head_dim=16, rope_type="axial")
    assert RopeConfig(head_dim=16, rope_type="axial", axial_pairs=(4, 4), axial_bases=(1e4, 1e4)) == plain


@pytest.mark.parametrize("key, value", [("num_uid_rope_pairs", 0), ("spatial_rope_base_frequency", 0.5)])
def test_bad_esmfold2_atom_keys_name_the_key(key, value):
    data = {
        key: getattr(_atom_config(), key)
        for key in (
            "head_dim",
            "num_spatial_rope_pairs_per_axis",
            "num_uid_rope_pairs",
            "spatial_rope_base_frequency",
            "uid_rope_base_frequency",
        )
    }
    with pytest.raises(RopeConfigError, match=f"{key}={value!r} is invalid"):
        RopeConfig.from_hf({**data, key: value})


def test_coordinate_adapter_names_a_wrong_number_of_axes():
    adapter = HFCoordinateAdapter(RopeConfig.from_hf(_atom_config()))
    with pytest.raises(PatchError, match=r"coordinates.shape=\(1, 5, 2\).*4 position axes"):
        adapter(torch.zeros(1, 5, 2), torch.zeros(1, 5))


def test_explorer_draws_the_first_slot_with_its_own_size_and_base():
    from ropelab.explain.explorer import one_axis_view

    cfg = RopeConfig.from_hf(_atom_config())
    view, note = one_axis_view(cfg)
    assert (view.rotary_dim, view.base) == (4, 20.0) and "2 pairs" in note and "own size and base" in note
    assert torch.equal(rope_frequencies(view)[0], rope_frequencies(cfg)[0][:2])


def test_a_wrong_slot_base_is_refused_at_patch_time():
    from transformers.models.esmfold2.modeling_esmfold2 import EsmFold2RotaryEmbedding

    wrong = RopeConfig.from_hf(_atom_config()).replace(axial_bases=(20.0, 20.0, 20.0, 500.0))
    with pytest.raises(PatchError, match=r"axial_bases=\(20.0, 20.0, 20.0, 500.0\).*does not reproduce"):
        patch(_holder(rotary_emb=EsmFold2RotaryEmbedding(_atom_config())), wrong)
