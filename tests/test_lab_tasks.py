"""`ropelab lab tasks`: generators, a tiny run that learns, bad input (one line, exit 2), the report section."""

from __future__ import annotations

import json

import pytest
import torch

from ropelab.cli import main
from ropelab.lab import LabError
from ropelab.lab.report import check_task_claims, mean_reciprocal_rank, normalise, write_tasks_report
from ropelab.lab.synthetic import TaskSettings, run_tasks
from ropelab.lab.tasks import IGNORE, copy_batch, recall_batch, task_batch, vocab_size


def test_recall_answers_are_the_values_that_followed_each_key():
    b = recall_batch(16, 40, 6, seed=3, step=2, keys=5, pairs=3)
    assert b.inputs.shape == b.targets.shape == (16, 40) and b.depth.shape == (16, 3)
    for row, target in zip(b.inputs.tolist(), b.targets.tolist()):
        asked = [i for i, t in enumerate(target) if t != IGNORE]
        assert asked == [35, 37, 39]  # after a context of 40 - 2 * 3 + 1 tokens
        for i in asked:
            key = row[i]
            assert key >= 6  # a key token
            first = row.index(key)
            assert first < 35 and row[first + 1] == target[i]  # the value that followed the needle
            assert row[:35].count(key) == 1  # keys appear once in the context, never in the filler
    assert 0.0 <= b.depth.min() and b.depth.max() <= 1.0


def test_generators_are_pure_functions_of_seed_and_step():
    a, b = task_batch("recall", 4, 32, 16, 0, 7), task_batch("recall", 4, 32, 16, 0, 7)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, task_batch("recall", 4, 32, 16, 0, 8).inputs)
    one = task_batch("induction", 8, 20, 4, 1, 0)  # Mamba's form: one trigger, asked at the end
    assert (one.inputs[:, -1] == 4).all() and ((one.inputs == 4).sum(1) == 2).all()
    assert (one.targets != IGNORE).sum() == 8 and vocab_size("induction", 4) == 5


def test_copy_targets_are_the_string_again():
    b = copy_batch(3, 12, 4, seed=0, step=0)
    n = 5
    assert torch.equal(b.targets[:, n : 2 * n], b.inputs[:, :n]) and (b.inputs[:, n] == 4).all()
    assert ((b.targets != IGNORE).sum(1) == n).all()


def _tiny(**fields) -> TaskSettings:
    base = TaskSettings()
    return base.override(
        model=dict(max_positions=16, dim=32, num_heads=2),
        train=dict(steps=300, batch_size=64, lr=3e-3, warmup_steps=10, checkpoint_every=10**9),
        **{"encodings": ("rope",), "seeds": 1, "vocab": 4, "multiples": (1, 2), "eval_tokens": 512, **fields},
    )


def test_a_tiny_run_learns_and_the_report_section_is_written_atomically(tmp_path):
    settings = _tiny(task="induction")
    results = run_tasks(settings, tmp_path, progress=False, log=lambda line: None)
    at_l = results["runs"]["rope"][0]["accuracy"][16]
    assert at_l > 0.4  # chance is 1/4 (32 answers: 0.4 is two standard deviations above it): the model retrieves
    assert set(results["runs"]) == {"rope", "rope+linear", "rope+yarn"}
    assert results["runs"]["rope+linear"][0]["accuracy"][16] == at_l  # factor 1 changes nothing
    path = write_tasks_report(results, tmp_path)
    page = path.read_text()
    assert (
        "Retrieval from scratch" in page
        and "Mamba" in page
        and "Kazemnejad" in page
        and "data:image/png;base64" in page
    )
    stored = json.loads((tmp_path / "tasks.json").read_text())
    assert stored["claims"][0]["claim"].startswith("every encoding")
    assert not [p.name for p in tmp_path.rglob(".*tmp*")]  # no temporary left behind


def test_training_stops_at_the_validation_target_and_a_rerun_reuses_the_checkpoint(tmp_path):
    settings = _tiny(task="recall", target=0.3, check_every=20)  # chance is 1/4: reached within the cap
    record = run_tasks(settings, tmp_path, progress=False, log=lambda line: None)["runs"]["rope"][0]["train"]
    assert record["stopped_early"] and record["steps"] < 300 and record["steps"] % 20 == 0
    assert max(record["valid"].values()) == record["valid"][record["steps"]] >= 0.3
    again = run_tasks(settings, tmp_path, progress=False, log=lambda line: None)["runs"]["rope"][0]["train"]
    assert again["steps"] == record["steps"] and again["valid"] == record["valid"]


def test_claims_and_rank_on_made_up_numbers():
    runs = {
        name: {0: {"accuracy": {32: 1.0, 64: acc}, "by_depth": {32: [1.0], 64: [acc]}}}
        for name, acc in dict(nope=0.9, t5=0.8, alibi=0.7, rope=0.3, sinusoidal=0.1).items()
    }
    runs["rope+yarn"] = {0: {"accuracy": {32: 1.0, 64: 0.6}, "by_depth": {32: [1.0], 64: [0.6]}}}
    results = normalise(
        {
            "settings": {
                "length": 32,
                "encodings": ["nope", "t5", "alibi", "rope", "sinusoidal"],
                "zero_shot": ["yarn"],
            },
            "runs": runs,
        }
    )
    held = [c["held"] for c in check_task_claims(results)]
    assert held == [True, True, True]
    assert mean_reciprocal_rank(results, ["nope", "rope"]) == {"nope": 1.0, "rope": 0.5}


def test_the_settings_name_what_is_wrong():
    with pytest.raises(LabError, match="task='fancy' is unknown"):
        TaskSettings(task="fancy")
    with pytest.raises(LabError, match="seeds=0"):
        TaskSettings(seeds=0)


@pytest.fixture
def untouched(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "tasks.json").write_text('{"sentinel": true}')
    yield out
    assert (out / "tasks.json").read_text() == '{"sentinel": true}'
    assert [p.name for p in out.iterdir()] == ["tasks.json"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--task", "fancy"], "task='fancy' is unknown"),
        (["--encodings", "rope,fancy"], "encoding='fancy' is unknown"),
        (["--length", "0"], "--length 0 is invalid"),
        (["--length", "-4"], "--length -4 is invalid"),
        (["--length", "32", "--test-lengths", "16,32"], "expected test lengths >= L = 32"),
        (["--vocab", "1"], "vocab=1 is too small"),
        (["--seeds", "0"], "seeds=0 is invalid"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(untouched, capsys, argv, match):
    code = main(["lab", "tasks", "--quick", "--out", str(untouched), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and match in err, err
