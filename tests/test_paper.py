"""The notebook runner: parameters from one profile, stamps, every module importable, the CLI."""

import importlib
import pkgutil
import subprocess
import sys

import nbformat
import pytest

import lib
from lib.paper import STAGES, profile_parameters, stage_parameters, stage_stamp
from lib.paths import NOTEBOOKS_DIR, REPO_ROOT
from lib.profiles import load_profile


@pytest.mark.parametrize("module", sorted(m.name for m in pkgutil.iter_modules(lib.__path__)))
def test_every_module_imports(module):
    importlib.import_module(f"lib.{module}")


def _notebook(tmp_path, params_source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(params_source)])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_stage_parameters_pass_only_declared(tmp_path):
    path = _notebook(tmp_path, 'profile = "x"\nprogress = True')
    assert stage_parameters(path, {"profile": "smoke", "progress": False, "other": 1}) == {
        "profile": "smoke", "progress": False}


def test_stage_parameters_refuse_undeclared_gap(tmp_path):
    path = _notebook(tmp_path, "mystery = 3")
    with pytest.raises(ValueError, match="mystery"):
        stage_parameters(path, {"profile": "smoke"})


def test_every_source_notebook_gets_its_parameters_from_the_smoke_profile():
    available = profile_parameters(load_profile("smoke"))
    for stage in STAGES:
        nb = nbformat.read(NOTEBOOKS_DIR / f"{stage}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, stage
        assert not any(c.outputs for c in nb.cells if c.cell_type == "code"), f"{stage} has outputs"
        assert stage_parameters(NOTEBOOKS_DIR / f"{stage}.ipynb", available)["profile"] == "smoke"


def test_stamp_changes_with_parameters_and_previous(tmp_path):
    path = _notebook(tmp_path, "a = 1")
    profile_file = REPO_ROOT / "profiles" / "smoke.yaml"
    base = stage_stamp(path, {"a": 1}, profile_file, "", "lib")
    assert base == stage_stamp(path, {"a": 1}, profile_file, "", "lib")
    assert base != stage_stamp(path, {"a": 2}, profile_file, "", "lib")
    assert base != stage_stamp(path, {"a": 1}, profile_file, "prev", "lib")
    assert base != stage_stamp(path, {"a": 1}, profile_file, "", "lib changed")


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "lib", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout
    for command in ("train", "grid", "collect", "merge-stats", "measure", "analyze", "paper"):
        assert command in out


def test_cli_paper_unknown_profile_fails_clearly():
    proc = subprocess.run([sys.executable, "-m", "lib", "paper", "--profile", "nope"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 1
    assert "unknown profile 'nope'" in proc.stdout
