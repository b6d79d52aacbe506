"""The demo tables are computed, not printed constants."""

import subprocess
import sys

import pytest

from ropelab.demo import precision_rows, type_rows


def test_type_rows_follow_each_types_definition():
    rows = {row.rope_type: row for row in type_rows(head_dim=64, base=10000.0, seq_len=16384)}
    assert rows["default"].last_pair_ratio == 1.0
    for stretched in ("linear", "ntk", "yarn", "llama3"):  # the slowest pair is interpolated by the factor 4
        assert rows[stretched].last_pair_ratio == pytest.approx(0.25, rel=1e-9)
    assert rows["linear"].first_inv_freq == pytest.approx(0.25)  # PI also slows the fastest pair
    assert rows["ntk"].first_inv_freq == 1.0 and rows["yarn"].first_inv_freq == 1.0
    assert rows["yarn"].attention_factor > 1.0


def test_precision_rows_show_float32_angles_drift_and_ropelab_does_not():
    rows = precision_rows(head_dim=64, base=500000.0, exponents=(10, 20, 24))
    assert [row.position for row in rows] == [2**10, 2**20, 2**24]
    assert all(row.ropelab_score_drift < 1e-6 for row in rows)
    assert all(row.ropelab_cos_error < 1e-7 for row in rows)  # one float32 rounding of the exact cosine
    assert rows[-1].float32_score_drift > 1e-2 > rows[0].float32_score_drift
    assert rows[1].float32_angle_error > 1e-2


def test_cli_types_and_precision_run():
    for command in ("types", "precision"):
        result = subprocess.run([sys.executable, "-m", "ropelab.cli", command], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "2^24" in result.stdout or "llama3" in result.stdout
