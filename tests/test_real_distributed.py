"""The real-model fine-tune across 2 processes under ``torchrun`` (gloo, CPU) on a tiny random Llama:
FSDP2 follows one process's loss curve and hands over the same weights, a run killed mid-way resumes
to the same result, its sharded checkpoint resumes in one process, mixed precision computes in
bfloat16 over float32 master weights, bad input under torchrun exits 2 before joining, and the whole
``ropelab extend --finetune pose`` under torchrun hands over what rank 0 measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from real_finetune_worker import TARGET, TRAINED, documents, settings  # noqa: E402
from real_helpers import tiny_llama  # noqa: E402

from ropelab.real.evaluate import use_rope  # noqa: E402
from ropelab.real.finetune import finetune  # noqa: E402
from ropelab.real.load import load_model  # noqa: E402
from ropelab.real.stages import method_config  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "real_finetune_worker.py"


def torchrun(*arguments: str, module: bool = False) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2`` of the worker (or of ``python -m``), this checkout's sources first."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
        "OMP_NUM_THREADS": "1",
    }
    target = ["-m", *arguments] if module else [str(WORKER), *arguments]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *target]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def one_process(folder: Path, steps: int, *, mixed_precision: bool = False, checkpoint: Path | None = None):
    """The same fine-tune as the worker's, in this process: ``(losses, state dict)``."""
    loaded = load_model(str(folder))
    use_rope(loaded.model, method_config(loaded.rope, "linear", TRAINED, TARGET))
    run = settings(steps, mixed_precision, checkpointing=False)
    losses = finetune(
        loaded.model, documents(loaded.model.config.vocab_size), run, method="linear", checkpoint=checkpoint
    )
    return losses, loaded.model.state_dict()


def handed_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(out / "handed" / "model.safetensors")


def assert_same_weights(ours: dict, theirs: dict, atol: float = 1e-5) -> None:
    assert set(theirs) <= set(ours)
    for name, weight in theirs.items():
        assert torch.allclose(ours[name], weight, atol=atol), (name, (ours[name] - weight).abs().max().item())


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama", max_positions=TRAINED)


@pytest.fixture(scope="module")
def reference(folder):
    """One process, 6 steps of 2 windows, float32."""
    return one_process(folder, 6)


@pytest.fixture(scope="module")
def two_processes(folder, tmp_path_factory):
    """2 processes, the same 6 steps (each rank 1 of the step's 2 windows), gradient checkpointing on."""
    out = tmp_path_factory.mktemp("fsdp")
    done = torchrun(str(folder), str(out), "--gradient-checkpointing")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "result.json").read_text())


def test_two_processes_follow_one_process_and_hand_over_the_same_weights(reference, two_processes):
    losses, weights = reference
    out, result = two_processes
    assert result["processes"] == 2 and result["dtypes"]["compute"] == "torch.float32"
    assert len(result["losses"]) == len(losses) == 6 and losses[-1] < losses[0]  # it learned: not vacuous
    assert result["losses"] == pytest.approx(losses, rel=1e-5, abs=1e-6)
    assert_same_weights(handed_weights(out), weights)
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(out / "handed").state_dict()  # the hand-over reloads as is
    assert_same_weights(plain, weights)
    record = json.loads((out / "checkpoint" / "latest.json").read_text())
    assert record["step"] == 6 and record["processes"] == 2
    shards = sorted(p.name for p in (out / "checkpoint" / record["folder"]).glob("*.distcp"))
    assert len(shards) == 2  # every rank wrote its own shard


def test_a_two_process_run_killed_mid_way_resumes_to_the_same_result(folder, two_processes, tmp_path):
    out, uninterrupted = two_processes
    killed = torchrun(str(folder), str(tmp_path), "--die-after", "3")
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr
    record = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    assert record["step"] == 2 and not (tmp_path / "result.json").exists()  # step 3 was lost with the process
    resumed = torchrun(str(folder), str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["losses"] == uninterrupted["losses"]
    assert_same_weights(handed_weights(tmp_path), handed_weights(out), atol=0.0)


def test_a_two_process_checkpoint_resumes_in_one_process(folder, two_processes, tmp_path):
    """torch.distributed.checkpoint reshards: the 2-process checkpoint at step 6 continues to step 8 in one
    process as a one-process run of 8 steps does."""
    import shutil

    out, _ = two_processes
    shutil.copytree(out / "checkpoint", tmp_path / "checkpoint")
    continued, weights = one_process(folder, 8, checkpoint=tmp_path / "checkpoint")
    straight, expected = one_process(folder, 8)
    assert continued == pytest.approx(straight, rel=1e-5, abs=1e-6)
    assert_same_weights(weights, expected)


def test_mixed_precision_computes_in_bfloat16_over_float32_master_weights(folder, tmp_path):
    done = torchrun(str(folder), str(tmp_path), "--mixed-precision", "--steps", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["dtypes"]["compute"] == "torch.bfloat16"  # FSDP all-gathered the weights in bfloat16
    full, _ = one_process(folder, 3)
    autocast, _ = one_process(folder, 3, mixed_precision=True)
    assert result["losses"] == pytest.approx(autocast, rel=2e-2)  # bfloat16 rounding, not another run
    assert result["losses"] != full
    assert all(w.dtype == torch.float32 for w in handed_weights(tmp_path).values())


def test_torchrun_with_the_finetune_off_exits_2_and_writes_nothing(folder, tmp_path):
    out = tmp_path / "out"
    done = torchrun("ropelab.cli", "extend", "--model", str(folder), "--out", str(out), "--quiet", module=True)
    lines = [line for line in done.stderr.splitlines() if line.startswith("ropelab extend: error:")]
    # Once one process exits 2, torchrun's agent stops the other: it may or may not have printed its line yet.
    assert 1 <= len(lines) <= 2 and all("--finetune none is invalid under torchrun (2 processes)" in x for x in lines)
    assert "exitcode  : 2" in done.stderr  # torchrun reports the first process's exit code 2 (and exits 1 itself)
    assert not out.exists()


def test_every_process_of_a_torchrun_with_the_finetune_off_exits_2_before_joining(folder, tmp_path):
    """Both ranks, started as torchrun starts them (its environment, no agent to stop either), refuse on their own."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "ropelab.cli", "extend", "--model", str(folder), "--out", str(out), "--quiet"]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OMP_NUM_THREADS": "1",
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",  # no MASTER_ADDR: a process that tried to join would fail with another error
    }
    ranks = [
        subprocess.Popen(
            command,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for rank in ranks:
        _, stderr = rank.communicate(timeout=300)
        assert rank.returncode == 2, stderr[-2000:]
        assert stderr.splitlines()[-1].startswith(
            "ropelab extend: error: --finetune none is invalid under torchrun (2 processes)"
        )
    assert not out.exists()


def test_extend_under_torchrun_follows_one_process_and_hands_over_what_rank_0_measured(folder, tmp_path):
    """The whole ``ropelab extend --finetune pose`` under torchrun (FSDP2 over 2 processes, the step's 2 windows
    split between them): rank 0 alone prints and writes; the loss curve is one process's up to FSDP's bfloat16
    all-gather (the fine-tune computes under bfloat16 autocast in both); the folder handed over is the weights
    gathered on rank 0, which plain ``from_pretrained`` reloads with the perplexities rank 0 measured."""
    from real_families import _ppl_ranges
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.cli import main

    def argv(out: Path) -> list[str]:
        return [
            *("extend", "--model", str(folder), "--bin", "16", "--methods", "linear", "--passkey-keys", "0"),
            *("--finetune", "pose", "--finetune-methods", "linear", "--finetune-steps", "2"),
            *("--finetune-window", "32", "--finetune-batch", "2", "--finetune-lr", "3e-3", "--dtype", "float32"),
            *("--write-config", str(out / "handed"), "--out", str(out / "run"), "--quiet"),
        ]

    done = torchrun("ropelab.cli", *argv(tmp_path / "two"), module=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Plan on cpu") == 1 and done.stdout.count("report: ") == 1  # rank 0 only
    assert main(argv(tmp_path / "one")) == 0
    two, one = (json.loads((tmp_path / n / "run" / "results.json").read_text()) for n in ("two", "one"))
    assert two["finetune"]["loss"]["linear"] == pytest.approx(one["finetune"]["loss"]["linear"], rel=1e-3)
    assert two["verdict"]["best"] == "linear+pose"
    handed = tmp_path / "two" / "handed"
    original = load_file(folder / "model.safetensors")
    assert any(not torch.equal(w, original[n]) for n, w in load_file(handed / "model.safetensors").items())
    reloaded = AutoModelForCausalLM.from_pretrained(handed, dtype=torch.float32).eval()
    theirs = _ppl_ranges(reloaded, AutoTokenizer.from_pretrained(handed), two["measure"]["length"], TRAINED)
    ours = two["measure"]["methods"]["linear+pose"]["ppl_ranges"]
    assert set(theirs) == set(ours) and all(theirs[k] == pytest.approx(ours[k], rel=1e-4) for k in ours)
