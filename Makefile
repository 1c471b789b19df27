# Linguistic collapse — one command per job. `make help` lists them.
PROFILE ?= cpu
PYTHON  ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
SHARED_TINYSTORIES := ../shared/data/tinystories
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help setup paper test test-fast bench lint lab clean-runs
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install everything (CPU torch 2.13.0)

data/tinystories/train.txt:  # the offline TinyStories sample, where this machine has it
	@if [ -d $(SHARED_TINYSTORIES) ]; then mkdir -p data/tinystories && \
	  cp $(SHARED_TINYSTORIES)/train.txt $(SHARED_TINYSTORIES)/validation.txt data/tinystories/; \
	else echo "note: no local TinyStories text; the cpu profile will try the Hugging Face hub"; fi

paper: setup data/tinystories/train.txt  ## run the notebook series (PROFILE=smoke|cpu|paper; default cpu)
	$(PY) -m lib paper --profile $(PROFILE)

test: setup  ## unit tests + nbval of the committed smoke notebooks
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests runs/smoke --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

test-fast: setup  ## unit tests only
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests -m "not slow"

bench: setup  ## speed and memory of accumulation and measures vs plain baselines
	$(PY) scripts/bench.py

lint: setup  ## ruff over code and notebooks
	$(VENV)/bin/ruff check lib tests scripts notebooks

lab: setup  ## open JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks

clean-runs:  ## forget stage stamps of PROFILE (forces `make paper` to re-execute notebooks)
	rm -rf data/$(PROFILE)/stamps
