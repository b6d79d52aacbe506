"""The lab's data: stdlib corpus split, user text, deterministic batches, passkey format."""

from __future__ import annotations

import re

import pytest
import torch

from ropelab.lab import LabError
from ropelab.lab.data import (
    PASSKEY_FILLER,
    is_validation_file,
    load_corpus,
    passkey_example,
    sample_batch,
    stdlib_sources,
)


def test_stdlib_split_is_by_file_and_deterministic():
    root, files = stdlib_sources()
    assert len(files) > 100 and all(f.suffix == ".py" for f in files)
    relative = [f.relative_to(root).as_posix() for f in files]
    first = [is_validation_file(r, 0.05) for r in relative]
    assert first == [is_validation_file(r, 0.05) for r in reversed(relative)][::-1]  # order does not matter
    assert 0.02 < sum(first) / len(first) < 0.08
    assert not is_validation_file("os.py", 0.0) and is_validation_file("os.py", 1.0)


def test_default_corpus_is_the_stdlib_bytes(tmp_path):
    corpus = load_corpus()
    assert corpus.train.dtype == torch.uint8 and corpus.val.numel() > 100_000
    assert corpus.train.numel() > 10 * corpus.val.numel()
    again = load_corpus()
    assert torch.equal(corpus.val, again.val)
    assert b"def " in bytes(corpus.val[:200_000].tolist())


def test_user_text_file_and_folder(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello world " * 100)
    corpus = load_corpus(str(path), val_fraction=0.1)
    assert corpus.val.numel() == 120 and corpus.train.numel() == 1080
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(40):
        (folder / f"f{i}.txt").write_bytes(f"file {i} ".encode() * 10)
    split = load_corpus(str(folder), val_fraction=0.2)
    assert split.train.numel() > 0 and split.val.numel() > 0


@pytest.mark.parametrize("make", ["missing", "empty_file", "empty_folder"])
def test_bad_text_paths_raise_clear_errors(tmp_path, make):
    path = tmp_path / make
    if make == "empty_file":
        path.write_bytes(b"")
    elif make == "empty_folder":
        path.mkdir()
    with pytest.raises(LabError, match=r"--text .* is invalid"):
        load_corpus(str(path))


def test_batches_are_a_function_of_seed_and_step_and_ranks_split_the_global_batch():
    stream = torch.arange(1000, dtype=torch.int64).to(torch.uint8)
    x, y = sample_batch(stream, 8, 16, seed=3, step=5)
    assert x.shape == (8, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x, sample_batch(stream, 8, 16, seed=3, step=5)[0])
    assert not torch.equal(x, sample_batch(stream, 8, 16, seed=3, step=6)[0])
    halves = [sample_batch(stream, 8, 16, seed=3, step=5, rank=r, world=2)[0] for r in range(2)]
    assert torch.equal(torch.cat(halves), x)


def test_passkey_format_exactly_as_specified():
    prompt, answer = passkey_example(400, 0.5, 12345)
    text = prompt.decode()
    assert len(prompt) + len(answer) == 400
    assert answer == b" 12345"
    assert "The pass key is 12345. Remember it. 12345 is the pass key." in text
    assert text.endswith("What is the pass key? The pass key is")
    assert text.startswith(PASSKEY_FILLER[:20])
    filler_only = text.replace("The pass key is 12345. Remember it. 12345 is the pass key.", "")
    assert not re.search(r"\d", filler_only)


def test_passkey_depth_moves_the_key():
    positions = [passkey_example(600, d, 55555)[0].find(b"The pass key is 55555") for d in (0.0, 0.5, 1.0)]
    assert positions[0] == 0 and positions[0] < positions[1] < positions[2]
    assert (
        passkey_example(600, 1.0, 55555)[0].decode().endswith("is the pass key. What is the pass key? The pass key is")
    )


def test_passkey_too_short_is_an_error():
    with pytest.raises(LabError, match="total_length=50 is invalid"):
        passkey_example(50, 0.5, 12345)
