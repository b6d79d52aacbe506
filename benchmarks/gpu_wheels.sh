#!/usr/bin/env bash
# Rebuild .whl/, the ignored folder benchmarks/gpu_check.sh carries to the GPU machine (it has no
# network): the pure-Python peers and the pinned transformers as wheels, and flash-attn's Triton
# rotary file out of its sdist (its package needs a CUDA build; the file needs only triton). Never
# committed. Run here, from anywhere:  bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl \
  liger-kernel==0.8.5 rotary-embedding-torch==0.9.1 "$(grep -E '^transformers==' constraints.txt)"
sdist=$(mktemp -d)
# the sdist file itself, from the index's simple page (pip download would run its setup.py, which
# needs torch and a CUDA toolchain)
python3 - "$sdist" <<'PY'
import re, sys, urllib.parse, urllib.request
page = "https://pypi.org/simple/flash-attn/"
html = urllib.request.urlopen(page).read().decode()
href = next(h for h in re.findall(r'href="([^"]+)"', html) if "flash_attn-2.8.3.post2.tar.gz" in h)
urllib.request.urlretrieve(urllib.parse.urljoin(page, href), f"{sys.argv[1]}/flash_attn-2.8.3.post2.tar.gz")
PY
tar -xzf "$sdist"/flash_attn-*.tar.gz -C "$sdist"
cp "$sdist"/flash_attn-*/flash_attn/ops/triton/rotary.py .whl/flash_attn_rotary.py
cp "$sdist"/flash_attn-*/LICENSE .whl/flash_attn_LICENSE
echo "flash_attn/ops/triton/rotary.py from the flash-attn 2.8.3.post2 sdist (PyPI), BSD-3-Clause (flash_attn_LICENSE); not committed" > .whl/README.txt
rm -rf "$sdist"
du -sh .whl
