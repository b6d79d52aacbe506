"""Loss per position of a GGUF in llama.cpp itself (through llama-cpp-python's bindings of libllama).

:func:`llama_cpp_token_losses` is :func:`ropelab.real.evaluate.token_losses` computed by llama.cpp:
the GGUF is loaded with ``n_ctx`` tokens of context and llama.cpp's default context settings (KV cache
in F16, flash attention as llama.cpp chooses), the tokens are decoded in batches on one sequence
(positions ``0 .. S-1``, so the KV cache holds the whole causal prefix), and the cross-entropy is
taken in float64 from llama.cpp's float32 logits. Only the positions asked for return logits, so a
16k-token evaluation never holds 16k rows of the vocabulary.

llama-cpp-python is an optional dependency (the ``gguf`` extra: a source build pinned in the
constraints file); without it :func:`llama_cpp_token_losses` raises :class:`RealModelError`.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import torch

from ropelab.errors import RealModelError

__all__ = ["llama_cpp_available", "llama_cpp_token_losses", "llama_cpp_log"]

_LOG: list[str] = []  # llama.cpp's log lines of the last load (what it read: rope scaling, freq_scale, ...)
_CALLBACK = None  # the ctypes callback must outlive every call into libllama


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python (and so libllama) can be imported."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def llama_cpp_log() -> list[str]:
    """llama.cpp's log lines from the last :func:`llama_cpp_token_losses` load."""
    return list(_LOG)


def _bindings():
    global _CALLBACK
    try:
        import llama_cpp
    except ImportError:
        raise RealModelError(
            "llama.cpp is unavailable: llama-cpp-python is not installed (make install, or "
            "pip install -c constraints.txt 'ropelab[gguf]')"
        ) from None
    if _CALLBACK is None:

        def keep(level, text, user_data):
            _LOG.append(text.decode("utf-8", errors="replace"))

        _CALLBACK = llama_cpp.llama_log_callback(keep)
        llama_cpp.llama_log_set(_CALLBACK, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


def llama_cpp_token_losses(
    path: str | os.PathLike, ids: torch.Tensor, n_ctx: int, *, first: int = 0, threads: int = 2, batch: int = 512
) -> torch.Tensor:
    """Next-token loss (nats) at positions ``first .. S-1`` of one sequence, computed by llama.cpp.

    Args:
        path: a GGUF file.
        ids: int64 ``[S + 1]`` token ids (the last one is only a target), ``S <= n_ctx``.
        n_ctx: llama.cpp's context length (``llama-server -c``).
        first: the first position whose loss is returned (earlier positions are decoded, not scored).
    Returns:
        float64 ``[S - first]``: ``loss[t - first] = -log p(ids[t + 1] | ids[: t + 1])``, the same
        quantity as :func:`ropelab.real.evaluate.token_losses`.
    """
    lib = _bindings()
    ids = [int(i) for i in ids.tolist()]
    S = len(ids) - 1
    if not 0 <= first < S or S > n_ctx:
        raise RealModelError(f"llama.cpp evaluation: need 0 <= first={first} < S={S} <= n_ctx={n_ctx}")
    _LOG.clear()
    model_params = lib.llama_model_default_params()
    model = lib.llama_model_load_from_file(str(Path(path)).encode(), model_params)
    if not model:
        tail = " ".join(line.strip() for line in _LOG[-3:])
        raise RealModelError(f"llama.cpp cannot load {str(path)!r}: {tail[:300]}")
    context_params = lib.llama_context_default_params()
    context_params.n_ctx = n_ctx
    context_params.n_batch = context_params.n_ubatch = batch
    context_params.n_threads = context_params.n_threads_batch = threads
    ctx = lib.llama_init_from_model(model, context_params)
    if not ctx:
        lib.llama_model_free(model)
        raise RealModelError(f"llama.cpp cannot make a context of {n_ctx} tokens for {str(path)!r}")
    vocab = lib.llama_vocab_n_tokens(lib.llama_model_get_vocab(model))
    work = lib.llama_batch_init(batch, 0, 1)
    losses = []
    try:
        for start in range(0, S, batch):
            n = min(batch, S - start)
            for i in range(n):
                work.token[i] = ids[start + i]
                work.pos[i] = start + i
                work.n_seq_id[i] = 1
                work.seq_id[i][0] = 0
                work.logits[i] = start + i >= first
            work.n_tokens = n
            code = lib.llama_decode(ctx, work)
            if code != 0:
                raise RealModelError(f"llama.cpp decode failed (code {code}) at positions {start}..{start + n - 1}")
            scored = [i for i in range(n) if start + i >= first]
            if not scored:
                continue
            logits = np.ctypeslib.as_array(lib.llama_get_logits(ctx), shape=(len(scored), vocab)).astype(np.float64)
            targets = np.array([ids[start + i + 1] for i in scored])
            peak = logits.max(axis=1)
            log_norm = peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1))
            losses.append(log_norm - logits[np.arange(len(scored)), targets])
    finally:
        lib.llama_batch_free(work)
        lib.llama_free(ctx)
        lib.llama_model_free(model)
    return torch.from_numpy(np.concatenate(losses))
