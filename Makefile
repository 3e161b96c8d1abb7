# `make setup pipeline` — fresh machine to finished main job; `make test` — the whole test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The stack is offline at run time: nothing is fetched from a model or dataset hub.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline

.PHONY: setup system-deps assets pipeline test test-fast benchmarks clean-outputs

# No root, no apt: a Python venv, the pinned stack, and the offline assets (incl. llama.cpp's tools).
setup: $(VENV)/.installed assets

# Debian packages that only the browser and terminal tests drive: headless Chromium + chromedriver
# (tests/test_browser_chat.py) and tmux (the terminal chat test). `make test` installs them with
# apt-get (needs root) when missing; a no-op in milliseconds when already there.
system-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v tmux >/dev/null || \
	  { echo "make test: installing Debian packages chromium chromium-driver tmux (browser/terminal tests)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver tmux; }

# Reinstalls only when the project's dependency files change; otherwise setup takes seconds.
$(VENV)/.installed: pyproject.toml requirements.lock.txt
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first and pinned: a CPU wheel lies on these machines; unpinned, pip pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	# llama-cpp-python builds llama.cpp from source (~6 min on 2 cores).
	CMAKE_BUILD_PARALLEL_LEVEL=2 $(PIP) install -q -r requirements.lock.txt
	$(PIP) install -q --no-deps -e .
	$(PIP) check
	touch $@

assets: $(VENV)/.installed
	$(PY) -m cogumi setup

pipeline: setup
	$(PY) -m cogumi pipeline

test: setup system-deps
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

benchmarks: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
