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

Usage::

    python benchmarks/bench_rotary.py                       # full sweep and decode shapes (make bench)
    python benchmarks/bench_rotary.py --decode-only --threads 1   # the decode shapes alone
    python benchmarks/bench_rotary.py --seq 4096 --quick    # one shape, fewer repetitions
    python benchmarks/bench_rotary.py --methods clone transformers ropelab-eager --no-backward
    python benchmarks/bench_rotary.py --seq 4096 --threads 1 --warm-heap   # no page faults in outputs

CPU caveat: with glibc's default allocator every output above its mmap threshold (up to 32 MiB)
is mapped afresh and page-faulted on every call, which can cost more than the arithmetic (a clone
of 64 MiB then takes ~4x a copy into warm memory); ``--warm-heap`` removes that for all methods
alike and makes clone the stricter limit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import ropelab
import ropelab.rotary
from ropelab.rotary import apply_rotary

BATCH, Q_HEADS, KV_HEADS, HEAD_DIM = 1, 32, 8, 128
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
METHODS = (
    "clone",
    "transformers",
    "lucidrains",
    "liger",
    "ropelab-eager",
    "ropelab-compile",
    "ropelab-fused",
    "ropelab-fused-nocache",
    "transformers-e2e",
    "ropelab",
    "ropelab-step",
    "ropelab-uncached",
)
E2E_METHODS = ("transformers-e2e", "ropelab", "ropelab-step", "ropelab-uncached")
DECODE_OFFSETS = (1000, 100_000, 1_000_000)
DECODE_BATCHES = (1, 32)
DECODE_METHODS = ("clone", "transformers", "ropelab-eager", "transformers-e2e", "ropelab", "ropelab-step", "ropelab-uncached")


@dataclass
class Case:
    """One shape and dtype: q ``[B, 32, S, 128]``, k ``[B, 8, S, 128]`` and their gradients;
    positions ``[S]`` (``arange``) or, for decode, ``[B, S]`` from per-row offsets."""

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


def make_case(seq: int, dtype: torch.dtype, device: torch.device, batch: int = BATCH, offset: int | None = None) -> Case:
    """Prefill (``offset`` None): positions ``arange(S)``. Decode: positions ``[B, S]``, row ``b``
    starting at ``offset - 31 b``."""
    gen = torch.Generator(device="cpu").manual_seed(seq + batch + (offset or 0))

    def rand(heads: int) -> torch.Tensor:
        return torch.randn(batch, heads, seq, HEAD_DIM, generator=gen).to(device, dtype)

    if offset is None:
        positions = torch.arange(seq, device=device)
    else:
        starts = offset - 31 * torch.arange(batch)
        positions = (starts[:, None] + torch.arange(seq)).to(device)
    return Case(seq, dtype, device, rand(Q_HEADS), rand(KV_HEADS), rand(Q_HEADS), rand(KV_HEADS),
                positions, ropelab.RopeConfig(head_dim=HEAD_DIM, base=10000.0), batch, offset or 0)


# --- the methods: each builder takes a Case and returns fn(q, k) -> (q_rot, k_rot), or None ------


def _hf_rotary(case: Case):
    """transformers' ``LlamaRotaryEmbedding`` for the case's config, and its ``position_ids`` ``[B, S]``."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=Q_HEADS * HEAD_DIM, num_attention_heads=Q_HEADS, num_key_value_heads=KV_HEADS,
                         head_dim=HEAD_DIM, max_position_embeddings=max(case.seq, 4096))
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


def _lucidrains(case: Case):
    from rotary_embedding_torch import RotaryEmbedding

    rope = RotaryEmbedding(dim=HEAD_DIM, cache_max_seq_len=max(case.seq, 8192)).to(case.device)
    rope.rotate_queries_or_keys(case.q.detach())  # fill its frequency cache
    return lambda q, k: (rope.rotate_queries_or_keys(q), rope.rotate_queries_or_keys(k))


def _liger(case: Case):
    if case.device.type != "cuda":
        return None
    try:
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except ImportError:
        return None
    cos, sin = _hf_cos_sin(case)
    return lambda q, k: liger_rotary_pos_emb(q, k, cos, sin)


def _tables(case: Case):
    cos, sin = ropelab.rope_cos_sin(case.positions, case.cfg)  # float32 [S, R/2] or [B, S, R/2], exact angles
    return (cos, sin) if case.positions.dim() == 1 else (cos.unsqueeze(1), sin.unsqueeze(1))


def _ropelab_eager(case: Case):
    cos, sin = _tables(case)
    return lambda q, k: (apply_rotary(q, cos, sin), apply_rotary(k, cos, sin))


_COMPILED: dict[tuple, Callable] = {}


def _ropelab_compile(case: Case):
    """One compiled callable per dtype (and decode vs prefill), so no case evicts another's graphs."""
    cos, sin = _tables(case)
    key = (case.dtype, case.seq == 1)
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(
            lambda q, k, c, s: (apply_rotary(q, c, s), apply_rotary(k, c, s)), dynamic=True
        )
    fn = _COMPILED[key]
    return lambda q, k: fn(q, k, cos, sin)


def _ropelab_fused(case: Case):
    from ropelab.kernels import rope_qk, triton_available
    from ropelab.rotary import cos_sin_cache

    if case.device.type != "cuda" or not triton_available(case.device):
        return None
    cos, sin = cos_sin_cache(case.cfg, case.seq, device=case.device)
    return lambda q, k: rope_qk(q, k, case.positions, cos=cos, sin=sin)


def _ropelab_fused_nocache(case: Case):
    from ropelab.kernels import rope_qk, triton_available

    if case.device.type != "cuda" or not triton_available(case.device):
        return None
    inv_freq, factor = ropelab.rope_frequencies(case.cfg)
    rope_qk(case.q, case.k, case.positions, inv_freq=inv_freq)  # fill the fixed-point cache
    return lambda q, k: rope_qk(q, k, case.positions, inv_freq=inv_freq, attention_factor=factor)


BUILDERS = {
    "transformers": _transformers,
    "lucidrains": _lucidrains,
    "liger": _liger,
    "ropelab-eager": _ropelab_eager,
    "ropelab-compile": _ropelab_compile,
    "ropelab-fused": _ropelab_fused,
    "ropelab-fused-nocache": _ropelab_fused_nocache,
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


def time_round_robin(calls: dict[str, Callable], device: torch.device, reps: int, warmup: int) -> dict[str, float]:
    """Median seconds per call; every repetition runs each call once, in turn."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(reps):
        for name, call in calls.items():
            _sync(device)
            start = time.perf_counter()
            out = call()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
            del out
    return {name: statistics.median(ts) for name, ts in samples.items()}


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


# --- the sweep -------------------------------------------------------------------------------------


def build_methods(case: Case, names: list[str]) -> dict[str, Callable]:
    methods = {}
    for name in names:
        if name == "clone":
            continue
        try:
            fn = BUILDERS[name](case)
        except ImportError as err:
            print(f"  skip {name}: {err}", file=sys.stderr)
            continue
        if fn is not None:
            methods[name] = fn
    return methods


def run_case(case: Case, names: list[str], passes: list[str], reps: int, warmup: int, peak: bool) -> list[Row]:
    methods = build_methods(case, names)
    rows = []
    for pass_ in passes:
        backward = pass_ == "fwd+bwd"
        calls = {"clone": clone_call(case, backward)}
        for name, fn in methods.items():
            calls[name] = backward_call(case, fn) if backward else forward_call(case, fn)
        times = time_round_robin(calls, case.device, reps, warmup)
        moved = 2 * case.qk_bytes * (2 if backward else 1)
        for name, seconds in times.items():
            row = Row(case.seq, case.batch, case.offset, _dtype_name(case.dtype), pass_, name, seconds * 1e3,
                      moved / seconds / 1e9)
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
    header = (f"{'seq':>6} {'batch':>5} {'offset':>7} {'dtype':>5} {'pass':>8} {'method':<22} {'ms':>9} {'GB/s':>7} "
              f"{'x clone':>7} {'x hf':>7} {'peak/qk':>7}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.seq:>6} {r.batch:>5} {r.offset:>7.0e} {r.dtype:>5} {r.pass_:>8} {r.method:<22} {r.median_ms:>9.3f} {r.gbps:>7.2f} "
            f"{_fmt(r.frac_clone, '7.2f')} {_fmt(r.speedup_vs_transformers, '7.2f')} {_fmt(r.peak_mem_x_qk, '7.2f')}"
        )
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
    p.add_argument("--seq", type=int, nargs="+", default=[1, 512, 4096, 16384])
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--no-compile", action="store_true", help="skip ropelab-compile (its first call compiles)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 25 on CPU, 100 on CUDA)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="5 repetitions, 1 warm-up")
    p.add_argument("--no-peak-memory", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--warm-heap", action="store_true",
                   help="CPU: raise glibc's mmap threshold so outputs reuse warm memory (see keep_freed_memory_mapped)")
    p.add_argument("--no-decode", action="store_true", help="skip the decode shapes (seq 1 at KV offsets)")
    p.add_argument("--decode-only", action="store_true", help="only the decode shapes")
    p.add_argument("--json", type=Path, default=None, help="default benchmarks/results/rotary_<device>.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warm_heap = device.type == "cpu" and args.warm_heap and keep_freed_memory_mapped()
    reps = args.reps or (5 if args.quick else (100 if device.type == "cuda" else 25))
    warmup = 1 if args.quick else args.warmup
    names = [m for m in args.methods if not (args.no_compile and m == "ropelab-compile")]
    passes = ["fwd"] if args.no_backward else ["fwd", "fwd+bwd"]
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "shape": f"q [{BATCH},{Q_HEADS},S,{HEAD_DIM}], k [{BATCH},{KV_HEADS},S,{HEAD_DIM}]", "reps": reps,
        "allocator": "glibc heap, freed memory kept (mallopt)" if warm_heap else "default",
    }
    print(f"# RoPE benchmark on {device.type} ({env['device']}), torch {env['torch']}, {env['threads']} threads; "
          f"{env['shape']}; median of {reps}; allocator: {env['allocator']}", flush=True)
    rows: list[Row] = []
    cases = [] if args.decode_only else [(seq, dtype_name, BATCH, None) for dtype_name in args.dtype for seq in args.seq]
    if not args.no_decode:
        cases += [(1, "fp32", batch, offset) for batch in DECODE_BATCHES for offset in DECODE_OFFSETS]
    for seq, dtype_name, batch, offset in cases:
        case = make_case(seq, DTYPES[dtype_name], device, batch, offset)
        if offset is None:
            case_names = [m for m in names if m != "ropelab-step"]
        else:
            case_names = [m for m in names if m in DECODE_METHODS]
        case_passes = passes if offset is None else ["fwd"]
        case_rows = run_case(case, case_names, case_passes, reps, warmup, peak=not args.no_peak_memory)
        print(format_table(case_rows).split("\n", 2)[-1] if rows else format_table(case_rows), flush=True)
        rows.extend(case_rows)
        del case
    env["rope_cache"] = ropelab.rotary.cache_info()
    print(f"\n# ropelab.rotary.cache_info() after the run: {env['rope_cache']}")
    cache = cache_bytes_report()
    print("\n# cos/sin cache for a 1M-token context at head_dim 128 (bytes):")
    for key, value in cache.items():
        print(f"  {key}: {value:,}" + (f" ({value / 2**20:.0f} MiB)" if key != "tokens" and value >= 2**20 else ""))
    out = args.json or Path(__file__).parent / "results" / f"rotary_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"env": env, "rows": [asdict(r) for r in rows], "cache_bytes": cache}, indent=1))
    os.replace(tmp, out)  # written atomically
    print(f"\nsaved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
