"""OpenMP's passive wait policy: set before torch loads by the CLI, the notebook kernels' environment
and the Makefile; a user's value wins. ``scripts/bench_threads.py`` runs at tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from linguistic_collapse.core.openmp import WAIT_POLICY_ENV, default_wait_policy
from linguistic_collapse.series.paper import kernel_environment

REPO = Path(__file__).resolve().parent.parent
PROBE = ("import sys, os; import linguistic_collapse.__main__; "
         "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY_ENV}
    return {**env, "PYTHONPATH": str(REPO / "lib"), **extra}


def test_cli_entry_sets_passive_before_torch():
    out = subprocess.run([sys.executable, "-c", PROBE], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"]  # set, and torch not yet loaded


def test_cli_entry_keeps_the_users_value():
    out = subprocess.run([sys.executable, "-c", PROBE], env=_env(OMP_WAIT_POLICY="ACTIVE"),
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "ACTIVE"


def test_default_wait_policy_on_a_mapping():
    assert default_wait_policy(env := {}) == "PASSIVE" and env == {WAIT_POLICY_ENV: "PASSIVE"}
    assert default_wait_policy(env := {WAIT_POLICY_ENV: "ACTIVE"}) == "ACTIVE" and env[WAIT_POLICY_ENV] == "ACTIVE"


def test_kernel_environment_sets_and_restores(monkeypatch):
    monkeypatch.delenv(WAIT_POLICY_ENV, raising=False)
    with kernel_environment():
        assert os.environ[WAIT_POLICY_ENV] == "PASSIVE"  # what the papermill kernel inherits
    assert WAIT_POLICY_ENV not in os.environ
    monkeypatch.setenv(WAIT_POLICY_ENV, "ACTIVE")
    with kernel_environment():
        assert os.environ[WAIT_POLICY_ENV] == "ACTIVE"
    assert os.environ[WAIT_POLICY_ENV] == "ACTIVE"


def test_makefile_exports_passive_unless_set():
    probe = ["make", "-s", "-C", str(REPO), "--eval", "probe-wait: ; @echo $$OMP_WAIT_POLICY", "probe-wait"]
    if subprocess.run(["make", "--version"], capture_output=True).returncode != 0:
        pytest.skip("no make")
    assert subprocess.run(probe, env=_env(), capture_output=True, text=True).stdout.strip() == "PASSIVE"
    kept = subprocess.run(probe, env=_env(OMP_WAIT_POLICY="ACTIVE"), capture_output=True, text=True)
    assert kept.stdout.strip() == "ACTIVE"


@pytest.mark.slow
def test_bench_threads_quick():
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_threads.py"), "--quick"],
                         env=_env(), capture_output=True, text=True, check=True, timeout=600)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("cores ")
    model, row = lines[1].split(" {", 1)
    row = json.loads("{" + row)
    tps = row["tokens_per_s"]
    assert set(tps) == {"alone/default", "alone/PASSIVE", "competing/default", "competing/PASSIVE"}
    assert all(v > 0 for v in tps.values())
    # the ratios are the stated quotients of the medians (3 significant figures: 1 % tolerance)
    assert row["passive_vs_default_competing"] == pytest.approx(
        tps["competing/PASSIVE"] / tps["competing/default"], rel=0.01)
    assert row["default_competing_vs_alone"] == pytest.approx(tps["competing/default"] / tps["alone/default"], rel=0.01)
