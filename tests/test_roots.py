"""Roots from where you work: profiles, notebooks, runs, figures and data are found in the checkout
of the working directory (or ``--root`` / ``$LC_ROOT``), never from where the code lies, and a
run whose code comes from another checkout writes nothing into that checkout."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from checkout import REPO_ROOT
from linguistic_collapse.core import paths
from linguistic_collapse.core.errors import UserError


def _checkout(folder: Path, *, code: bool = False) -> Path:
    """A minimal copy of this checkout: profiles, notebooks, jupytext.toml, the smoke tables (and
    with ``code`` the package under ``lib/``)."""
    for name in ("profiles", "notebooks"):
        shutil.copytree(REPO_ROOT / name, folder / name,
                        ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(REPO_ROOT / "jupytext.toml", folder)
    (folder / "runs" / "smoke").mkdir(parents=True)
    for table in (REPO_ROOT / "runs" / "smoke").glob("*.csv"):
        shutil.copy(table, folder / "runs" / "smoke")
    if code:
        shutil.copytree(REPO_ROOT / "lib", folder / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _env(code_checkout: Path, **extra: str) -> dict[str, str]:
    """An environment whose code is ``code_checkout``'s ``lib/`` (as an editable install of that
    clone would give), with no root given and no output redirection, no bytecode written."""
    env = {k: v for k, v in os.environ.items()
           if k not in (paths.ROOT_ENV, paths.OUTPUT_ROOT_ENV, "PYTHONPATH")}
    return {**env, "PYTHONPATH": str(code_checkout / "lib"), "PYTHONDONTWRITEBYTECODE": "1",
            "HF_HUB_OFFLINE": "1", **extra}


def _python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


# ---------------------------------------------------------------------------------------------
# Finding the checkout


def test_the_root_is_found_from_the_working_directory(tmp_path, monkeypatch):
    root = _checkout(tmp_path / "clone")
    (root / "notebooks" / "deeper").mkdir()
    monkeypatch.delenv(paths.ROOT_ENV)
    monkeypatch.chdir(root / "notebooks" / "deeper")
    assert paths.repo_root() == root.resolve()
    assert paths.profiles_dir() == root.resolve() / "profiles"
    assert paths.resolve("data/smoke") == root.resolve() / "data" / "smoke"
    assert paths.Layout("data/smoke").root == root.resolve() / "data" / "smoke"


def test_root_env_wins_over_the_working_directory(tmp_path, monkeypatch):
    first, second = _checkout(tmp_path / "first"), _checkout(tmp_path / "second")
    monkeypatch.chdir(first)
    monkeypatch.setenv(paths.ROOT_ENV, str(second))
    assert paths.repo_root() == second.resolve()
    assert paths.find_root(first) == first.resolve()  # an explicit start ignores $LC_ROOT


def test_a_root_env_that_is_no_checkout_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"\$LC_ROOT .* is not a linguistic-collapse checkout") as err:
        paths.repo_root()
    assert "\n" not in str(err.value)


def test_outside_any_checkout_a_profile_needs_one_and_says_how(tmp_path, monkeypatch):
    from linguistic_collapse.core.profiles import load_profile

    monkeypatch.delenv(paths.ROOT_ENV)
    monkeypatch.chdir(tmp_path)
    assert paths.find_root() is None
    with pytest.raises(UserError, match="no linguistic-collapse checkout found") as err:
        load_profile("smoke")
    assert "--root" in str(err.value) and "LC_ROOT" in str(err.value) and "\n" not in str(err.value)
    assert paths.resolve(tmp_path / "x") == tmp_path / "x"  # absolute paths need no checkout
    assert paths.short(tmp_path / "x") == str(tmp_path / "x")  # nor do messages


def test_a_name_that_may_be_a_hub_model_needs_no_checkout(tmp_path, monkeypatch):
    clone = _checkout(tmp_path / "clone")
    monkeypatch.delenv(paths.ROOT_ENV)
    monkeypatch.chdir(tmp_path)
    assert paths.resolve_if_checkout("gpt2") == Path("gpt2")  # outside: as given
    monkeypatch.chdir(clone)
    assert paths.resolve_if_checkout("models/x") == clone.resolve() / "models" / "x"


@pytest.mark.slow  # spawns the CLI or Python in subprocesses (imports torch afresh)
def test_the_cli_outside_a_checkout_refuses_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "linguistic_collapse", "paper", "--profile", "smoke"],
                         cwd=tmp_path, env=_env(REPO_ROOT), capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).strip().splitlines()
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(lines) == 1 and "no linguistic-collapse checkout found" in lines[0], lines
    assert not any(tmp_path.iterdir())


@pytest.mark.slow  # spawns the CLI or Python in subprocesses (imports torch afresh)
def test_root_option_names_the_checkout(tmp_path):
    """``--root DIR`` before the command: a clone found from anywhere; a folder that is no clone
    is refused in one line (exit 2)."""
    clone = _checkout(tmp_path / "clone")
    (tmp_path / "elsewhere").mkdir()
    (clone / "profiles" / "mine.yaml").write_text(
        (clone / "profiles" / "smoke.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    cli = [sys.executable, "-m", "linguistic_collapse"]
    ok = subprocess.run([*cli, "--root", str(clone), "paper", "--profile", "nope"],
                        cwd=tmp_path / "elsewhere", env=_env(REPO_ROOT), capture_output=True,
                        text=True, timeout=120)
    assert ok.returncode == 2 and "mine" in ok.stdout, ok.stdout + ok.stderr  # clone's profiles
    bad = subprocess.run([*cli, f"--root={tmp_path / 'elsewhere'}", "paper"], cwd=tmp_path,
                         env=_env(REPO_ROOT), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "--root" in bad.stderr and "is not a linguistic-collapse checkout" in bad.stderr


@pytest.mark.slow  # spawns the CLI or Python in subprocesses (imports torch afresh)
def test_the_core_works_outside_any_checkout(tmp_path):
    """``linguistic_collapse.nc`` and the Trainer callback need no root: accumulate, measure,
    save, load and ``measure`` at the shell from a folder that is no checkout."""
    code = """
import torch
from linguistic_collapse.nc import ClassStats
import linguistic_collapse.lm.hf_callback  # importable with no checkout
g = torch.Generator().manual_seed(0)
stats = ClassStats(num_classes=4, dim=3)
stats.add(torch.randn(40, 3, generator=g, dtype=torch.float64), torch.arange(40) % 4)
W = torch.randn(4, 3, generator=g)
stats.add_validation(torch.randn(12, 3, generator=g, dtype=torch.float64), torch.arange(12) % 4, W)
stats.save("stats.safetensors", model="m")
print(ClassStats.load("stats.safetensors").measures(W)["nc4_agreement"])
"""
    env = _env(REPO_ROOT)
    run = _python(code, tmp_path, env)
    assert run.returncode == 0, run.stderr
    assert 0 <= float(run.stdout.strip().splitlines()[-1]) <= 1
    shell = subprocess.run([sys.executable, "-m", "linguistic_collapse", "measure",
                            "stats.safetensors", "--out", "m.json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shell.returncode == 0, shell.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "stats.safetensors"]


# ---------------------------------------------------------------------------------------------
# Two clones: the code of the first, working in the second


def test_a_kernel_finds_the_checkout_it_runs_in_not_the_codes(tmp_path):
    """What a notebook kernel does (``paper.notebook_setup`` in ``notebooks/``) with the code of
    another clone: every path is the working clone's."""
    first, second = _checkout(tmp_path / "first", code=True), _checkout(tmp_path / "second")
    code = ("from linguistic_collapse.series import paper\n"
            "cfg = paper.notebook_setup('smoke', style=False)\n"
            "print(cfg.results_table, cfg.figures_dir, cfg.profile.out_path, sep='\\n')")
    run = _python(code, second / "notebooks", _env(first))
    assert run.returncode == 0, run.stderr
    table, figures, out = (Path(line) for line in run.stdout.strip().splitlines()[-3:])
    assert table == second.resolve() / "runs" / "smoke" / "results.csv"
    assert figures == second.resolve() / "figures" / "smoke"
    assert out == second.resolve() / "data" / "smoke"


def test_the_runner_gives_every_kernel_its_root(tmp_path, monkeypatch):
    from linguistic_collapse.series import paper

    monkeypatch.delenv(paths.ROOT_ENV)
    clone = _checkout(tmp_path / "clone")
    read = [sys.executable, "-c", f"import os; print(os.environ[{paths.ROOT_ENV!r}])"]
    with paper.kernels_root(clone):  # kernels are processes started in here: they inherit it
        seen = subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip()
    assert seen == str(clone)
    assert paths.ROOT_ENV not in os.environ  # restored after the series


def test_the_runner_notes_code_from_another_checkout(tmp_path):
    from linguistic_collapse.series import paper

    clone = _checkout(tmp_path / "clone")
    note = paper.code_elsewhere_note(clone.resolve())
    assert note is not None and str(clone.resolve()) in note and str(REPO_ROOT) in note
    assert paper.code_elsewhere_note(REPO_ROOT) is None


@pytest.mark.slow
def test_a_series_run_with_another_clones_code_writes_only_the_working_clone(tmp_path):
    """The issue's case: from the second clone, with the first clone's code,
    ``paper --profile smoke --stage 05_permutation --force`` wrote ``runs/smoke/permutation.csv``
    (and figures, stamps) into the first clone. Now the first clone is left byte for byte as it
    was and the second gets the outputs."""
    first, second = _checkout(tmp_path / "first", code=True), _checkout(tmp_path / "second")
    before = _snapshot(first)
    run = subprocess.run([sys.executable, "-m", "linguistic_collapse", "paper", "--profile", "smoke",
                          "--stage", "05_permutation", "--force"], cwd=second, env=_env(first),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert _snapshot(first) == before, "the run wrote into the clone its code came from"
    assert (second / "runs" / "smoke" / "05_permutation.ipynb").is_file()
    assert (second / "figures" / "smoke" / "table1_permutation.png").is_file()
    assert (second / "data" / "smoke" / "stamps" / "05_permutation.sha256").is_file()
    assert "the code is" in run.stdout  # the one-line note
