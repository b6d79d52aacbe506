"""The explain / compare / tour commands, run as a user would (exit codes, one-line errors)."""

import json
import math
import re
import subprocess
import sys

import pytest

from ropelab import RopeConfig
from ropelab.cli import main
from ropelab.explain.cards import card_summary, compare_rows, labelled_cards, summary_rows, verdict
from ropelab.presets import preset


def run(*argv):
    return subprocess.run([sys.executable, "-m", "ropelab.cli", *argv], capture_output=True, text=True, timeout=120)


# Lower bound of the RoPE base for d = 128 at 8k tokens, to two digits: Men et al. 2024, "Base of RoPE
# Bounds Context Length" (arXiv 2405.14591), Table 2; Su Jianlin (kexue.fm/archives/10122) has the same.
MEN_TABLE_2_8K = 8.4e4


def test_explain_llama2_at_8192_prints_table_and_verdict(capsys):
    assert main(["explain", "llama-2-7b", "--context", "8192"]) == 0
    out = capsys.readouterr().out
    for expected in ("critical dimension", "92 of 128", "18 of 64", "position interpolation"):
        assert expected in out
    # The min base row agrees with the paper at the paper's precision, and the verdict quotes the same number.
    row = next(line for line in out.splitlines() if "min base for 8,192" in line)
    printed = re.search(r"(\d\.\d+e[+-]\d+) \(Men et al\. 2024\)", row).group(1)
    assert float(f"{float(printed):.1e}") == MEN_TABLE_2_8K, row
    assert f"below the {printed} that Men et al." in " ".join(out.split())


def test_explain_reads_a_config_json(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 4096,
                                "rope_theta": 10000.0, "model_type": "llama"}))  # fmt: skip
    assert main(["explain", str(path), "--context", "2048"]) == 0
    assert "Nothing breaks" in capsys.readouterr().out


def test_explain_writes_a_plot(tmp_path):
    target = tmp_path / "fig.png"
    assert main(["explain", "llama-2-7b", "--context", "8192", "--plot", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv",
    [
        ("explain", "no-such-model"),
        ("explain", "/definitely/missing/config.json"),
        ("explain", "llama-2-7b", "--context", "-1"),
        ("compare", "llama-2-7b", "nope"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv):
    result = run(*argv)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_config_json_exits_2(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    result = run("explain", str(path))
    assert result.returncode == 2 and "not JSON" in result.stderr


def test_compare_highlights_differences(capsys):
    assert main(["compare", "gpt-j-6b", "gpt-neox-20b", "llama-2-7b"]) == 0
    out = capsys.readouterr().out
    assert "* layout" in out and "* rotary_dim" in out and "fields differ" in out


def test_compare_rows_mark_only_real_differences():
    a = card_summary(preset("llama-2-7b"), 4096, with_base_bound=False)
    b = card_summary(preset("code-llama-7b"), 4096, with_base_bound=False)
    differing = {name for name, _, differs in compare_rows([a, b]) if differs}
    assert "base" in differing and "layout" not in differing and "head_dim" not in differing


def test_verdict_for_scaled_card_within_its_extended_length():
    cfg = preset("llama-3.1-8b")
    text = verdict(card_summary(cfg, 16384, with_base_bound=False))
    assert "llama3" in text and "16,384" in text


def test_tour_writes_fourteen_figures_and_html(tmp_path):
    from ropelab.explain.tour import STEPS, run_tour

    assert len(STEPS) == 14
    results = run_tour(str(tmp_path))
    assert all(r.passed for r in results)
    assert sorted(p.name for p in tmp_path.glob("step_*.png")) == [f"step_{i:02d}.png" for i in range(1, 15)]
    page = (tmp_path / "tour.html").read_text()
    assert page.count("data:image/png;base64,") == 14 and "src='http" not in page
    # The tour links to the explorer written beside it, with the tour's LLaMA-2 card in it.
    assert "href='explorer.html'" in page
    explorer = (tmp_path / "explorer.html").read_text()
    assert "llama-2-7b" in explorer and "<script" in explorer


@pytest.mark.parametrize(
    "command", [("explain", "llama-2-7b", "--plot", "{file}/fig.png"), ("tour", "--out", "{file}/tour")]
)
def test_output_path_inside_a_file_exits_2_with_one_line(tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv = [part.format(file=blocker) for part in command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not be" in err[0] and "a-file" in err[0]


# ---------------------------------------------------------------- per-layer-type models and p-RoPE
GEMMA4_TEXT = {
    "model_type": "gemma4_text",
    "head_dim": 256,
    "global_head_dim": 512,
    "hidden_size": 2560,
    "num_attention_heads": 8,
    "max_position_embeddings": 131072,
    "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
    "rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1000000.0},
    },
}  # transformers' Gemma4TextConfig defaults


@pytest.fixture
def wide(monkeypatch):
    """A console wide enough that rich wraps no table cell (the checks read whole cells)."""
    monkeypatch.setenv("COLUMNS", "400")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_explain_per_layer_type_model_prints_one_card_per_layer_type(capsys, wide):
    assert main(["explain", "gemma-3-12b-it", "--context", "8192"]) == 0
    out = _flat(capsys.readouterr().out)
    assert out.count("property") == 2 and out.count("'RoPE' here means") == 2
    assert "sliding_attention layers: 0-4, 6-10" in out and "(40 of 48 layers)" in out
    assert "full_attention layers: 5, 11, 17" in out and "(8 of 48 layers)" in out
    assert "linear (factor=8)" in out and "gemma-3-12b-it (google/gemma-3-12b-it) [full_attention]" in out


def test_a_linear_card_says_its_trained_length_is_assumed():
    full = preset("gemma-3-12b-it:full_attention")  # linear x8 over max_position_embeddings 131072
    summary = card_summary(full, 131072, with_base_bound=False)
    rows = dict(summary_rows(summary))
    assert rows["trained length"] == "131,072 (assumed: max_position_embeddings; linear configs state none)"
    assert "Nothing breaks" not in verdict(summary) and "assumed trained length 131,072" in verdict(summary)
    stated = card_summary(full.replace(original_max_position_embeddings=32768), 131072, with_base_bound=False)
    assert dict(summary_rows(stated))["trained length"] == "32,768" and stated.out_of_range == 0
    assert "past the pretraining length 32,768" in verdict(stated) and "assumed" not in verdict(stated)


def test_explain_nope_layer_type_says_it_has_no_rope(tmp_path, capsys, wide):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "head_dim": 64,
                "max_position_embeddings": 4096,
                "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
                "rope_parameters": {
                    "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                    "full_attention": None,
                },
            }
        )
    )
    assert main(["explain", str(path)]) == 0
    out = _flat(capsys.readouterr().out)
    assert "full_attention layers: 1 (1 of 3 layers): no RoPE (NoPE)" in out
    assert out.count("'RoPE' here means") == 1 and "0, 2 (2 of 3 layers)" in out


def test_p_rope_card_names_the_pairs_that_never_rotate(tmp_path, capsys, wide):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(GEMMA4_TEXT))
    assert main(["explain", f"{path}:full_attention", "--context", "200000"]) == 0
    out = _flat(capsys.readouterr().out)
    assert "p-RoPE: 64 of 256 pairs turn" in out
    assert "pairs 64..255 (channels 64..255 and 320..511) have frequency 0 and never rotate" in out
    summary = card_summary(RopeConfig.from_hf(GEMMA4_TEXT, layer_type="full_attention"), 200_000, with_base_bound=False)
    assert summary.frozen_pairs == 192 and summary.out_of_range == 0 and summary.critical_dimension == 128
    assert math.isfinite(summary.longest_wavelength)  # over the pairs that turn
    assert "no pair meets a new angle" in verdict(summary) and "the other 192 never turn" in verdict(summary)


def test_compare_expands_layer_types_into_columns(tmp_path, capsys, wide):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(GEMMA4_TEXT))
    assert main(["compare", str(path), "gemma-3-12b-it"]) == 0
    out = _flat(capsys.readouterr().out)
    assert out.count(":sliding_attention") >= 2 and out.count(":full_attention") >= 2
    assert "* pairs that never rotate" in out and "192" in out
    cards = labelled_cards("gemma-3-12b-it", preset("gemma-3-12b-it"))
    assert [label for label, _ in cards] == ["gemma-3-12b-it:sliding_attention", "gemma-3-12b-it:full_attention"]


def test_per_layer_type_plot_writes_one_figure_per_layer_type(tmp_path):
    target = tmp_path / "fig.png"
    assert main(["explain", "gemma-3-12b-it", "--context", "262144", "--plot", str(target)]) == 0
    for layer_type in ("sliding_attention", "full_attention"):
        assert (tmp_path / f"fig-{layer_type}.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_layer_type_exits_2_naming_it():
    result = run("explain", "gemma-3-12b-it:global")
    assert result.returncode == 2 and "layer_type='global'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_axial_card_names_the_pairs_its_axial_pairs_leave_over():
    # 3 slots of 2 pairs out of 16: pairs 6..15 get frequency 0, as p-RoPE's frozen pairs do
    cfg = RopeConfig(
        head_dim=32,
        rope_type="axial",
        axial_pairs=(2, 2, 2),
        axial_order=(0, 1, 2),
        axial_frequencies="repeated",
        base=100.0,
        max_position_embeddings=4096,
    )
    summary = card_summary(cfg, 64)
    rows = dict(summary_rows(summary))
    assert summary.frozen_pairs == 10 and summary.critical_dimension == 12  # capped at the 6 pairs that turn
    assert rows["head_dim / rotary_dim"] == "32 / 32 (6 of 16 pairs turn)"
    assert (
        rows["pairs that never rotate"] == "pairs 6..15 (channels 6..15 and 22..31) have frequency 0 and never rotate"
    )
    assert rows["column axis"] == "12 pairs: 4-15; wavelengths 6.283 .. 62.83 positions (10 never turn)"
    assert "inf" not in " ".join(rows.values())
    text = verdict(summary)
    assert "rotate the first 6 of 16 pairs" in text and "The other 10: pairs 6..15" in text
    assert "one of the 3 coordinates of its token" in text and "image patch" not in text
    # ESMFold 2's atom encoder: 2 + 2 + 2 + num_uid_rope_pairs of its 16 pairs turn
    from transformers.models.esmfold2.configuration_esmfold2 import EsmFold2AtomEncoderConfig

    esm = card_summary(RopeConfig.from_hf(EsmFold2AtomEncoderConfig(num_uid_rope_pairs=4)), 64)
    assert esm.frozen_pairs == 6 and math.isfinite(esm.longest_wavelength)
    assert dict(summary_rows(esm))["pairs that never rotate"].startswith("pairs 10..15 (channels 10..15 and 26..31)")
