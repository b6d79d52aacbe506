"""Byte-level corpora and the passkey retrieval task.

- The embedded default corpus is the running interpreter's standard library ``.py`` sources:
  no download, and the same bytes for everyone on the same Python. Files go to train or
  validation by a hash of their relative path, so the split never changes with file order.
- ``--text PATH`` reads a file (split by position: the last ``val_fraction`` is validation) or a
  folder (split by file, like the default corpus).
- Passkey retrieval after Mohtashami & Jaggi 2023, in the form reused by Chen et al. 2023 (PI).
"""

from __future__ import annotations

import platform
import sysconfig
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ropelab.io import portable_path
from ropelab.lab import LabError

__all__ = [
    "Corpus",
    "load_corpus",
    "stdlib_sources",
    "is_validation_file",
    "sample_batch",
    "PASSKEY_FILLER",
    "PASSKEY_NAMED_KEY",
    "PASSKEY_NAMED_QUESTION",
    "PASSKEY_NAMES",
    "passkey_example",
]

FILE_SEPARATOR = b"\n\n"


@dataclass(frozen=True)
class Corpus:
    """``train`` and ``val`` are uint8 ``[N]`` byte streams; ``source`` says where they came from."""

    train: torch.Tensor
    val: torch.Tensor
    source: str

    def describe(self) -> dict:
        return {"source": self.source, "train_bytes": int(self.train.numel()), "val_bytes": int(self.val.numel())}


def is_validation_file(relative_path: str, val_fraction: float) -> bool:
    """Deterministic split by file: CRC-32 of the POSIX relative path, bucketed in thousandths."""
    return zlib.crc32(relative_path.encode("utf-8")) % 1000 < round(val_fraction * 1000)


def stdlib_sources() -> tuple[Path, list[Path]]:
    """The running interpreter's stdlib folder and its ``.py`` files (site-packages excluded), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "dist-packages" not in p.parts)
    return root, files


def _stream(chunks: list[bytes]) -> torch.Tensor:
    data = FILE_SEPARATOR.join(chunks)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)


def _split_files(root: Path, files: list[Path], val_fraction: float, source: str) -> Corpus:
    train, val = [], []
    for path in files:
        relative = path.relative_to(root).as_posix()
        (val if is_validation_file(relative, val_fraction) else train).append(path.read_bytes())
    return Corpus(_stream(train), _stream(val), source)


def _split_tail(data: bytes, val_fraction: float, source: str) -> Corpus:
    cut = len(data) - max(1, int(len(data) * val_fraction))
    return Corpus(_stream([data[:cut]]), _stream([data[cut:]]), source)


def load_corpus(text: str | None = None, val_fraction: float = 0.05) -> Corpus:
    """The default stdlib corpus (``text=None``) or a user file / folder.

    Raises:
        LabError: the path is missing, or holds no bytes.
    """
    if text is None:
        root, files = stdlib_sources()
        return _split_files(root, files, val_fraction, f"python {platform.python_version()} stdlib sources")
    path = Path(text)
    if not path.exists():
        raise LabError(f"--text {text!r} is invalid: no such file or folder")
    if path.is_file():
        data = path.read_bytes()
        if not data:
            raise LabError(f"--text {text!r} is invalid: the file is empty")
        return _split_tail(data, val_fraction, portable_path(path))
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    files = [p for p in files if p.stat().st_size > 0]
    if not files:
        raise LabError(f"--text {text!r} is invalid: the folder holds no non-empty files")
    corpus = _split_files(path, files, val_fraction, portable_path(path))
    if corpus.val.numel() == 0 or corpus.train.numel() == 0:  # too few files to split by file
        return _split_tail(b"\n\n".join(p.read_bytes() for p in files), val_fraction, portable_path(path))
    return corpus


def sample_batch(stream: torch.Tensor, batch: int, length: int, seed: int, step: int, rank: int = 0, world: int = 1):
    """Random windows of ``length + 1`` bytes, a pure function of ``(seed, step)``.

    The global batch of ``batch`` windows is drawn the same way on every rank, and rank ``r`` of
    ``world`` takes rows ``[r * batch / world, (r + 1) * batch / world)``: so a resumed run, and a
    run on any number of processes, sees exactly the same data at every step.

    Returns:
        ``(inputs, targets)``, int64 ``[batch / world, length]`` each (targets shifted by one).
    """
    if stream.numel() <= length + 1:
        raise LabError(f"length={length} is invalid: the text has only {stream.numel()} bytes")
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, stream.numel() - length - 1, (batch,), generator=generator)
    local = batch // world
    starts = starts[rank * local : (rank + 1) * local]
    windows = torch.stack([stream[s : s + length + 1] for s in starts.tolist()]).long()
    return windows[:, :-1], windows[:, 1:]


# ----------------------------------------------------------------------------- passkey retrieval
# Mohtashami & Jaggi 2023 (Landmark Attention); Chen et al. 2023 (Position Interpolation), sec. 3.3 and Figure 3.
PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
PASSKEY_KEY = "The pass key is {key}. Remember it. {key} is the pass key."
PASSKEY_QUESTION = "What is the pass key? The pass key is"
# Several keys in one haystack, each named (the multi-key needle of RULER, Hsieh et al. 2024, arXiv
# 2404.06654, sec. 3.1, in the wording of the single key above), so that one prefill answers many cells.
PASSKEY_NAMED_KEY = "The pass key of the {name} is {key}. Remember it. {key} is the pass key of the {name}."
PASSKEY_NAMED_QUESTION = "What is the pass key of the {name}? The pass key of the {name} is"
PASSKEY_NAMES = (
    "red door",
    "blue box",
    "green gate",
    "old clock",
    "tall tree",
    "small boat",
    "white horse",
    "silver key",
    "dark cave",
    "quiet lake",
    "broken chair",
    "golden ring",
    "round table",
    "empty jar",
    "stone bridge",
    "paper kite",
    "iron bell",
    "wooden flute",
    "glass vase",
    "copper coin",
)


def passkey_example(total_length: int, depth: float, key: int) -> tuple[bytes, bytes]:
    """One passkey prompt of exactly ``total_length`` bytes including its answer.

    Layout: filler (the first ``depth`` of it), the key sentence, the rest of the filler, the
    question; the answer is ``" NNNNN"`` (a space and the five digits). The filler sentences are
    repeated and cut to fit.

    Args:
        total_length: bytes of ``prompt + answer``.
        depth: where the key sits in the filler, ``0`` (start) to ``1`` (just before the question).
        key: a five-digit integer.

    Returns:
        ``(prompt, answer)`` as bytes.
    """
    if not 10000 <= key <= 99999:
        raise LabError(f"key={key} is invalid: expected five digits")
    if not 0.0 <= depth <= 1.0:
        raise LabError(f"depth={depth} is invalid: expected a fraction in [0, 1]")
    key_sentence = PASSKEY_KEY.format(key=key)
    answer = f" {key}"
    fixed = len(key_sentence) + 1 + len(PASSKEY_QUESTION) + len(answer)
    filler_length = total_length - fixed
    if filler_length < 0:
        raise LabError(f"total_length={total_length} is invalid: a passkey prompt needs at least {fixed} bytes")
    filler = _filler(filler_length)
    cut = _nearest_sentence_start(filler, depth * len(filler))
    prompt = f"{filler[:cut]}{key_sentence} {filler[cut:]}{PASSKEY_QUESTION}"
    return prompt.encode("ascii"), answer.encode("ascii")


def _filler(length: int) -> str:
    """The filler sentences repeated, cut to ``length`` characters ending in a space (or empty)."""
    if length == 0:
        return ""
    body = (PASSKEY_FILLER + " ") * (length // (len(PASSKEY_FILLER) + 1) + 1)
    return body[: length - 1] + " "


def _nearest_sentence_start(filler: str, target: float) -> int:
    """The sentence boundary of ``filler`` (0, after each ". ", or its end) closest to ``target``."""
    starts = [0] + [i + 2 for i in range(len(filler) - 1) if filler[i : i + 2] == ". "] + [len(filler)]
    return min(starts, key=lambda s: (abs(s - target), s))
