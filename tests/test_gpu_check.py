"""scripts/gpu_check.sh in its CPU form (what CI runs) and the pieces of scripts/gpu_check.py."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.sh"

try:  # the generated corpus may move from linguistic_collapse.lm.data to linguistic_collapse.lm.synthetic
    from linguistic_collapse.lm.synthetic import generate_corpus
except ImportError:
    from linguistic_collapse.lm.data import generate_corpus

RESULT_KEYS = ["device", "text", "tokenizer", "flash attention", "model", "train",
               "train tokens/s", "model flop utilisation", "peak GPU memory", "val loss",
               "collection tokens/s", "measures", "max relative difference cuda vs cpu measures",
               "measures finite", "done"]


def _load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(*args: str, timeout: int = 150) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_TIMEOUT": str(timeout - 10)}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


@pytest.mark.slow  # runs scripts/gpu_check.py in a subprocess (imports torch afresh)
def test_cpu_form_runs_and_prints_every_figure(tmp_path):
    text = tmp_path / "stories.txt"
    text.write_text("\n".join(generate_corpus(400, seed=3)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = _run("--device", "cpu", "--text", str(text), "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    missing = [k for k in RESULT_KEYS if k not in lines]
    assert not missing, (missing, proc.stdout)
    assert lines["device"].startswith("cpu") and "tiny CPU form" in lines["device"]
    assert "L1 d32 ctx64" in lines["model"]
    assert lines["train"].startswith("20 steps x 8 blocks")
    assert float(lines["train tokens/s"].replace(",", "")) > 0
    assert lines["flash attention"].startswith("not used")
    assert lines["peak GPU memory"].startswith("n/a")
    assert lines["measures finite"] == "yes"
    assert "n/a (no CUDA)" in lines["max relative difference cuda vs cpu measures"]
    assert "nc1_cdnv=" in lines["measures"] and "nc4_agreement=" in lines["measures"]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["train"]["steps"] == 20 and summary["size"]["compare_train_blocks"] == 16
    # two CPU collections, different batch sizes: equal to round-off, except that the classic
    # NC1 inverts Sigma_B, whose condition number on this tiny model amplifies round-off
    worst, which = summary["max_rel_diff"], summary["max_rel_diff_measure"]
    assert worst < 1e-9 or (which == "nc1_pinv" and worst < 1e-4), (worst, which)
    assert all(math.isfinite(v) for v in summary["measures"].values())
    assert (out / "checkpoint" / "config.json").is_file()


@pytest.mark.slow  # runs scripts/gpu_check.py in a subprocess (imports torch afresh)
def test_missing_text_fails_with_the_fix(tmp_path):
    proc = _run("--device", "cpu", "--text", str(tmp_path / "absent"), timeout=60)
    assert proc.returncode != 0
    assert "no text at" in proc.stderr and "--text PATH" in proc.stderr


def test_peak_table_and_relative_difference():
    gc = _load_module()
    assert gc.peak_flops("NVIDIA H200", None) == 989e12
    assert gc.peak_flops("NVIDIA H100 80GB HBM3", None) == 989e12
    assert gc.peak_flops("NVIDIA A100-SXM4-80GB", None) == 312e12
    assert gc.peak_flops("Some New GPU", None) is None
    assert gc.peak_flops("NVIDIA H200", 500) == 500e12
    worst, which = gc.max_rel_diff({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.2})
    assert which == "b" and worst == pytest.approx(0.2 / 2.2)
    assert gc.max_rel_diff({"a": 1.0}, {"a": float("nan")}) == (math.inf, "a")


def test_gpu_sizes_match_the_brief():
    gc = _load_module()
    g = gc.GPU_SIZE
    assert (g.n_layer, g.width, g.context) == (4, 512, 512) and 200 <= g.steps <= 500
    assert 100 <= g.compare_train_blocks <= 500
    c = gc.CPU_SIZE
    assert (c.n_layer, c.width, c.context, c.steps, c.compare_train_blocks) == (1, 32, 64, 20, 16)


def test_cpu_copy_is_the_same_checkpoint():
    import torch
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config

    gc = _load_module()
    cfg = {"n_layer": 2, "n_embd": 32, "vocab_size": 50, "n_ctx": 16}
    model = build_model(gpt_neo_config(**cfg), seed=3).eval()
    copy = gc.cpu_copy(model, cfg)
    ids = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(copy(input_ids=ids).logits, model(input_ids=ids).logits)
    assert copy.config._attn_implementation == "eager"


def test_gpu_form_uses_the_papers_tokenizer():
    module = _load_module()
    assert module.GPU_SIZE.tokenizer == "gpt2-bpe" and module.GPU_SIZE.vocab == 50257
    assert module.CPU_SIZE.tokenizer == "bpe"  # CI's CPU form stays tiny
