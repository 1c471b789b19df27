#!/usr/bin/env bash
# GPU check of the paper's CUDA path, offline, within 8 minutes on one GPU (tiny CPU form without
# CUDA). Usage: scripts/gpu_check.sh [--text PATH] [--device auto|cuda|cpu] [--steps N]
#                                    [--peak-tflops X] [--out DIR]
# See scripts/gpu_check.py for what it trains, collects and prints. The CUDA form tokenizes with
# the paper's GPT-2 BPE: data/gpt2-bpe/gpt2.tiktoken (make setup fetches it; carry it to a
# machine without network, or set LC_GPT2_TIKTOKEN to a copy).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout --signal=INT --kill-after=20 "${GPU_CHECK_TIMEOUT:-480}" "$PY" scripts/gpu_check.py "$@"
