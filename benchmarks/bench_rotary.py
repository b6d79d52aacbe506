"""RoPE against its peers and against the memory-bandwidth limit, side by side on the same tensors.

Applying RoPE reads each q and k element once and writes it once, so ``clone()`` of the same q and
k bytes is the limit. Every row of the table is measured in one run, interleaved round-robin (each
repetition times every method once), so machine noise hits all methods alike.

Methods of the first group time only the application (cos/sin tables built once beforehand, as a
model builds them once per forward for all layers); ``x hf`` compares them with ``transformers``:

- ``transformers``: ``apply_rotary_pos_emb`` with cos/sin ``[1, S, D]`` from ``LlamaRotaryEmbedding``;
- ``lucidrains``: ``rotary-embedding-torch``'s ``rotate_queries_or_keys`` (interleaved pairs);
- ``liger``: Liger-Kernel's ``liger_rotary_pos_emb`` on transformers' cos/sin (CUDA, if installed);
- ``ropelab-eager``: ``apply_rotary`` on q and k with float32 ``[S, R/2]`` tables (exact angles);
- ``ropelab-compile``: the same under ``torch.compile(dynamic=True)``;
- ``ropelab-fused``: the Triton kernel, q and k in one launch, cos/sin from a cache (CUDA);
- ``ropelab-fused-nocache``: the Triton kernel with cos/sin computed in the kernel (CUDA);
- ``clone``: ``q.clone(), k.clone()`` (forward+backward: also the two gradients), the limit.

Peers on CUDA (``--gpu-suite``; each skipped with a printed reason where it does not import or run):

- ``transformers-compile``: ``apply_rotary_pos_emb`` under ``torch.compile(dynamic=True)``;
- ``liger``: ``liger_kernel.ops.rope.LigerRopeFunction`` (in place on a ``[B, S, H, D]`` copy of
  q and k: a real copy for contiguous ``[B, H, S, D]`` inputs, none for ``--qk-layout bshd``);
- ``flash-attn``: flash-attn's Triton ``apply_rotary`` (``flash_attn/ops/triton/rotary.py``, from
  an installed flash-attn or the file named by ``--flash-rotary``), q and k in two launches,
  backward through ``conjugate=True`` as flash-attn's ``ApplyRotaryEmb`` does;
- ``flashinfer``: ``flashinfer.rope.apply_rope_pos_ids`` (cos/sin in the kernel; forward only);
- ``ropelab-fused-inplace``: ``rope_qk(..., inplace=True)`` from the cache (forward only).

End-to-end methods time the whole call from positions (what a transformers model runs per layer
per step); ``x hf`` compares them with ``transformers-e2e``:

- ``transformers-e2e``: ``LlamaRotaryEmbedding(q, position_ids)`` then ``apply_rotary_pos_emb``;
- ``ropelab``: ``rotate_qk(q, k, positions, cfg)``, positions and config seen before (the cache
  of frequencies and exact cos/sin rows is warm, :func:`ropelab.rotary.cache_info`);
- ``ropelab-step`` (decode shapes only): positions one step further on every call (a new tensor each
  time, as in the first layer of a decode step), so the window of cached rows grows as it goes;
- ``ropelab-uncached``: the same inside ``ropelab.cache.bypass()`` (frequencies, angles and cos/sin
  computed afresh in float64 on every call, as before the cache).

``--decode`` (part of ``make bench``) adds the serving shapes: one new token (seq 1) at KV offsets
1e3, 1e5 and 1e6, batch 1 (positions ``[1, 1]``) and 32 (positions ``[32, 1]``, each row at its own
offset ``offset - 31 * row``), forward only, fp32.

Columns: median milliseconds; effective GB/s counting q and k read plus written (twice that for
forward+backward: the gradients too); the fraction of clone's bandwidth (clone time / time); the
speed-up over transformers. ``--peak-memory`` adds the peak bytes allocated during one forward call
(CPU: torch.profiler with ``profile_memory=True``, summing allocations and frees of leaf ops in
time order; CUDA: ``torch.cuda.max_memory_allocated``), as a multiple of the q+k bytes (1.0 = the
outputs and nothing else).

``--qk-layout bshd`` makes q and k (and their gradients) ``[B, S, H, D]`` memory viewed as
``[B, H, S, D]``, as a projection produces them; ``bhsd`` (default) is contiguous ``[B, H, S, D]``.
On CUDA each call is timed with CUDA events after a synchronize, with ``--flush-l2`` writing 256 MiB
before each call, so every method reads q and k from device memory. Each method's output (forward)
or gradients (forward+backward) are checked once against the float32 reference rotation
(``rel_err``, ``||out - ref|| / ||ref||``) before it is timed; a method that raises is dropped with
its error printed.

``--gpu-suite`` is the GPU run: bf16, seq 1 / 512 / 4096 / 16384 / 65536, both q/k
layouts, forward and forward+backward, the peers above and ropelab's kernel paths, 30 repetitions,
L2 flushed, a time budget (``--budget-s``) past which compiled methods and then whole shapes are
skipped; it ends with a summary of ropelab's fused kernel against clone's bandwidth and each peer
(peer time / ropelab time, above 1 = ropelab faster) and the targets: at least 90% of clone's
bandwidth at seq 16384 forward, 80% forward+backward, and at least Liger's speed at every shape.

Usage::

    python benchmarks/bench_rotary.py                       # full sweep and decode shapes (make bench)
    python benchmarks/bench_rotary.py --decode-only --threads 1   # the decode shapes alone
    python benchmarks/bench_rotary.py --seq 4096 --quick    # one shape, fewer repetitions
    python benchmarks/bench_rotary.py --methods clone transformers ropelab-eager --no-backward
    python benchmarks/bench_rotary.py --seq 4096 --threads 1 --warm-heap   # no page faults in outputs
    python benchmarks/bench_rotary.py --gpu-suite --json benchmarks/results/rotary_cuda_h200.json

CPU caveat: with glibc's default allocator every output above its mmap threshold (up to 32 MiB)
is mapped afresh and page-faulted on every call, which can cost more than the arithmetic (a clone
of 64 MiB then takes ~4x a copy into warm memory); ``--warm-heap`` removes that for all methods
alike and makes clone the stricter limit.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import ropelab
import ropelab.rotary
from ropelab.reference import apply_rotary_reference
from ropelab.rotary import apply_rotary

BATCH, Q_HEADS, KV_HEADS, HEAD_DIM = 1, 32, 8, 128
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
QK_LAYOUTS = ("bhsd", "bshd")
METHODS = (
    "clone",
    "transformers",
    "transformers-compile",
    "lucidrains",
    "liger",
    "flash-attn",
    "flashinfer",
    "ropelab-eager",
    "ropelab-compile",
    "ropelab-fused",
    "ropelab-fused-nocache",
    "ropelab-fused-inplace",
    "transformers-e2e",
    "ropelab",
    "ropelab-step",
    "ropelab-uncached",
)
# What `make bench` (CPU) runs by default: the peers that need CUDA or compile per shape stay opt-in.
DEFAULT_METHODS = tuple(
    m for m in METHODS if m not in ("transformers-compile", "flash-attn", "flashinfer", "ropelab-fused-inplace")
)
E2E_METHODS = ("transformers-e2e", "ropelab", "ropelab-step", "ropelab-uncached")
FORWARD_ONLY = ("flashinfer", "ropelab-fused-inplace")  # no autograd (flashinfer) or in place on the inputs
COMPILED = ("transformers-compile", "ropelab-compile")
# Methods that write into their inputs (and liger into the incoming gradients) get private copies,
# so they never change what the other methods read.
IN_PLACE = ("liger", "ropelab-fused-inplace")
DECODE_OFFSETS = (1000, 100_000, 1_000_000)
DECODE_BATCHES = (1, 32)
DECODE_METHODS = (
    "clone",
    "transformers",
    "ropelab-eager",
    "transformers-e2e",
    "ropelab",
    "ropelab-step",
    "ropelab-uncached",
)

# The GPU run: the seq most telling for the targets first, so a budget cut loses the least.
GPU_SUITE_SEQ = (16384, 65536, 4096, 512, 1)
GPU_SUITE_METHODS = (
    "clone",
    "transformers",
    "transformers-compile",
    "liger",
    "flash-attn",
    "flashinfer",
    "lucidrains",
    "ropelab-eager",
    "ropelab-fused",
    "ropelab-fused-nocache",
    "ropelab-fused-inplace",
    "transformers-e2e",
    "ropelab",
)  # ropelab-compile opt-in (--methods): 8 more compilations (2 layouts x grad or not x seq 1 or not)
FUSED = (
    "ropelab-fused",
    "ropelab-fused-nocache",
    "ropelab-fused-inplace",
    "ropelab",
    "ropelab-eager",
)  # kernel paths on CUDA
PEERS = {
    "liger": "liger",
    "flash-attn": "flash",
    "flashinfer": "flashinfer",
    "transformers-compile": "hf-compile",
    "transformers": "hf",
    "transformers-e2e": "hf-e2e",
}  # name: column label
METHOD_LAYOUT = {"lucidrains": "interleaved"}  # rotate_queries_or_keys pairs channels (2i, 2i + 1)
TARGET_SEQ, TARGET_FWD, TARGET_FWD_BWD = 16384, 0.90, 0.80
REL_ERR_LIMIT = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 2e-2}
FLUSH_BYTES = 256 << 20  # > the H200's 60 MB L2, several times over


class Skip(Exception):
    """A method that cannot run here; the message says why."""


@dataclass
class Case:
    """One shape and dtype: q ``[B, 32, S, 128]``, k ``[B, 8, S, 128]`` and their gradients (contiguous,
    or ``[B, S, H, D]`` memory viewed as ``[B, H, S, D]`` for ``layout="bshd"``); positions ``[S]``
    (``arange``) or, for decode, ``[B, S]`` from per-row offsets."""

    seq: int
    dtype: torch.dtype
    device: torch.device
    q: torch.Tensor
    k: torch.Tensor
    grad_q: torch.Tensor
    grad_k: torch.Tensor
    positions: torch.Tensor
    cfg: ropelab.RopeConfig
    batch: int = 1
    offset: int = 0
    layout: str = "bhsd"

    @property
    def qk_bytes(self) -> int:
        return (self.q.numel() + self.k.numel()) * self.q.element_size()


@dataclass
class Row:
    seq: int
    batch: int
    offset: int
    dtype: str
    pass_: str
    method: str
    median_ms: float
    gbps: float
    frac_clone: float | None = None
    speedup_vs_transformers: float | None = None
    peak_mem_x_qk: float | None = None
    qk_layout: str = "bhsd"
    rel_err: float | None = None
    spread: float | None = None  # (p90 - p10) / median of the samples


def make_case(
    seq: int,
    dtype: torch.dtype,
    device: torch.device,
    batch: int = BATCH,
    offset: int | None = None,
    layout: str = "bhsd",
) -> Case:
    """Prefill (``offset`` None): positions ``arange(S)``. Decode: positions ``[B, S]``, row ``b``
    starting at ``offset - 31 b``. Random inputs are drawn on the device itself."""
    gen = torch.Generator(device=device).manual_seed(seq + batch + (offset or 0))

    def rand(heads: int) -> torch.Tensor:
        if layout == "bshd":
            return torch.randn(batch, seq, heads, HEAD_DIM, generator=gen, device=device).to(dtype).transpose(1, 2)
        return torch.randn(batch, heads, seq, HEAD_DIM, generator=gen, device=device).to(dtype)

    if offset is None:
        positions = torch.arange(seq, device=device)
    else:
        starts = offset - 31 * torch.arange(batch)
        positions = (starts[:, None] + torch.arange(seq)).to(device)
    return Case(
        seq,
        dtype,
        device,
        rand(Q_HEADS),
        rand(KV_HEADS),
        rand(Q_HEADS),
        rand(KV_HEADS),
        positions,
        ropelab.RopeConfig(head_dim=HEAD_DIM, base=10000.0),
        batch,
        offset or 0,
        layout,
    )


# --- the methods: each builder takes a Case and returns fn(q, k) -> (q_rot, k_rot), or raises Skip -----


def _triton_runs(case: Case, name: str) -> None:
    """Triton peers run on CUDA (or on CPU tensors under TRITON_INTERPRET=1, for checking this script)."""
    from ropelab.kernels import interpreting

    if case.device.type != "cuda" and not interpreting():
        raise Skip(f"{name} needs CUDA")


def _hf_rotary(case: Case):
    """transformers' ``LlamaRotaryEmbedding`` for the case's config, and its ``position_ids`` ``[B, S]``."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(
        hidden_size=Q_HEADS * HEAD_DIM,
        num_attention_heads=Q_HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        max_position_embeddings=max(case.seq, 4096),
    )
    position_ids = case.positions if case.positions.dim() == 2 else case.positions.unsqueeze(0)
    return LlamaRotaryEmbedding(config).to(case.device), position_ids


def _hf_cos_sin(case: Case):
    """transformers' cos/sin ``[B, S, D]`` in the input dtype, from ``LlamaRotaryEmbedding``."""
    rotary, position_ids = _hf_rotary(case)
    return rotary(case.q, position_ids)


def _transformers_e2e(case: Case):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rotary, position_ids = _hf_rotary(case)
    return lambda q, k: apply_rotary_pos_emb(q, k, *rotary(q, position_ids))


def _ropelab(case: Case):
    from ropelab.rotary import rotate_qk

    rotate_qk(case.q, case.k, case.positions, case.cfg)  # the positions and config are seen before
    return lambda q, k: rotate_qk(q, k, case.positions, case.cfg)


def _ropelab_step(case: Case):
    """A decode loop's first layer: every call brings a new positions tensor, one step further
    (made beforehand, outside the timing), so neither the per-thread memo nor a repeated row helps;
    the cache window grows as the loop advances."""
    from ropelab.rotary import rotate_qk

    steps = itertools.cycle([case.positions + i for i in range(4096)])
    return lambda q, k: rotate_qk(q, k, next(steps), case.cfg)


def _ropelab_uncached(case: Case):
    from ropelab.cache import bypass
    from ropelab.rotary import rotate_qk

    def run(q, k):
        with bypass():
            return rotate_qk(q, k, case.positions, case.cfg)

    return run


def _transformers(case: Case):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    cos, sin = _hf_cos_sin(case)
    return lambda q, k: apply_rotary_pos_emb(q, k, cos, sin)


_COMPILED: dict[tuple, Callable] = {}


def _compiled(key: tuple, fn: Callable) -> Callable:
    """One ``torch.compile(fn, dynamic=True)`` per key; dynamo recompiles per guard (seq 1, strides,
    requires_grad) under the raised limit of :func:`_raise_recompile_limit`."""
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(fn, dynamic=True)
    return _COMPILED[key]


def _raise_recompile_limit(limit: int = 64) -> None:
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit))


def _transformers_compile(case: Case):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    cos, sin = _hf_cos_sin(case)
    fn = _compiled(("transformers", case.dtype), apply_rotary_pos_emb)
    return lambda q, k: fn(q, k, cos, sin)


def _lucidrains(case: Case):
    from rotary_embedding_torch import RotaryEmbedding

    rope = RotaryEmbedding(dim=HEAD_DIM, cache_max_seq_len=max(case.seq, 8192)).to(case.device)
    rope.rotate_queries_or_keys(case.q.detach())  # fill its frequency cache
    return lambda q, k: (rope.rotate_queries_or_keys(q), rope.rotate_queries_or_keys(k))


def _load_file(name: str, path: Path):
    """Import one source file as module ``name`` (registered in sys.modules, as triton's jit expects)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _liger_rope_function():
    """``liger_kernel.ops.rope.LigerRopeFunction``; if the package's ``ops/__init__`` (which imports
    every op) fails on this triton, its ``rope.py`` alone (it imports only torch and triton)."""
    try:
        from liger_kernel.ops.rope import LigerRopeFunction

        return LigerRopeFunction
    except ImportError as err:
        if importlib.util.find_spec("liger_kernel") is None:
            raise Skip("liger-kernel is not installed") from err
        failure = err
    except Exception as err:  # noqa: BLE001
        failure = err
    path = Path(importlib.util.find_spec("liger_kernel").submodule_search_locations[0]) / "ops" / "rope.py"
    print(
        f"  liger: the package import failed ({type(failure).__name__}: {failure}); loading {path} alone",
        file=sys.stderr,
        flush=True,
    )
    return _load_file("liger_rope_alone", path).LigerRopeFunction


def _liger(case: Case):
    """Liger-Kernel's rope op (``liger_kernel.ops``) on transformers' cos/sin ``[1, S, D]``."""
    _triton_runs(case, "liger")
    function = _liger_rope_function()
    cos, sin = _hf_cos_sin(case)
    return lambda q, k: function.apply(q, k, cos, sin)


FLASH_ROTARY_FILE: Path | None = None  # set from --flash-rotary


def _flash_apply_rotary() -> Callable:
    """flash-attn's Triton ``apply_rotary``: from an installed flash-attn, else from the file
    ``flash_attn/ops/triton/rotary.py`` copied out of its sdist (``--flash-rotary``)."""
    try:
        from flash_attn.ops.triton.rotary import apply_rotary as flash_apply

        return flash_apply
    except ImportError:
        pass
    path = FLASH_ROTARY_FILE
    if path is None or not path.is_file():
        raise Skip(
            f"flash-attn is not installed and {path} is missing (copy flash_attn/ops/triton/rotary.py "
            "out of the flash-attn sdist there)"
        )
    return _load_file("flash_attn_triton_rotary", path).apply_rotary


class _FlashRotary(torch.autograd.Function):
    """flash-attn's ``ApplyRotaryEmb`` in short: forward ``apply_rotary``, backward the same with
    ``conjugate=True``; x ``[B, S, H, D]`` (any strides), cos/sin ``[S, R/2]``."""

    @staticmethod
    def forward(ctx, x, cos, sin, apply):  # noqa: D401 (autograd signature)
        ctx.save_for_backward(cos, sin)
        ctx.rotate = apply
        return apply(x, cos, sin)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        return ctx.rotate(grad, cos, sin, conjugate=True), None, None, None


def _flash_attn(case: Case):
    _triton_runs(case, "flash-attn")
    if case.positions.dim() != 1:
        raise Skip("flash-attn's apply_rotary takes one position offset per row, not [B, S] positions")
    apply = _flash_apply_rotary()
    cos, sin = ropelab.rope_cos_sin(case.positions, case.cfg)  # [S, R/2], rows 0..S-1
    cos, sin = cos.to(case.dtype), sin.to(case.dtype)  # flash-attn's RotaryEmbedding keeps x's dtype

    def rotate(x):
        return _FlashRotary.apply(x.transpose(1, 2), cos, sin, apply).transpose(1, 2)

    return lambda q, k: (rotate(q), rotate(k))


def _flashinfer(case: Case):
    _triton_runs(case, "flashinfer")
    if case.device.type != "cuda":
        raise Skip("flashinfer needs CUDA")
    try:
        import flashinfer.rope
    except ImportError as err:
        raise Skip(
            f"flashinfer does not import ({err}); its wheel JIT-compiles CUDA at first use and is not carried"
        ) from None
    pos_ids = case.positions.expand(case.batch, case.seq).reshape(-1).to(torch.int32)
    theta = float(case.cfg.base)

    def run(q, k):
        b, hq, s, d = q.shape
        q2 = q.transpose(1, 2).reshape(b * s, hq, d)  # ragged [nnz, H, D]: a copy for bhsd inputs
        k2 = k.transpose(1, 2).reshape(b * s, k.shape[1], d)
        q_out, k_out = flashinfer.rope.apply_rope_pos_ids(q2, k2, pos_ids, rope_theta=theta)
        return q_out.view(b, s, hq, d).transpose(1, 2), k_out.view(b, s, k.shape[1], d).transpose(1, 2)

    return run


def _tables(case: Case):
    cos, sin = ropelab.rope_cos_sin(case.positions, case.cfg)  # float32 [S, R/2] or [B, S, R/2], exact angles
    return (cos, sin) if case.positions.dim() == 1 else (cos.unsqueeze(1), sin.unsqueeze(1))


def _ropelab_eager(case: Case):
    cos, sin = _tables(case)
    return lambda q, k: (apply_rotary(q, cos, sin), apply_rotary(k, cos, sin))


def _ropelab_compile(case: Case):
    """One compiled callable per dtype (and decode vs prefill), so no case evicts another's graphs."""
    cos, sin = _tables(case)
    fn = _compiled(
        ("ropelab", case.dtype, case.seq == 1), lambda q, k, c, s: (apply_rotary(q, c, s), apply_rotary(k, c, s))
    )
    return lambda q, k: fn(q, k, cos, sin)


def _fused_available(case: Case, name: str) -> None:
    from ropelab.kernels import triton_available

    if not triton_available(case.device):
        raise Skip(f"{name} needs CUDA with triton (or TRITON_INTERPRET=1)")


def _ropelab_fused(case: Case):
    from ropelab.kernels import rope_qk
    from ropelab.rotary import cos_sin_cache

    _fused_available(case, "ropelab-fused")
    cos, sin = cos_sin_cache(case.cfg, int(case.positions.max()) + 1, device=case.device)
    return lambda q, k: rope_qk(q, k, case.positions, cos=cos, sin=sin)


def _ropelab_fused_inplace(case: Case):
    from ropelab.kernels import rope_qk
    from ropelab.rotary import cos_sin_cache

    _fused_available(case, "ropelab-fused-inplace")
    cos, sin = cos_sin_cache(case.cfg, int(case.positions.max()) + 1, device=case.device)
    return lambda q, k: rope_qk(q, k, case.positions, cos=cos, sin=sin, inplace=True)


def _ropelab_fused_nocache(case: Case):
    from ropelab.kernels import rope_qk

    _fused_available(case, "ropelab-fused-nocache")
    inv_freq, factor = ropelab.rope_frequencies(case.cfg)
    rope_qk(case.q, case.k, case.positions, inv_freq=inv_freq)  # fill the fixed-point cache
    return lambda q, k: rope_qk(q, k, case.positions, inv_freq=inv_freq, attention_factor=factor)


BUILDERS = {
    "transformers": _transformers,
    "transformers-compile": _transformers_compile,
    "lucidrains": _lucidrains,
    "liger": _liger,
    "flash-attn": _flash_attn,
    "flashinfer": _flashinfer,
    "ropelab-eager": _ropelab_eager,
    "ropelab-compile": _ropelab_compile,
    "ropelab-fused": _ropelab_fused,
    "ropelab-fused-nocache": _ropelab_fused_nocache,
    "ropelab-fused-inplace": _ropelab_fused_inplace,
    "transformers-e2e": _transformers_e2e,
    "ropelab": _ropelab,
    "ropelab-step": _ropelab_step,
    "ropelab-uncached": _ropelab_uncached,
}


# --- timing ----------------------------------------------------------------------------------------


def forward_call(case: Case, fn) -> Callable[[], object]:
    return lambda: fn(case.q, case.k)


def backward_call(case: Case, fn) -> Callable[[], object]:
    """Forward then backward; ``autograd.grad`` returns fresh gradients (no accumulation pass)."""
    q, k = case.q.detach().requires_grad_(), case.k.detach().requires_grad_()

    def run():
        out_q, out_k = fn(q, k)
        return torch.autograd.grad((out_q, out_k), (q, k), (case.grad_q, case.grad_k))

    return run


def clone_call(case: Case, backward: bool) -> Callable[[], object]:
    if backward:
        return lambda: (case.q.clone(), case.k.clone(), case.grad_q.clone(), case.grad_k.clone())
    return lambda: (case.q.clone(), case.k.clone())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call: Callable, device: torch.device, flush: torch.Tensor | None) -> float:
    """Seconds of one call, the device idle before it (and, with ``flush``, the L2 cache written over)."""
    if flush is not None:
        flush.zero_()
    _sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = call()
        end.record()
        end.synchronize()
        del out
        return start.elapsed_time(end) / 1e3
    start = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - start
    del out
    return seconds


def time_round_robin(
    calls: dict[str, Callable], device: torch.device, reps: int, warmup: int, flush: torch.Tensor | None = None
) -> dict[str, list[float]]:
    """Seconds of every call, ``reps`` samples each; every repetition runs each call once, in turn."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):
        for name, call in calls.items():
            samples[name].append(_timed(call, device, flush))
    return samples


def _spread(samples: list[float]) -> float:
    ordered = sorted(samples)
    lo, hi = ordered[len(ordered) // 10], ordered[-1 - len(ordered) // 10]
    return (hi - lo) / statistics.median(ordered)


def peak_memory_bytes(call: Callable, device: torch.device) -> int:
    """Peak bytes allocated while ``call()`` runs, above what was allocated before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = call()
        torch.cuda.synchronize(device)
        del out
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = call()
        del out
    leaves = [e for e in prof.events() if e.cpu_memory_usage != 0 and not e.cpu_children]
    current = peak = 0
    for event in sorted(leaves, key=lambda e: e.time_range.start):
        current += event.cpu_memory_usage
        peak = max(peak, current)
    return peak


# --- checking each method once -----------------------------------------------------------------------


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    got = got.float()
    if not torch.isfinite(got).all():
        return math.inf
    return float((got - ref).norm() / ref.norm())


def check_method(case: Case, fn, backward: bool, layout: str = "half") -> float:
    """``max ||out - ref|| / ||ref||`` over q and k (forward) or their gradients (forward+backward),
    against the float32 reference rotation with exact cos/sin; on copies, so in-place methods leave
    the case's tensors alone."""
    cos, sin = _tables(case)
    q, k = case.q.clone(), case.k.clone()
    if backward:
        q.requires_grad_()
        k.requires_grad_()
        got = torch.autograd.grad(fn(q, k), (q, k), (case.grad_q.clone(), case.grad_k.clone()))
        refs = [apply_rotary_reference(g.float(), cos, -sin, layout) for g in (case.grad_q, case.grad_k)]
    else:
        got = fn(q, k)  # grad mode as in the timed calls (a change would recompile torch.compile'd methods)
        refs = [apply_rotary_reference(x.float(), cos, sin, layout) for x in (case.q, case.k)]
    return max(_rel_err(g, r) for g, r in zip(got, refs))


# --- the sweep -------------------------------------------------------------------------------------

_SKIPS_SEEN: set[tuple[str, str]] = set()


def _say_skip(name: str, reason: str) -> None:
    if (name, reason) not in _SKIPS_SEEN:
        _SKIPS_SEEN.add((name, reason))
        print(f"  skip {name}: {reason}", file=sys.stderr, flush=True)


def build_methods(case: Case, names: list[str]) -> dict[str, Callable]:
    methods = {}
    for name in names:
        if name == "clone":
            continue
        try:
            fn = BUILDERS[name](case)
        except Skip as why:
            _say_skip(name, str(why))
            continue
        except ImportError as err:
            _say_skip(name, f"does not import ({err})")
            continue
        except Exception as err:  # noqa: BLE001 (a peer's failure must not end the run)
            _say_skip(name, f"failed to build at seq {case.seq} ({type(err).__name__}: {err})")
            continue
        methods[name] = fn
    return methods


def _private_inputs(case: Case) -> Case:
    """The case with its own copies of q, k and the gradients (same strides), for in-place methods."""
    return replace(case, q=case.q.clone(), k=case.k.clone(), grad_q=case.grad_q.clone(), grad_k=case.grad_k.clone())


def run_case(
    case: Case,
    names: list[str],
    passes: list[str],
    reps: int,
    warmup: int,
    peak: bool,
    flush: torch.Tensor | None = None,
    check: bool = True,
) -> list[Row]:
    methods = build_methods(case, names)
    rows = []
    for pass_ in passes:
        backward = pass_ == "fwd+bwd"
        calls = {"clone": clone_call(case, backward)}
        errors: dict[str, float | None] = {"clone": None}
        for name, fn in methods.items():
            if backward and name in FORWARD_ONLY:
                continue
            own = _private_inputs(case) if name in IN_PLACE else case
            call = backward_call(own, fn) if backward else forward_call(own, fn)
            try:
                call()  # the first call compiles (torch.compile, triton)
                checked = check and name != "ropelab-step"  # its positions move on with every call
                errors[name] = check_method(case, fn, backward, METHOD_LAYOUT.get(name, "half")) if checked else None
            except Exception as err:  # noqa: BLE001
                _say_skip(name, f"raised at seq {case.seq} {case.layout} {pass_} ({type(err).__name__}: {err})")
                continue
            limit = REL_ERR_LIMIT[case.dtype]
            if errors[name] is not None and not errors[name] <= limit:
                print(
                    f"  WARNING {name} {pass_} seq {case.seq} offset {case.offset:.0e} {case.layout} {_dtype_name(case.dtype)}: "
                    f"rel_err {errors[name]:.2e} > {limit:.0e} (against exact float64 angles)",
                    file=sys.stderr,
                    flush=True,
                )
            calls[name] = call
        samples = time_round_robin(calls, case.device, reps, warmup, flush)
        times = {name: statistics.median(ts) for name, ts in samples.items()}
        moved = 2 * case.qk_bytes * (2 if backward else 1)
        for name, seconds in times.items():
            row = Row(
                case.seq,
                case.batch,
                case.offset,
                _dtype_name(case.dtype),
                pass_,
                name,
                seconds * 1e3,
                moved / seconds / 1e9,
                qk_layout=case.layout,
                rel_err=errors.get(name),
                spread=_spread(samples[name]),
            )
            row.frac_clone = times["clone"] / seconds
            baseline = "transformers-e2e" if name in E2E_METHODS else "transformers"
            if baseline in times:
                row.speedup_vs_transformers = times[baseline] / seconds
            if peak and not backward:
                row.peak_mem_x_qk = peak_memory_bytes(calls[name], case.device) / case.qk_bytes
            rows.append(row)
    return rows


def _dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[Row]) -> str:
    header = (
        f"{'seq':>6} {'batch':>5} {'offset':>7} {'qk':>4} {'dtype':>5} {'pass':>8} {'method':<22} {'ms':>9} "
        f"{'GB/s':>7} {'x clone':>7} {'x hf':>7} {'peak/qk':>7} {'rel_err':>8} {'spread':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.seq:>6} {r.batch:>5} {r.offset:>7.0e} {r.qk_layout:>4} {r.dtype:>5} {r.pass_:>8} {r.method:<22} "
            f"{r.median_ms:>9.4f} {r.gbps:>7.1f} {_fmt(r.frac_clone, '7.2f')} {_fmt(r.speedup_vs_transformers, '7.2f')} "
            f"{_fmt(r.peak_mem_x_qk, '7.2f')} {_fmt(r.rel_err, '8.1e')} {_fmt(r.spread, '6.2f')}"
        )
    return "\n".join(lines)


def summarize(rows: list[Row]) -> dict:
    """ropelab's kernel paths against clone's bandwidth and each peer (peer ms / ropelab ms), per
    shape, and the speed targets for ``ropelab-fused``."""
    groups: dict[tuple, dict[str, Row]] = {}
    for r in rows:
        if r.offset == 0 and r.batch == BATCH:
            groups.setdefault((r.qk_layout, r.dtype, r.pass_, r.seq), {})[r.method] = r
    table, targets = [], []
    for (layout, dtype, pass_, seq), by_method in sorted(groups.items()):
        clone = by_method.get("clone")
        for name in FUSED:
            mine = by_method.get(name)
            if mine is None:
                continue
            entry = {
                "qk_layout": layout,
                "dtype": dtype,
                "pass": pass_,
                "seq": seq,
                "method": name,
                "ms": mine.median_ms,
                "gbps": mine.gbps,
                "clone_gbps": clone.gbps if clone else None,
                "frac_clone": mine.frac_clone,
                "x_peer": {p: by_method[p].median_ms / mine.median_ms for p in PEERS if p in by_method},
            }
            table.append(entry)
            if name != "ropelab-fused":
                continue
            if seq == TARGET_SEQ:
                need = TARGET_FWD if pass_ == "fwd" else TARGET_FWD_BWD
                targets.append(
                    {
                        "what": f"{layout} {dtype} {pass_} seq {seq}: >= {need:.0%} of clone's bandwidth",
                        "value": mine.frac_clone,
                        "ok": mine.frac_clone >= need,
                    }
                )
            if "liger" in by_method:
                ratio = entry["x_peer"]["liger"]
                targets.append(
                    {
                        "what": f"{layout} {dtype} {pass_} seq {seq}: at least as fast as liger",
                        "value": ratio,
                        "ok": ratio >= 1.0,
                    }
                )
    return {"table": table, "targets": targets}


def format_summary(summary: dict) -> str:
    peers = [p for p in PEERS if any(p in e["x_peer"] for e in summary["table"])]
    head = (
        f"{'qk':>4} {'dtype':>5} {'pass':>7} {'seq':>6} {'method':<22} {'ms':>8} {'GB/s':>7} {'clone':>7} {'x clone':>7} "
        + " ".join(f"{'x ' + PEERS[p]:>12}" for p in peers)
    )
    lines = [
        "# ropelab against clone and each peer (peer ms / ropelab ms: above 1 = ropelab faster)",
        head,
        "-" * len(head),
    ]
    for e in summary["table"]:
        lines.append(
            f"{e['qk_layout']:>4} {e['dtype']:>5} {e['pass']:>7} {e['seq']:>6} {e['method']:<22} {e['ms']:>8.4f} {e['gbps']:>7.0f} "
            f"{_fmt(e['clone_gbps'], '7.0f')} {_fmt(e['frac_clone'], '7.2f')} "
            + " ".join(f"{_fmt(e['x_peer'].get(p), '12.2f')}" for p in peers)
        )
    lines.append("# targets (ropelab-fused)")
    for t in summary["targets"]:
        lines.append(f"  {'PASS' if t['ok'] else 'MISS'} {t['what']}: {t['value']:.2f}")
    if not summary["targets"]:
        lines.append("  (none measured: ropelab-fused, liger or seq 16384 missing)")
    return "\n".join(lines)


def cache_bytes_report(tokens: int = 1 << 20, head_dim: int = HEAD_DIM) -> dict[str, int]:
    """Bytes of cos+sin caches for ``tokens`` positions (``R = head_dim``)."""
    return {
        "tokens": tokens,
        "ropelab_fp32_cache_[T,R/2]x2": 2 * tokens * (head_dim // 2) * 4,
        "transformers_fp32_cos_sin_[T,R]x2": 2 * tokens * head_dim * 4,
        "transformers_bf16_cos_sin_[T,R]x2": 2 * tokens * head_dim * 2,
        "ropelab_in_kernel_mode (int64 turns [R/2])": (head_dim // 2) * 8,
    }


def keep_freed_memory_mapped() -> bool:
    """Ask glibc to serve every allocation from its heap and never unmap freed memory.

    By default glibc maps allocations above its mmap threshold (dynamic, at most 32 MiB) afresh and
    unmaps them on free, so each call of every method pays page faults on its output, and whether a
    given size does depends on the allocation history: a clone of 64 MiB then costs 4x a copy into
    warm memory, and ratios to clone flatter everyone. With the threshold raised, outputs land in
    warm memory (as on a GPU with a caching allocator) and clone is the strict bandwidth limit.
    Returns False where this is not glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 40))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--seq", type=int, nargs="+", default=None, help="default 1 512 4096 16384 (--gpu-suite: up to 65536)"
    )
    p.add_argument(
        "--dtype", nargs="+", choices=sorted(DTYPES), default=None, help="default fp32 bf16 (--gpu-suite: bf16)"
    )
    p.add_argument("--methods", nargs="+", choices=METHODS, default=None)
    p.add_argument(
        "--qk-layout",
        nargs="+",
        choices=QK_LAYOUTS,
        default=None,
        help="q/k memory: bhsd contiguous (default) or bshd viewed as bhsd (--gpu-suite: both)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--gpu-suite",
        action="store_true",
        help="the GPU run: bf16, seq 1..65536, both q/k layouts, all peers, L2 flushed, no decode",
    )
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile methods (their first call compiles)"
    )
    p.add_argument(
        "--reps", type=int, default=None, help="timed repetitions (default 25 on CPU, 100 on CUDA, 30 --gpu-suite)"
    )
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="5 repetitions, 1 warm-up")
    p.add_argument("--no-peak-memory", action="store_true")
    p.add_argument(
        "--no-check", action="store_true", help="skip the one-off check of each method against the reference"
    )
    p.add_argument(
        "--flush-l2", action="store_true", help="CUDA: write 256 MiB before each timed call (on with --gpu-suite)"
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="after this many seconds skip the compiled methods of new shapes, after 1.4x of it the shapes "
        "themselves (--gpu-suite default 150)",
    )
    p.add_argument(
        "--flash-rotary",
        type=Path,
        default=Path(__file__).resolve().parents[1] / ".whl" / "flash_attn_rotary.py",
        help="flash-attn's flash_attn/ops/triton/rotary.py, used when flash-attn is not installed",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--warm-heap",
        action="store_true",
        help="CPU: raise glibc's mmap threshold so outputs reuse warm memory (see keep_freed_memory_mapped)",
    )
    p.add_argument("--no-decode", action="store_true", help="skip the decode shapes (seq 1 at KV offsets)")
    p.add_argument("--decode-only", action="store_true", help="only the decode shapes")
    p.add_argument("--json", type=Path, default=None, help="default benchmarks/results/rotary_<device>.json")
    args = p.parse_args(argv)
    suite = args.gpu_suite
    args.seq = args.seq or (list(GPU_SUITE_SEQ) if suite else [1, 512, 4096, 16384])
    args.dtype = args.dtype or (["bf16"] if suite else ["fp32", "bf16"])
    args.methods = args.methods or list(GPU_SUITE_METHODS if suite else DEFAULT_METHODS)
    args.qk_layout = args.qk_layout or (list(QK_LAYOUTS) if suite else ["bhsd"])
    if suite:
        args.no_decode = True
        args.flush_l2 = True
        args.reps = args.reps or 30
        args.budget_s = args.budget_s if args.budget_s is not None else 150.0
    return args


def _save(out: Path, env: dict, rows: list[Row], summary: dict, cache: dict | None = None) -> None:
    """Write the results JSON atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(
            {"env": env, "rows": [asdict(r) for r in rows], "cache_bytes": cache or {}, "summary": summary}, indent=1
        )
    )
    os.replace(tmp, out)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in (
        "torch",
        "triton",
        "transformers",
        "liger-kernel",
        "rotary-embedding-torch",
        "flash-attn",
        "flashinfer-python",
    ):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def main(argv=None) -> int:
    global FLASH_ROTARY_FILE
    args = parse_args(argv)
    began = time.monotonic()
    FLASH_ROTARY_FILE = args.flash_rotary
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warm_heap = device.type == "cpu" and args.warm_heap and keep_freed_memory_mapped()
    reps = args.reps or (5 if args.quick else (100 if device.type == "cuda" else 25))
    warmup = 1 if args.quick else args.warmup
    names = [m for m in args.methods if not (args.no_compile and m in COMPILED)]
    if any(m in COMPILED for m in names):
        _raise_recompile_limit()
    passes = ["fwd"] if args.no_backward else ["fwd", "fwd+bwd"]
    flush = (
        torch.empty(FLUSH_BYTES, dtype=torch.uint8, device=device) if args.flush_l2 and device.type == "cuda" else None
    )
    env = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "versions": _versions(),
        "shape": f"q [{BATCH},{Q_HEADS},S,{HEAD_DIM}], k [{BATCH},{KV_HEADS},S,{HEAD_DIM}]",
        "reps": reps,
        "qk_layouts": args.qk_layout,
        "l2_flush_bytes": FLUSH_BYTES if flush is not None else 0,
        "timer": "CUDA events, synchronized before each call" if device.type == "cuda" else "perf_counter",
        "bytes_moved": "q and k read + written once (forward+backward: the gradients too); cos/sin not counted",
        "allocator": "glibc heap, freed memory kept (mallopt)" if warm_heap else "default",
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["sm_count"], env["capability"] = props.multi_processor_count, f"{props.major}.{props.minor}"
    print(
        f"# RoPE benchmark on {device.type} ({env['device']}), {env['versions']}, {env['threads']} threads; "
        f"{env['shape']}; median of {reps}; q/k layouts {args.qk_layout}; L2 flush {bool(flush is not None)}; "
        f"allocator: {env['allocator']}",
        flush=True,
    )
    out = args.json or Path(__file__).parent / "results" / f"rotary_{device.type}.json"
    rows: list[Row] = []
    cases = (
        []
        if args.decode_only
        else [
            (seq, dtype_name, BATCH, None, layout)
            for dtype_name in args.dtype
            for seq in args.seq
            for layout in args.qk_layout
        ]
    )
    if not args.no_decode:
        cases += [(1, "fp32", batch, offset, "bhsd") for batch in DECODE_BATCHES for offset in DECODE_OFFSETS]
    skipped_cases = []
    for seq, dtype_name, batch, offset, layout in cases:
        elapsed = time.monotonic() - began
        case_names = names
        if args.budget_s is not None and elapsed > 1.4 * args.budget_s:
            skipped_cases.append(f"seq {seq} {layout} {dtype_name}")
            print(
                f"  skip seq {seq} {layout} {dtype_name}: {elapsed:.0f} s spent, budget {args.budget_s:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            continue
        if args.budget_s is not None and elapsed > args.budget_s:
            case_names = [m for m in names if m not in COMPILED]
            for m in set(names) & set(COMPILED):
                _say_skip(m, f"compiling new shapes past the budget ({elapsed:.0f} s > {args.budget_s:.0f} s)")
        case = make_case(seq, DTYPES[dtype_name], device, batch, offset, layout)
        if offset is None:
            case_names = [m for m in case_names if m != "ropelab-step"]
        else:
            case_names = [m for m in case_names if m in DECODE_METHODS]
        case_passes = passes if offset is None else ["fwd"]
        case_rows = run_case(
            case,
            case_names,
            case_passes,
            reps,
            warmup,
            peak=not args.no_peak_memory,
            flush=flush,
            check=not args.no_check,
        )
        print(format_table(case_rows).split("\n", 2)[-1] if rows else format_table(case_rows), flush=True)
        rows.extend(case_rows)
        _save(out, {**env, "partial": True}, rows, {})  # what is done survives a timeout
        del case
        if device.type == "cuda":
            torch.cuda.empty_cache()
    env["rope_cache"] = ropelab.rotary.cache_info()
    env["seconds"] = round(time.monotonic() - began, 1)
    env["skipped"] = sorted(f"{name}: {reason}" for name, reason in _SKIPS_SEEN) + skipped_cases
    print(f"\n# ropelab.rotary.cache_info() after the run: {env['rope_cache']}")
    cache = cache_bytes_report()
    print("\n# cos/sin cache for a 1M-token context at head_dim 128 (bytes):")
    for key, value in cache.items():
        print(f"  {key}: {value:,}" + (f" ({value / 2**20:.0f} MiB)" if key != "tokens" and value >= 2**20 else ""))
    summary = summarize(rows)
    if summary["table"]:
        print("\n" + format_summary(summary))
    _save(out, env, rows, summary, cache)
    print(f"\nsaved {out} ({env['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
