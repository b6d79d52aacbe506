"""Training: exact resume after SIGKILL, 2-process gloo DDP == 1 process, schedule, checkpoints."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from ropelab.lab import LabError
from ropelab.lab.data import Corpus
from ropelab.lab.model import DecoderLM, ModelConfig
from ropelab.lab.train import TrainConfig, learning_rate, load_checkpoint, save_checkpoint, train

TINY = dict(num_layers=1, dim=16, num_heads=2, max_positions=16)


def _text(path):
    words = [f"token{i % 37} value{i % 11};" for i in range(3000)]
    path.write_text(" ".join(words))
    return str(path)


def _corpus() -> Corpus:
    data = torch.tensor(list((" ".join(f"w{i % 29}x{i % 7}" for i in range(2000))).encode()), dtype=torch.uint8)
    return Corpus(data[:12000], data[12000:], "test")


def _train_cmd(text, out, steps, *extra):
    return [
        sys.executable,
        "-m",
        "ropelab.cli",
        "lab",
        "train",
        "--encoding",
        "rope",
        "--text",
        text,
        "--out",
        str(out),
        "--length",
        "16",
        "--layers",
        "1",
        "--dim",
        "16",
        "--heads",
        "2",
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--checkpoint-every",
        "10",
        "--quiet",
        *extra,
    ]


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, cfg) == pytest.approx(0.1)
    assert learning_rate(9, cfg) == pytest.approx(1.0)
    assert learning_rate(55, cfg) == pytest.approx(0.55)
    assert learning_rate(100, cfg) == pytest.approx(0.1)


def test_resume_after_sigkill_gives_the_same_final_loss(tmp_path):
    text = _text(tmp_path / "corpus.txt")
    steps = 300
    reference = tmp_path / "reference.pt"
    subprocess.run(_train_cmd(text, reference, steps), check=True, capture_output=True)
    interrupted = tmp_path / "interrupted.pt"
    process = subprocess.Popen(
        _train_cmd(text, interrupted, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not interrupted.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = load_checkpoint(interrupted)["step"]
    assert 0 < killed_at < steps, "the run must be killed mid-way for this test to mean anything"
    subprocess.run(_train_cmd(text, interrupted, steps, "--resume"), check=True, capture_output=True)
    final, expected = load_checkpoint(interrupted), load_checkpoint(reference)
    assert final["step"] == steps
    assert abs(final["losses"][-1] - expected["losses"][-1]) <= 1e-6
    assert final["losses"] == pytest.approx(expected["losses"], abs=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, corpus, cfg_kwargs, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    run = train(ModelConfig(encoding="alibi", **TINY), TrainConfig(**cfg_kwargs), corpus=corpus, progress=False)
    if rank == 0:
        queue.put(run.losses)
    torch.distributed.destroy_process_group()


def test_two_process_gloo_ddp_matches_one_process():
    corpus = _corpus()
    cfg_kwargs = dict(steps=15, batch_size=8, lr=3e-3, warmup_steps=3, checkpoint_every=10**9)
    single = train(
        ModelConfig(encoding="alibi", **TINY), TrainConfig(**cfg_kwargs), corpus=corpus, progress=False
    ).losses
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), corpus, cfg_kwargs, queue), nprocs=2, start_method="spawn")
    double = queue.get()
    assert len(double) == len(single) == 15
    assert double == pytest.approx(single, rel=1e-5, abs=1e-5)
    assert single[-1] < single[0]  # it learned something, so the comparison is not vacuous


def test_checkpoint_is_atomic_and_errors_are_clear(tmp_path):
    model = DecoderLM(ModelConfig(encoding="t5", **TINY))
    path = tmp_path / "t5.pt"
    save_checkpoint(
        path, {"format": "ropelab.lab.checkpoint/1", "model_config": model.cfg.to_dict(), "model": model.state_dict()}
    )
    assert [p.name for p in tmp_path.iterdir()] == ["t5.pt"]  # no temporary left behind
    with pytest.raises(LabError, match="trained with encoding='t5', not encoding='rope'"):
        load_checkpoint(path, expect_encoding="rope")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:200])
    with pytest.raises(LabError, match="corrupt"):
        load_checkpoint(corrupt)
    with pytest.raises(LabError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_training_lowers_the_loss_for_every_hook_kind():
    for encoding in ("sinusoidal", "t5", "xpos"):
        run = train(
            ModelConfig(encoding=encoding, **TINY),
            TrainConfig(steps=30, batch_size=8, lr=3e-3, warmup_steps=5),
            corpus=_corpus(),
            progress=False,
        )
        assert run.losses[-1] < run.losses[0] - 0.5


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    from ropelab.io import atomic_write, atomic_write_text

    target = atomic_write_text(tmp_path / "sub" / "page.html", "old")

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["page.html"]  # no temporary left behind
