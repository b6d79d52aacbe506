#!/usr/bin/env bash
# The GPU check in one call: the kernel tests compiled on CUDA, then the side-by-side speed run.
#
#   bash benchmarks/gpu_check.sh      # from anywhere; writes under $OUT (default ./gpu_out)
#
# Made for the device machine (one H200, python3 = /opt/torch/.venv with torch 2.11 + triton 3.6,
# no network). Packages it lacks travel in the ignored folder .whl/ at the repository root (carry it):
#   liger-kernel, rotary-embedding-torch and transformers 5.23.0 wheels (pure Python; their needs
#   are met by the image: einops, huggingface_hub 1.33, tokenizers 0.23.2, ...; no torch or triton),
#   and flash_attn_rotary.py, flash-attn's flash_attn/ops/triton/rotary.py out of its sdist.
# They install into /tmp/site, ahead of the image's packages on PYTHONPATH.
# bash benchmarks/gpu_wheels.sh rebuilds .whl/ on a machine with PyPI.
#
# About 2.5 minutes expected (tests ~1, bench ~1.5); at most ~5 (pytest and the bench are capped
# by timeouts, and the bench skips compiled methods, then shapes, past its --budget-s).
# A dry run on a CPU (python3 with torch on PATH): PYTEST_ADDOPTS="-k 'not block_config'" \
#   BENCH_ARGS="--device cpu --seq 8 1 --reps 2" OUT=/tmp/gpu_out bash benchmarks/gpu_check.sh
# Files under $OUT: env.txt, kernels.log, bench.log, rotary_cuda_h200.json (commit the last one
# to benchmarks/results/).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
began=$(date +%s)

PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -3
export PYTHONPATH=/tmp/site:$PWD/src

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw --format=csv
  python3 - <<'EOF'
import importlib.metadata as md, sys, torch, triton
print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for name in ("transformers", "liger-kernel", "rotary-embedding-torch", "huggingface-hub", "tokenizers", "pytest-xdist", "flashinfer-python", "flash-attn"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} (not installed)")
import transformers
print("  transformers from", transformers.__file__)
EOF
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. Correctness, compiled. pytest-xdist (in the image) spreads the ~200 kernel compilations over
#    8 workers; --dist loadgroup keeps the 16 GiB cache of the 2**31 - 1 tests on one worker.
XDIST=""
python3 -c "import xdist" 2>/dev/null && XDIST="-n 8 --dist loadgroup"
timeout -k 10 120 python3 -m pytest -q -p no:cacheprovider $XDIST --tb=short --maxfail=25 \
  tests/test_kernels.py tests/test_multi_axis_kernel.py > "$OUT/kernels.log" 2>&1
echo "== pytest rc=$? ($(( $(date +%s) - began )) s)"
tail -n 30 "$OUT/kernels.log"

# 2. Speed: bf16, seq 1..65536, q/k contiguous [B,H,S,D] and [B,S,H,D] viewed, fwd and fwd+bwd,
#    every peer that imports, 30 repetitions with CUDA events, L2 flushed before each call.
timeout -k 10 170 python3 benchmarks/bench_rotary.py --gpu-suite --budget-s 100 \
  --json "$OUT/rotary_cuda_h200.json" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
echo "== bench rc=$? ($(( $(date +%s) - began )) s)"
grep -E "^  (skip|liger:)|WARNING|Error" "$OUT/bench.log" | head -n 30
sed -n '/^# ropelab against clone/,$p' "$OUT/bench.log" | grep -E "^# |^  qk|ropelab-fused  |PASS|MISS|saved"
echo "== total $(( $(date +%s) - began )) s"
