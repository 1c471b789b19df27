# Linguistic collapse — one command per job. `make help` lists them.
PROFILE ?= cpu
PYTHON  ?= python3.11
VENV    := .venv
PY      := $(VENV)/bin/python
LOCK    := requirements.lock
ARGS    ?=
# Where `make lock` finds the CPU build of torch (a folder of wheels, or set TORCH_INDEX below).
TORCH_WHEELS ?= /opt/wheels
TORCH_INDEX  ?= https://download.pytorch.org/whl/cpu
SHARED_TINYSTORIES := ../shared/data/tinystories
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false
# OpenMP threads sleep instead of spinning while they wait, so training beside other processes
# keeps its speed (lib/linguistic_collapse/core/openmp.py); a value already set wins.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: help setup bpe-ranks lock paper notebooks test test-fast test-othercpu test-browser test-slurm bench lint lab clean-runs
.DEFAULT_GOAL := help

help:  ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# The environment is the lock: exact versions of everything, CPU torch 2.13.0.
$(VENV)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e ".[paper,slurm,dev]"  # the lock pins every extra's packages
	touch $@

setup: $(VENV)/.installed bpe-ranks  ## create .venv and install requirements.lock (CPU torch 2.13.0)

# GPT-2's BPE ranks (the paper profile's tokenizer) from the openai-whisper sdist on PyPI,
# sha256-verified into data/gpt2-bpe/ (linguistic_collapse.lm.gpt2_bpe); offline, it is fetched on first use.
bpe-ranks: $(VENV)/.installed  ## fetch and verify GPT-2's BPE ranks into data/gpt2-bpe/
	@$(PY) -m linguistic_collapse.lm.gpt2_bpe || echo "note: GPT-2 BPE ranks not fetched; the gpt2-bpe tokenizer fetches them on first use"

lock:  ## refresh requirements.lock from pyproject.toml, every extra (uv pip compile, CPU torch, Linux x86_64)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv>=0.13"
	echo "torch==2.13.0+cpu" > $(VENV)/torch-cpu.txt
	$(VENV)/bin/uv pip compile pyproject.toml --all-extras --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --override $(VENV)/torch-cpu.txt \
	  $$( [ -d $(TORCH_WHEELS) ] && echo --find-links $(TORCH_WHEELS) || \
	      echo --extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match ) \
	  --no-emit-find-links --no-emit-index-url --custom-compile-command "make lock" \
	  --upgrade -o $(LOCK)
	sed -i 's/^torch==2.13.0+cpu$$/torch==2.13.0/' $(LOCK)  # any CPU or CUDA build of 2.13.0

data/tinystories/train.txt:  # the offline TinyStories sample, where this machine has it
	@if [ -d $(SHARED_TINYSTORIES) ]; then mkdir -p data/tinystories && \
	  cp $(SHARED_TINYSTORIES)/train.txt $(SHARED_TINYSTORIES)/validation.txt data/tinystories/; \
	else echo "note: no local TinyStories text; the cpu profile will try the Hugging Face hub"; fi

paper: setup data/tinystories/train.txt  ## run the notebook series (PROFILE=smoke|cpu|paper; default cpu)
	$(PY) -m linguistic_collapse paper --profile $(PROFILE)

notebooks: setup  ## build each notebooks/ .ipynb from its .py twin (outputs stripped; refuses if both changed)
	$(PY) -m linguistic_collapse paper --sync-notebooks

# Tables and figures of the nbval runs go to a temporary folder (tests/conftest.py sets
# LC_OUTPUT_ROOT), never to runs/ or figures/.
test: setup  ## unit tests + nbval of the committed smoke notebooks
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests runs/smoke -m "not browser" --nbval \
	  --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

test-fast: setup  ## unit tests only
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not browser" -p no:cacheprovider

# Another numeric path stands in for another CPU: MKL's portable code path, torch's kernels
# without AVX, two torch threads (tests and notebook kernels). Round-off then differs from the
# committed run; every test and the nbval of the smoke notebooks must still pass (tests/numerics.py).
OTHERCPU := MKL_CBWR=COMPATIBLE ATEN_CPU_CAPABILITY=default LC_TORCH_THREADS=2
test-othercpu: setup  ## the fast tier + nbval of the smoke notebooks under another numeric path
	$(OTHERCPU) HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests runs/smoke \
	  -m "not slow and not browser" --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

bench: setup  ## speed and memory of accumulation and measures vs plain baselines (ARGS=--quick: tiny sizes)
	$(PY) scripts/bench.py $(ARGS)

lint: setup  ## ruff over code and the notebook sources (notebooks/*.py)
	$(VENV)/bin/ruff check lib tests scripts notebooks

# JupyterLab serves the repository (so jupytext finds jupytext.toml and saves both twins) and
# opens its file browser on notebooks/; .jupyter/ makes a .py twin open as a notebook.
LAB := JUPYTER_CONFIG_PATH=$(CURDIR)/.jupyter PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/jupyter lab \
  --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/notebooks

lab: setup  ## open JupyterLab on the notebooks (flags: make lab ARGS="--allow-root --no-browser")
	@$(PY) -m linguistic_collapse.series.sources --keep-outputs  # builds missing or stale .ipynb twins
	$(LAB) $(ARGS)

test-browser: setup  ## drive JupyterLab in headless Chromium (needs chromium + chromium-driver)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest tests/browser -m browser -p no:cacheprovider -v

clean-runs:  ## forget stage stamps of PROFILE (forces `make paper` to re-execute notebooks)
	rm -rf data/$(PROFILE)/stamps

# The SLURM tier: a real one-node cluster on this machine (root: installs slurm-wlm and munge),
# then tests/slurm against it; the daemons are stopped by PID whatever the result.
SLURM_DIR ?= /tmp/lc-slurm-test
test-slurm: setup  ## SLURM tier: start a one-node cluster (root), run tests/slurm, stop it
	scripts/slurm_cluster.sh start $(SLURM_DIR)
	PYTHONPATH=$(CURDIR)/lib SLURM_CONF=$(SLURM_DIR)/slurm.conf LC_SLURM_TIER=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
	  $(PY) -m pytest tests/slurm -p no:cacheprovider -x --basetemp=$(SLURM_DIR)/tmp; rc=$$?; \
	  scripts/slurm_cluster.sh stop $(SLURM_DIR); exit $$rc
