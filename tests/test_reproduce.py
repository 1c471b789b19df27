"""Reproduction on any machine: executed copies name no machine's folders, and the tables the
nbval runs of runs/smoke write agree with the committed ones to linguistic_collapse.tables.reproduce's tolerance."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from checkout import REPO_ROOT
from linguistic_collapse.series.paper import repo_relative_outputs
from linguistic_collapse.tables.reproduce import RTOL, table_differences

# an absolute path into a checkout: /<anything>/(data|runs|figures|notebooks|lib)/...
MACHINE_PATH = re.compile(r"(?<![\w.~])/[^\s'\"]*/(?:data|runs|figures|notebooks|lib|profiles)/")
BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{200,}")
COMMITTED = sorted((REPO_ROOT / "runs").glob("*/*.ipynb")) + sorted((REPO_ROOT / "runs").glob("*/*.csv"))
SMOKE_TABLES = ("results.csv", "layers.csv", "sensitivity.csv", "dynamics.csv", "correlations.csv")


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_committed_runs_name_no_machine_path(path):
    # embedded images (long base64 runs) hold no path and make the path pattern backtrack
    text = BASE64_RUN.sub("", path.read_text(encoding="utf-8"))
    found = MACHINE_PATH.findall(text) or [m for m in ("PosixPath('/", str(REPO_ROOT)) if m in text]
    assert not found, f"{path.relative_to(REPO_ROOT)} holds an absolute path ({found[0]}...); " \
                      "executed copies and tables must name paths relative to the repository"


def test_repo_relative_outputs_strips_the_checkout():
    root = Path("/somewhere/checkout")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("execute_result", {"text/plain": f"PosixPath('{root}/figures/smoke/a.png')"}),
        nbformat.v4.new_output("stream", name="stdout", text=f"wrote {root}/runs/smoke/results.csv\n"),
    ])])
    repo_relative_outputs(nb, (root,))
    outs = nb.cells[0].outputs
    assert outs[0]["data"]["text/plain"] == "PosixPath('figures/smoke/a.png')"
    assert outs[1]["text"] == "wrote runs/smoke/results.csv\n"


def test_tolerance_accepts_cross_cpu_drift_and_rejects_more():
    ref = pd.DataFrame({"name": ["a", "b", "c"], "count": [3, 4, 5],
                        "nc1_cdnv": [100.0, 20.0, 1.0], "r2": [0.9, 0.0004, 0.5]})
    drift = ref.assign(nc1_cdnv=ref["nc1_cdnv"] * 1.014, r2=ref["r2"] + 0.0006)
    assert table_differences(ref, drift) == []
    assert table_differences(ref, ref.assign(nc1_cdnv=ref["nc1_cdnv"] * (1 + 2.5 * RTOL)))
    assert table_differences(ref, ref.assign(count=[3, 4, 6])), "counts must match exactly"
    assert table_differences(ref, ref.assign(name=["a", "b", "d"])), "labels must match exactly"
    assert table_differences(ref, ref.iloc[:2]), "rows must match"
    hashed = ref.assign(weights_sha256=["1", "2", "3"])
    assert table_differences(hashed, hashed.assign(weights_sha256=["4", "5", "6"])) == []


@pytest.mark.after_notebooks
@pytest.mark.parametrize("table", SMOKE_TABLES)
def test_fresh_smoke_tables_agree_with_the_committed_ones(table):
    """Runs after the nbval runs of runs/smoke (tests/conftest.py orders it last)."""
    committed = REPO_ROOT / "runs" / "smoke" / table
    fresh = Path(os.environ["LC_OUTPUT_ROOT"]) / "runs" / "smoke" / table
    if not fresh.exists() or fresh.stat().st_mtime == committed.stat().st_mtime:
        pytest.skip("no fresh table: run with `runs/smoke --nbval` (as `make test` does)")
    problems = table_differences(pd.read_csv(committed), pd.read_csv(fresh))
    assert not problems, f"runs/smoke/{table} moved beyond the tolerance: " + "; ".join(problems)


def test_kernel_thread_count_comes_from_the_environment(monkeypatch):
    import torch
    from linguistic_collapse.core.errors import UserError
    from linguistic_collapse.lm.devices import THREADS_ENV, apply_thread_setting

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(THREADS_ENV, "3")
        assert apply_thread_setting() == 3 == torch.get_num_threads()
        monkeypatch.delenv(THREADS_ENV)
        assert apply_thread_setting() == 3, "unset: torch's count is left alone"
        for bad in ("0", "two", "-1"):
            monkeypatch.setenv(THREADS_ENV, bad)
            with pytest.raises(UserError, match=THREADS_ENV):
                apply_thread_setting()
    finally:
        torch.set_num_threads(before)


def test_largest_relative_change_is_judged_as_table_differences_judges():
    from linguistic_collapse.tables.reproduce import SCALE_ATOL, largest_relative_change

    ref = pd.DataFrame({"run": ["a", "b", "c"], "nc1": [100.0, 2.0, 0.0], "n": [5, 6, 7],
                        "weights_sha256": ["x", "y", "z"]})
    new = ref.assign(nc1=[100.5, 2.0, 0.0], weights_sha256=["p", "q", "r"])
    got, col = largest_relative_change(ref, new)
    assert col == "nc1" and got == pytest.approx(0.5 / (100.5 + SCALE_ATOL / RTOL * 100.5))
    assert largest_relative_change(ref, ref) == (0.0, "")
    assert largest_relative_change(ref, ref.iloc[:2]) is None
    near_zero = ref.assign(nc1=[100.0, 2.0, 1e-9])  # against the column's size, not 1e-9's
    assert largest_relative_change(ref, near_zero)[0] < 1e-9
    for factor in (1 + RTOL * 0.9, 1 + RTOL * 1.2):  # the same verdict as the tolerance
        moved = ref.assign(nc1=[100.0 * factor, 2.0, 0.0])
        assert (largest_relative_change(ref, moved)[0] <= RTOL) == (not table_differences(ref, moved))


def test_rerun_summary_counts_changed_committed_files_and_the_largest_change(tmp_path):
    import subprocess

    from linguistic_collapse.tables.reproduce import rerun_summary

    repo = tmp_path / "repo"
    (repo / "runs" / "p").mkdir(parents=True)
    (repo / "figures" / "p").mkdir(parents=True)
    table = pd.DataFrame({"run": ["a", "b"], "nc1": [1.0, 4.0]})
    table.to_csv(repo / "runs" / "p" / "results.csv", index=False)
    (repo / "runs" / "p" / "findings.md").write_text("nc1 1.000\n")
    (repo / "figures" / "p" / "f.svg").write_text("<svg/>")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "outputs"], check=True)
    assert rerun_summary(repo, repo, "p").startswith("0 of 3 committed files")
    table.assign(nc1=[1.0, 4.004]).to_csv(repo / "runs" / "p" / "results.csv", index=False)
    (repo / "figures" / "p" / "f.svg").write_text("<svg></svg>")
    line = rerun_summary(repo, repo, "p")
    assert line.startswith("2 of 3 committed files under runs/p and figures/p changed (1 tables)")
    assert "9.5e-04 (results.csv, column nc1), within the tolerance RTOL = 0.02" in line  # 0.004 / 4.2
    elsewhere = tmp_path / "out"  # an output root outside the repository ($LC_OUTPUT_ROOT)
    (elsewhere / "runs" / "p").mkdir(parents=True)
    table.assign(nc1=[1.0, 5.0]).to_csv(elsewhere / "runs" / "p" / "results.csv", index=False)
    line = rerun_summary(repo, elsewhere, "p")
    assert line.startswith("3 of 3") and "BEYOND the tolerance" in line
    assert rerun_summary(tmp_path / "nogit", tmp_path, "p").startswith("no git history")
