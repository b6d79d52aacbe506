"""Synthetic retrieval tasks: token sequences on which a 2-layer decoder learns to retrieve in minutes.

Each task is a pure function of ``(seed, step)`` (a batch of random sequences), so training resumes
exactly and evaluation sets are fresh: evaluation draws from another seed stream than training
(:data:`EVAL_STREAM`), and the validation set that decides when training stops (and on which the
recipe was tuned) from a third (:data:`VALID_STREAM`). Targets are ``-100`` (ignored by the loss) everywhere but at the answer.

Notation: ``V`` content symbols ``0..V-1``; special tokens follow them (``vocab_size(task, V)``).
``N`` is the total length of a sequence given to the model (``inputs [B, N]``).

- **induction** (Olsson et al. 2022; the setup of Gu & Dao 2023, "Mamba", sec. 4.1.2 and App. E.1:
  2-layer models, a vocabulary of 16, trained at 256): random content tokens, one trigger token
  followed by the answer ``x`` (the needle), and the sequence ends with the trigger again. The
  model must output ``x``: find the earlier trigger, copy what followed it. One answer per row,
  which makes the training signal sparse: Mamba's attention baselines trained for 204,800 to
  409,600 steps (App. E.1).
- **recall** (associative recall with several keys, as in the H3 / Mamba synthetic setups): the
  same retrieval, ``Q`` needles ``(key, value)`` with distinct keys, then the keys asked again
  at the end. ``Q`` answers per row: our choice, so that a 2-layer model learns in minutes on a
  CPU. Filler and values are content tokens; keys never occur in the filler.
- **copy** (Kazemnejad et al. 2023, sec. 3 and Table 1, "Copy the following words"): ``n``
  random content tokens, a separator ``SEP``, then the same ``n`` tokens; every copied token is
  an answer. ``n = (N - 1) // 2``.

A needle's *depth* is its place in the context as a fraction: ``0`` at the start, ``1`` just
before the query (the convention of :func:`ropelab.lab.data.passkey_example`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ropelab.lab import LabError

__all__ = [
    "TASKS",
    "IGNORE",
    "EVAL_STREAM",
    "VALID_STREAM",
    "TaskBatch",
    "vocab_size",
    "check_task",
    "min_content",
    "task_batch",
    "recall_batch",
    "copy_batch",
    "TASK_SHAPES",
]

TASKS = ("recall", "induction", "copy")
# keys K and pairs Q of each recall-shaped task (induction: one trigger, one needle).
TASK_SHAPES = {"recall": dict(keys=8, pairs=4), "induction": dict(keys=1, pairs=1)}
IGNORE = -100  # torch.nn.functional.cross_entropy's default ignore_index
EVAL_STREAM = 1_000_003  #: Evaluation batches use seed + EVAL_STREAM, never the training stream.
VALID_STREAM = 2_000_003  #: Validation batches (early stopping, tuning) use seed + VALID_STREAM, never the training or evaluation stream.
_MIN_LENGTH = {"recall": 4, "induction": 4, "copy": 3}


@dataclass(frozen=True)
class TaskBatch:
    """``inputs`` int64 ``[B, N]``; ``targets`` int64 ``[B, N]`` (``-100`` except at answers);
    ``depth`` float ``[B, A]``: the needle depth of each answer (``A`` answers per row)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    depth: torch.Tensor


def check_task(task: str) -> str:
    if task not in TASKS:
        raise LabError(f"task={task!r} is unknown: expected one of {', '.join(TASKS)}")
    return task


def vocab_size(task: str, content: int) -> int:
    """Content symbols plus the task's special tokens (the keys; the copy separator)."""
    return content + (1 if check_task(task) == "copy" else TASK_SHAPES[task]["keys"])


def min_content(task: str) -> int:
    """The smallest content vocabulary the task can be posed with (2: a random answer must be uncertain)."""
    check_task(task)
    return 2


def _check(task: str, content: int, length: int) -> None:
    if content < min_content(task):
        raise LabError(
            f"vocab={content} is too small for task={task!r}: expected at least {min_content(task)} content symbols"
        )
    if length < _MIN_LENGTH[task]:
        raise LabError(f"length={length} is invalid for task={task!r}: expected at least {_MIN_LENGTH[task]} tokens")


def _generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def recall_batch(
    batch: int, length: int, content: int, seed: int, step: int, *, keys: int = 8, pairs: int = 4
) -> TaskBatch:
    """A batch of associative recall: ``pairs`` needles ``(key, value)`` hidden in random filler, then
    the same keys asked again, in a random order, at the very end.

    Layout of a row (``Q = pairs``)::

        filler ... k_1 v_1 ... filler ... k_Q v_Q ... filler | k_s1 v_s1 k_s2 v_s2 ... k_sQ
        <------------------- context: N - 2Q + 1 tokens -------------> <-- 2Q - 1 tokens -->

    Values and filler are content tokens ``0..V-1``; keys are tokens ``V..V+K-1``, distinct within a
    row, and appear nowhere else, so the answer at each query is unambiguous. With ``keys=1,
    pairs=1`` this is the induction-heads task of Gu & Dao 2023 (sec. 4.1.2): one trigger, the token
    that followed it, the trigger again at the end.

    Args:
        length: ``N``, tokens per row.
        content: ``V``; keys: ``K >= pairs``.

    Returns:
        :class:`TaskBatch`; ``depth [B, Q]`` is the depth of the needle each query asks for.
    """
    _check_recall(content, length, keys, pairs)
    g = _generator(seed, step)
    context = length - 2 * pairs + 1  # positions 0..context-1 hold filler and needles; the queries follow
    inputs = torch.randint(0, content, (batch, length), generator=g)
    key_ids = torch.rand(batch, keys, generator=g).argsort(1)[:, :pairs] + content  # [B, Q] distinct keys
    values = torch.randint(0, content, (batch, pairs), generator=g)
    slots = context - pairs  # choose Q sorted slots c_i, needles start at c_i + i: two tokens each, no overlap
    starts = torch.rand(batch, slots, generator=g).argsort(1)[:, :pairs].sort(1).values + torch.arange(pairs)
    rows = torch.arange(batch).unsqueeze(1)
    inputs[rows, starts], inputs[rows, starts + 1] = key_ids, values
    order = torch.rand(batch, pairs, generator=g).argsort(1)  # the order of the queries
    query = context + 2 * torch.arange(pairs)  # positions of the query keys
    inputs[rows, query] = key_ids.gather(1, order)
    answers = values.gather(1, order)
    inputs[rows, (query + 1)[:-1] if pairs > 1 else query[:0]] = answers[:, :-1]
    targets = torch.full_like(inputs, IGNORE)
    targets[rows, query] = answers
    depth = starts.gather(1, order).double() / max(1, context - 2)
    return TaskBatch(inputs, targets, depth)


def _check_recall(content: int, length: int, keys: int, pairs: int) -> None:
    if content < 2:
        raise LabError(f"vocab={content} is too small for task='recall': expected at least 2 content symbols")
    if pairs < 1 or keys < pairs:
        raise LabError(f"keys={keys}, pairs={pairs} is invalid: expected 1 <= pairs <= keys")
    if length < 4 * pairs:
        raise LabError(
            f"length={length} is invalid for task='recall' with {pairs} pairs: expected at least {4 * pairs} tokens"
        )


def copy_batch(batch: int, length: int, content: int, seed: int, step: int) -> TaskBatch:
    """A batch of the copy task: ``w_1..w_n SEP w_1..w_n`` (padded with ``SEP`` to ``N`` when ``N`` is even).

    The model reads ``inputs`` and must predict each copied ``w_i`` at the position before it
    (teacher forcing: exact match of all answers is what greedy decoding would produce).
    The depth of answer ``i`` is the place of its source ``w_i`` in the string: ``(i - 1) / (n - 1)``.
    """
    _check("copy", content, length)
    g = _generator(seed, step)
    sep = content
    n = (length - 1) // 2
    words = torch.randint(0, content, (batch, n), generator=g)
    pad = torch.full((batch, length - 1 - 2 * n), sep)
    sequence = torch.cat([words, torch.full((batch, 1), sep), words, pad, torch.full((batch, 1), sep)], 1)  # [B, N + 1]
    inputs = sequence[:, :-1]
    targets = torch.full_like(inputs, IGNORE)
    targets[:, n : 2 * n] = words  # position n holds SEP: it predicts w_1
    depth = (torch.arange(n, dtype=torch.float64) / max(1, n - 1)).expand(batch, n)
    return TaskBatch(inputs, targets, depth)


def task_batch(task: str, batch: int, length: int, content: int, seed: int, step: int) -> TaskBatch:
    """The batch of ``(seed, step)`` of ``task`` (see the module docstring)."""
    if check_task(task) == "copy":
        return copy_batch(batch, length, content, seed, step)
    return recall_batch(batch, length, content, seed, step, **TASK_SHAPES[task])
