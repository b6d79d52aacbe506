"""Every RoPE in transformers' model zoo: patch reproduces each family or refuses it loudly.

The sweep (``tests/hf_zoo.py``) builds each family that defines a ``*RotaryEmbedding`` tiny from its
own config class (``hf_zoo_configs``), runs it on inputs that reach each of its towers
(``hf_zoo_inputs``: text, pixels, audio), patches it and runs it again. It fails on a silent
mismatch, on a model that ``patch`` accepts but that then does not run, on a raw (non-ropelab) error
from ``patch``, when a family in the committed baseline ``tests/data/hf_zoo_identical.txt`` is no
longer identical, when it finds fewer families (or fewer identical ones) than the committed table
``benchmarks/results/hf_zoo.md`` records, and when the inputs stop reaching a rotary module they
reached. A fast test keeps the baseline equal to the table's identical families.
The table prints with ``pytest -s``; ``python tests/hf_zoo.py`` rewrites ``benchmarks/results/hf_zoo.md``.
"""

from __future__ import annotations

import time
from pathlib import Path

import hf_zoo
import hf_zoo_configs
import pytest
import torch
import transformers

from ropelab import RopeConfig
from ropelab.config import LayerTypeRope
from ropelab.errors import PatchError, RopeConfigError
from ropelab.integrations.hf import HFComplexRotaryAdapter, HFPatchCentreAdapter, HFRotaryAdapter, patch

BASELINE = Path(__file__).parent / "data" / "hf_zoo_identical.txt"
ROOT = Path(__file__).resolve().parents[1]
PINNED_TABLE = ROOT / "benchmarks" / "results" / "hf_zoo.md"  # the sweep on the pinned transformers

# Rotary modules the sweep's inputs do not reach, before patch, and why (family -> reason).
KNOWN_UNREACHED: dict[str, str] = {}


@pytest.fixture(scope="module")
def results():
    start = time.perf_counter()
    found = hf_zoo.sweep()
    print("\n" + hf_zoo.table(found, time.perf_counter() - start))
    return {r.family: r for r in found}


def _baseline() -> list[str]:
    return [line.strip() for line in BASELINE.read_text().splitlines() if line.strip() and line[0] != "#"]


def _pinned_table() -> tuple[str, dict[str, str]]:
    """The transformers version and ``{family: outcome}`` of the committed table ``PINNED_TABLE``."""
    return hf_zoo.read_table(PINNED_TABLE.read_text())


def _listing(results, outcome):
    return [f"{r.family}: {r.detail}" for r in results.values() if r.outcome == outcome]


@pytest.mark.slow
def test_sweep_finds_the_zoo(results):
    """At least as many families, and as many identical ones, as the pinned table records (its counts
    are the floors; a newer transformers may add families)."""
    _, pinned = _pinned_table()
    identical = [f for f, r in results.items() if r.outcome == "identical"]
    assert len(results) >= len(pinned), sorted(pinned.keys() - results.keys())
    assert len(identical) >= sum(outcome == "identical" for outcome in pinned.values()), sorted(
        f for f, outcome in pinned.items() if outcome == "identical" and f not in identical
    )


@pytest.mark.slow
@pytest.mark.parametrize("outcome", hf_zoo.FAILING)
def test_no_family_fails_silently_or_raw(results, outcome):
    assert _listing(results, outcome) == []


@pytest.mark.slow
def test_inputs_reach_every_rotary_module(results):
    """Before patch, doubling the angles of each rotary module (exempt ones aside) moves the output:
    the inputs go through every tower that holds one, refused families included."""
    unreached = {r.family: r.missed for r in results.values() if r.missed and r.family not in KNOWN_UNREACHED}
    assert unreached == {}


@pytest.mark.slow
def test_identical_families_name_their_towers(results):
    nameless = [
        r.family
        for r in results.values()
        if r.outcome == "identical" and not r.towers and "each of 0 rotary modules" not in r.detail
    ]
    assert nameless == []


@pytest.mark.slow
def test_baseline_families_stay_identical(results):
    baseline = _baseline()
    regressed = {
        family: (results[family].outcome, results[family].detail) if family in results else "not found"
        for family in baseline
        if family not in results or results[family].outcome != "identical"
    }
    assert regressed == {}


# ---------------------------------------------------------------- the fixes, one family each (fast)
def _quiet_build(family):
    transformers.logging.set_verbosity_error()
    model, inputs = hf_zoo.build(family)
    return model, inputs


def test_committed_table_was_measured_on_the_pinned_transformers():
    """benchmarks/results/hf_zoo.md is the pinned run (constraints.txt); make test-latest writes hf_zoo_latest.md."""
    pinned = next(
        line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.startswith("transformers==")
    )
    version, _ = _pinned_table()
    assert version == pinned


def test_baseline_is_every_family_the_pinned_table_finds_identical():
    """The regression baseline and the committed table name the same identical families: one the table
    records but the baseline lacks could regress unnoticed, one the baseline holds but the table does
    not is a stale claim."""
    _, outcomes = _pinned_table()
    identical = {f for f, outcome in outcomes.items() if outcome == "identical"}
    baseline = _baseline()
    assert len(baseline) == len(set(baseline)), sorted(f for f in baseline if baseline.count(f) > 1)
    missing = sorted(identical - set(baseline))
    assert missing == [], f"identical in {PINNED_TABLE.name}, absent from {BASELINE.name}: {missing}"
    stale = sorted(set(baseline) - identical)
    assert stale == [], f"in {BASELINE.name}, not identical in {PINNED_TABLE.name}: {stale}"


def test_pinned_table_summary_counts_its_rows():
    """The table's title and summary line (what the README quotes) agree with its rows."""
    text = PINNED_TABLE.read_text()
    _, outcomes = _pinned_table()
    lines = text.splitlines()
    assert lines[0].endswith(f": {len(outcomes)} families with a rotary embedding")
    by_outcome = {outcome: sum(o == outcome for o in outcomes.values()) for outcome in hf_zoo.ORDER}
    assert lines[2].split(" (sweep")[0] == ", ".join(f"{n} {outcome}" for outcome, n in by_outcome.items() if n)


def test_drift_lists_only_the_families_whose_outcome_changed():
    pinned = hf_zoo.table(
        [hf_zoo.Result("gptj", "identical"), hf_zoo.Result("llama", "identical"), hf_zoo.Result("gone", "refused")]
    )
    now = [hf_zoo.Result("gptj", "refused"), hf_zoo.Result("llama", "identical"), hf_zoo.Result("new", "identical")]
    lines = hf_zoo.drift(pinned, now)
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| family")]
    assert rows == ["| gone | refused | absent |", "| gptj | identical | refused |", "| new | absent | identical |"]
    assert "Every family" in "\n".join(
        hf_zoo.drift(
            pinned,
            [hf_zoo.Result("gptj", "identical"), hf_zoo.Result("llama", "identical"), hf_zoo.Result("gone", "refused")],
        )
    )


def test_sweep_detects_a_rotation_that_is_not_exercised():
    model, inputs = _quiet_build("llama")
    want = hf_zoo._run(model, inputs)
    patch(model)
    assert hf_zoo._perturb(model) == 1
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) > hf_zoo.MOVED


def test_double_angles_turns_every_pair_twice_as_far():
    angles = torch.linspace(-7.0, 7.0, 101, dtype=torch.float64)
    cos, sin = hf_zoo.double_angles((angles.cos(), angles.sin()))
    torch.testing.assert_close(cos, (2 * angles).cos(), atol=1e-12, rtol=0)
    torch.testing.assert_close(sin, (2 * angles).sin(), atol=1e-12, rtol=0)
    freqs_cis = torch.polar(torch.ones_like(angles), angles)
    torch.testing.assert_close(hf_zoo.double_angles(freqs_cis), torch.polar(torch.ones_like(angles), 2 * angles))
    torch.testing.assert_close(hf_zoo.double_angles(angles), 2 * angles)
    assert hf_zoo.double_angles((angles,)) is None  # not a rotary output: reported, not guessed


def test_a_rotary_module_the_forward_never_calls_is_reported():
    """Granite SWA builds a rotary_emb it never uses (rotary_embs hold the per-layer bases)."""
    model, inputs = _quiet_build("granite_swa")
    want = hf_zoo._run(model, inputs)
    assert hf_zoo._unreached(model, inputs, want, ["rotary_emb", "rotary_embs.0"]) == {"rotary_emb": "not called"}
    assert hf_zoo.exempt("granite_swa", "rotary_emb") and not hf_zoo.exempt("granite_swa", "rotary_embs.0")


def test_idefics_exemption_pattern_matches_every_layer_and_nothing_else():
    assert hf_zoo.exempt("idefics", "gated_cross_attn_layers.7.cross_attn.rotary_emb")
    assert not hf_zoo.exempt("idefics", "layers.0.self_attn.rotary_emb")


def test_vision_inputs_reach_the_vision_rotary_module():
    """Qwen2-VL: pixels on a patch grid with image_grid_thw and image tokens in the text go through the
    vision tower; its rotary module is called once and turning it moves the output."""
    model, inputs = _quiet_build("qwen2_vl")
    assert {"pixel_values", "image_grid_thw", "mm_token_type_ids"} <= set(inputs)
    want = hf_zoo._run(model, inputs)
    calls, moved = hf_zoo.reach(model, inputs, want, "visual.rotary_pos_emb")
    assert calls == 1 and moved > hf_zoo.MOVED
    assert hf_zoo.tower(model, "visual.rotary_pos_emb") == "vision"
    assert hf_zoo.tower(model, "language_model.rotary_emb") == "text"


def test_shrink_keeps_tied_sizes_and_distinct_special_tokens():
    transformers.logging.set_verbosity_error()
    config = hf_zoo_configs.tiny_config("qwen3_vl")
    assert config.vision_config.out_hidden_size == config.text_config.hidden_size == 64
    ids = [config.image_token_id, config.video_token_id, config.vision_start_token_id, config.vision_end_token_id]
    text_ids_end = hf_zoo.hf_zoo_inputs._TEXT_IDS[1]  # the random text stays below the special tokens
    assert len(set(ids)) == 4 and all(text_ids_end <= i < config.text_config.vocab_size for i in ids)
    head_dim = config.text_config.head_dim
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_module_sections_are_read_from_the_modeling_file():
    assert hf_zoo_configs.module_sections("qwen2_vl") == [16, 24, 24]
    assert hf_zoo_configs.module_sections("llama") is None


def test_remains_groups_refusals_by_cause():
    made_up = [
        hf_zoo.Result("a", "refused", "PatchError: cannot patch XModel: RoPE inside attention, no module to replace"),
        hf_zoo.Result("b", "refused", "PatchError: cannot patch rotary_emb: it returns complex freqs_cis (4, 8)"),
        hf_zoo.Result("c", "not buildable", "ImportError: X requires the timm library"),
        hf_zoo.Result("d", "identical", "error 1e-7"),
    ]
    text = "\n".join(hf_zoo.remains(made_up))
    assert "RoPE inside attention" in text and "complex freqs_cis" in text and "timm" in text and ": d" not in text
    assert "(refused, 1): a" in text and "(refused, 1): b" in text  # two causes, one group each


@pytest.mark.parametrize("family", ["deepseek_v3", "glm4_moe_lite"])
def test_rope_interleave_families_keep_half_split_tables(family):
    model, inputs = _quiet_build(family)
    assert model.config.rope_interleave is True
    want = hf_zoo._run(model, inputs)
    patch(model)
    adapters = [m for m in model.modules() if isinstance(m, HFRotaryAdapter)]
    assert adapters and all(a.cfg.layout == "interleaved" and a.table_layout == "half" for a in adapters)
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("verify", [True, False])
def test_complex_freqs_cis_get_a_complex_adapter(verify):
    # DeepSeek-V2's attention multiplies q by complex freqs_cis: the adapter answers in kind, verified or not.
    model, inputs = _quiet_build("deepseek_v2")
    want = hf_zoo._run(model, inputs)
    patch(model, verify=verify)
    assert isinstance(model.rotary_emb, HFComplexRotaryAdapter)
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)


def test_gpt_oss_half_width_tables():
    model, inputs = _quiet_build("gpt_oss")
    want = hf_zoo._run(model, inputs)
    patch(model)
    adapter = next(m for m in model.modules() if isinstance(m, HFRotaryAdapter))
    assert adapter.table_layout == "pairs"
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", ["granite_swa", "granitemoe_swa"])
def test_granite_swa_runs_after_patch(family):
    model, inputs = _quiet_build(family)
    want = hf_zoo._run(model, inputs)
    patch(model)
    assert all(m.config is not None for m in model.modules() if isinstance(m, HFRotaryAdapter))
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)


def _identical_after_patch(model, inputs):
    """Patch, compare with the unpatched output, and return (output, layer-typed adapters)."""
    want = hf_zoo._run(model, inputs)
    patch(model)
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)
    adapters = [m for m in model.modules() if isinstance(m, HFRotaryAdapter) and isinstance(m.cfg, LayerTypeRope)]
    assert adapters
    return want, adapters


def _moved(model, inputs, want, adapters, **changes) -> float:
    """How far the output moves when the adapters' RoPE changes (one layer type, or all)."""
    layer_type = changes.pop("layer_type", None)
    saved = [a.cfg for a in adapters]
    for adapter in adapters:
        if layer_type is None:
            adapter.cfg = adapter.cfg.replace(**changes)
        else:
            configs = dict(adapter.cfg.configs, **{layer_type: adapter.cfg[layer_type].replace(**changes)})
            adapter.cfg = LayerTypeRope(configs, adapter.cfg.layer_types)
    moved = hf_zoo._distance(hf_zoo._run(model, inputs), want)
    for adapter, cfg in zip(adapters, saved):
        adapter.cfg = cfg
    return moved


def test_gemma3_each_layer_type_gets_its_own_rope():
    model, inputs = _quiet_build("gemma3")
    want, adapters = _identical_after_patch(model, inputs)
    rope = adapters[0].cfg
    assert (rope["sliding_attention"].base, rope["full_attention"].base) == (1e4, 1e6)
    # Each layer type is served separately: changing either one alone moves the output.
    assert _moved(model, inputs, want, adapters, layer_type="sliding_attention", base=2.0) > hf_zoo.MOVED
    assert _moved(model, inputs, want, adapters, layer_type="full_attention", base=2.0) > hf_zoo.MOVED


def test_gemma4_proportional_full_attention_with_its_global_head():
    model, inputs = _quiet_build("gemma4")
    want, adapters = _identical_after_patch(model, inputs)
    full = adapters[0].cfg["full_attention"]
    assert (full.rope_type, full.head_dim, full.rotated_pairs) == (
        "proportional",
        512,
        64,
    )  # global_head_dim 512, p 0.25
    assert _moved(model, inputs, want, adapters, layer_type="full_attention", base=2.0) > hf_zoo.MOVED


@pytest.mark.parametrize("family", ["modernbert", "olmo3", "deepseek_v4", "t5gemma2", "laguna", "lfm3", "beam"])
def test_per_layer_type_families_are_identical_and_exercised(family):
    model, inputs = _quiet_build(family)
    want, adapters = _identical_after_patch(model, inputs)
    assert _moved(model, inputs, want, adapters, base=2.0) > hf_zoo.MOVED


def test_attributes_and_dtype_the_model_reads_are_kept():
    model, inputs = _quiet_build("lfm3")
    original = model.rotary_emb
    _identical_after_patch(model, inputs)
    assert model.rotary_emb.layer_types == original.layer_types  # Lfm3Model iterates rotary_emb.layer_types
    assert model.rotary_emb.table_dtype == torch.float32  # LFM3's module returns float32 tables for any x
    cos, _ = model.rotary_emb(torch.zeros(1, dtype=torch.bfloat16), torch.arange(3)[None], "full_attention")
    assert cos.dtype == torch.float32
    model, _ = _quiet_build("gemma3")
    patch(model)
    assert model.language_model.rotary_emb.table_dtype is None  # Gemma 3 follows x


def test_nope_layer_type_is_skipped_and_refuses_to_answer():
    model, inputs = _quiet_build("beam")
    _identical_after_patch(model, inputs)
    assert model.rotary_emb.cfg["full_attention"] is None
    with pytest.raises(PatchError, match="layer_type='full_attention' has no RoPE"):
        model.rotary_emb(torch.zeros(1), torch.arange(3)[None], "full_attention")
    with pytest.raises(PatchError, match="layer_type=None is invalid"):
        model.rotary_emb(torch.zeros(1), torch.arange(3)[None])


def test_gemma3n_text_tower_is_identical_after_patch():
    """The sweep builds Gemma 3n from its text config alone (its vision tower needs timm)."""
    model, inputs = _quiet_build("gemma3n")
    assert type(model).__name__ == "Gemma3nTextModel"
    want, adapters = _identical_after_patch(model, inputs)
    assert _moved(model, inputs, want, adapters, base=2.0) > hf_zoo.MOVED


def test_eomt_dinov3_patch_centres():
    """EoMT-DINOv3 rotates each patch by its centre in [-1, 1]: identical after patch, on a
    non-square grid, and moved by another base."""
    model, inputs = _quiet_build("eomt_dinov3")
    original = model.rope_embeddings
    want = hf_zoo._run(model, inputs)
    patch(model)
    adapter = model.rope_embeddings
    assert isinstance(adapter, HFPatchCentreAdapter) and adapter.cfg.rope_type == "axial"
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)
    pixels = torch.zeros(2, 3, 3 * 16, 5 * 16)  # a 3 x 5 grid of 16-pixel patches
    for got, expected in zip(adapter(pixels), original(pixels)):
        assert got.shape == expected.shape == (15, model.config.hidden_size // model.config.num_attention_heads)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    adapter.cfg = adapter.cfg.replace(base=2.0)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) > hf_zoo.MOVED


def test_eomt_dinov3_refuses_training_mode_augmentation():
    model, inputs = _quiet_build("eomt_dinov3")
    patch(model)
    model.train()
    with pytest.raises(PatchError, match="pos_embed_rescale.*model.eval"):
        model.rope_embeddings(inputs["pixel_values"])


def test_folded_position_axes_are_refused_by_name():
    model, _ = _quiet_build("neomme")  # one table from two position axes (M-RoPE style)
    rope = RopeConfig.by_layer_type(model.config)
    one_axis = LayerTypeRope(
        {name: cfg.replace(mrope_section=None, mrope_composition=None) for name, cfg in rope.items()}, rope.layer_types
    )  # NeoMME read without its sections: one axis per pair
    with pytest.raises(
        PatchError, match=r"rotary_emb \(NeoMMERotaryEmbedding, layer type .*folds several position axes"
    ):
        patch(model, one_axis)


def test_neomme_page_and_text_are_identical_after_patch():
    """NeoMME: one encoder over text tokens and image patches, per-layer-type RoPE over two position
    axes (row, column). The sweep's inputs hold a document page with its (row, column) positions and
    a text row, ``position_ids`` ``[2, 2, S]``; text alone passes ``[B, S]`` or nothing."""
    model, inputs = _quiet_build("neomme")
    assert inputs["position_ids"].shape[:2] == (2, 2) and "pixel_values" in inputs
    page_as_text = dict(inputs, position_ids=inputs["position_ids"][:1].expand(2, -1, -1))  # column := row
    text = {"input_ids": inputs["input_ids"][1:], "position_ids": inputs["position_ids"][0, 1:]}  # [B, S]
    text_default = {"input_ids": inputs["input_ids"][1:]}  # no position_ids: arange on both axes
    wants = [hf_zoo._run(model, one) for one in (page_as_text, text, text_default)]
    assert hf_zoo._distance(wants[0], hf_zoo._run(model, inputs)) > hf_zoo.MOVED  # the column axis matters
    want, adapters = _identical_after_patch(model, inputs)
    for one, expected in zip((page_as_text, text, text_default), wants):
        torch.testing.assert_close(hf_zoo._run(model, one), expected, atol=1e-4, rtol=0)
    rope = adapters[0].cfg
    assert {name: (cfg.mrope_section, cfg.mrope_composition) for name, cfg in rope.items()} == {
        "sliding_attention": ((4, 4), "interleaved"),
        "full_attention": ((1, 1), "interleaved"),
    }
    assert _moved(model, inputs, want, adapters, layer_type="sliding_attention", base=2.0) > hf_zoo.MOVED
    assert _moved(model, inputs, want, adapters, layer_type="full_attention", base=2.0) > hf_zoo.MOVED
    assert hf_zoo.served_towers(model, "rotary_emb", "neomme") == ("text", "vision")


def test_an_imposed_config_serves_every_layer_type():
    model, inputs = _quiet_build("olmo3")
    want = hf_zoo._run(model, inputs)
    patch(model, RopeConfig(head_dim=16, base=2.0), verify=False)
    assert isinstance(model.rotary_emb.cfg, RopeConfig)
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) > hf_zoo.MOVED
    with pytest.raises(PatchError, match="does not reproduce"):
        patch(_quiet_build("olmo3")[0], RopeConfig(head_dim=16, base=2.0))
    # A LayerTypeRope imposes one RoPE per layer type (e.g. context extension of the full-attention layers).
    model, inputs = _quiet_build("gemma3")
    rope = RopeConfig.by_layer_type(model.config.text_config)
    stretched = LayerTypeRope(
        dict(rope.configs, full_attention=rope["full_attention"].replace(rope_type="linear", factor=64.0)),
        rope.layer_types,
    )
    want = hf_zoo._run(model, inputs)
    patch(model, stretched, verify=False)
    assert model.language_model.rotary_emb.cfg is stretched
    assert hf_zoo._distance(hf_zoo._run(model, inputs), want) > hf_zoo.MOVED


# ---------------------------------------------------------------- config keys (no model needed)
def test_ministral3_keys_outside_the_tables_are_accepted():
    cfg = RopeConfig.from_hf(
        {
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "llama_4_scaling_beta": 0.1,
                "max_position_embeddings": 4096,
            },
        }
    )
    assert cfg.base == 1e6 and cfg.max_position_embeddings == 4096


def test_a_disagreeing_copy_of_max_position_embeddings_is_rejected():
    with pytest.raises(RopeConfigError, match="rope_parameters.max_position_embeddings"):
        RopeConfig.from_hf(
            {
                "head_dim": 16,
                "max_position_embeddings": 4096,
                "rope_parameters": {"rope_theta": 1e6, "max_position_embeddings": 8192},
            }
        )


def test_other_unknown_rope_keys_are_still_rejected():
    with pytest.raises(RopeConfigError, match="alpha"):  # HunYuan's NTK alpha: not read by ropelab
        RopeConfig.from_hf({"head_dim": 16, "rope_parameters": {"rope_theta": 1e6, "alpha": 1000.0}})


def test_whole_float_lengths_are_read_as_integers():
    cfg = RopeConfig.from_hf({"head_dim": 16, "max_position_embeddings": 2048.0})
    assert cfg.max_position_embeddings == 2048 and isinstance(cfg.max_position_embeddings, int)
    with pytest.raises(RopeConfigError, match="max_position_embeddings"):
        RopeConfig.from_hf({"head_dim": 16, "max_position_embeddings": 2048.5})


def test_n_heads_spelling():
    assert RopeConfig.from_hf({"d_model": 64, "n_heads": 4}).head_dim == 16


def test_attribute_map_aliases_are_read_like_transformers_reads_them():
    """Zamba2 maps head_dim to attention_head_dim (2 * hidden / heads), which to_dict() leaves out."""
    kwargs = hf_zoo_configs.shrunk_kwargs(transformers.Zamba2Config)
    kwargs.pop("head_dim")
    config = transformers.Zamba2Config(**kwargs, use_mem_rope=True)
    assert (
        "head_dim" not in config.to_dict() and config.head_dim == 2 * config.hidden_size // config.num_attention_heads
    )
    assert RopeConfig.from_hf(config).head_dim == config.head_dim
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval()
    inputs = {"input_ids": torch.randint(3, 100, (1, 12))}
    want = hf_zoo._run(model, inputs)
    patch(model)
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)


def test_a_rotary_dim_that_transformers_ignores_is_ignored():
    """MiniMax-M3-VL's text config declares rotary_dim=64; its rotary module rotates the whole head."""
    transformers.logging.set_verbosity_error()
    config = transformers.MiniMaxM3VLTextConfig(**hf_zoo_configs.shrunk_kwargs(transformers.MiniMaxM3VLTextConfig))
    assert config.rotary_dim == 64 and config.head_dim == 16
    assert RopeConfig.from_hf(config).rotary_dim == 16
    assert RopeConfig.from_hf({"head_dim": 16, "rotary_dim": 8}).rotary_dim == 8  # honoured elsewhere
    model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval()
    inputs = {"input_ids": torch.randint(3, 100, (1, 12))}
    want = hf_zoo._run(model, inputs)
    patch(model)
    torch.testing.assert_close(hf_zoo._run(model, inputs), want, atol=1e-4, rtol=0)
