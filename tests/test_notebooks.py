"""The source notebooks: the tracked py:percent sources define notebooks with a title, one tagged
parameters cell, the one setup call, and thin calls into lib; their .ipynb twins are git-ignored
working copies built from them, so a JupyterLab session changes no tracked file."""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from checkout import NOTEBOOKS_DIR, REPO_ROOT
from linguistic_collapse.series.paper import PARAMETERS, STAGES, stage_parameters
from linguistic_collapse.series.sources import notebook_from_source, notebook_text, sync_notebooks

MAX_CELL_LINES = 16  # a code cell longer than this belongs in lib/


def _built(stage: str) -> str:
    """The notebook text the runner executes for ``stage``: built from its .py source."""
    return notebook_text(notebook_from_source(NOTEBOOKS_DIR / f"{stage}.py"))


def _cells(stage: str) -> list[dict]:
    return json.loads(_built(stage))["cells"]


def _code(stage: str) -> list[dict]:
    return [c for c in _cells(stage) if c["cell_type"] == "code"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _git(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs the git checkout")
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True)


def test_every_stage_has_a_py_source_and_nothing_else_is_paired():
    assert sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.py")) == list(STAGES)
    assert not list((REPO_ROOT / "runs").glob("*/*.py")), "executed copies must not get .py twins"


def test_only_the_py_twins_are_tracked_and_the_ipynb_twins_are_ignored():
    tracked = _git("ls-files", "notebooks").stdout.split()
    assert sorted(t for t in tracked if t.endswith((".py", ".ipynb"))) == \
        [f"notebooks/{stage}.py" for stage in STAGES]
    ignored = _git("check-ignore", *[f"notebooks/{stage}.ipynb" for stage in STAGES]).stdout.split()
    assert ignored == [f"notebooks/{stage}.ipynb" for stage in STAGES]


def test_jupytext_pairs_notebooks_only():
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(NOTEBOOKS_DIR / "01_train.ipynb"))
    assert "py:percent" in config.default_formats(str(NOTEBOOKS_DIR / "01_train.ipynb"))
    assert config.default_formats(str(REPO_ROOT / "runs" / "cpu" / "01_train.ipynb")) is None


def _sources_copy(tmp_path: Path) -> Path:
    for stage in STAGES:
        shutil.copy(NOTEBOOKS_DIR / f"{stage}.py", tmp_path)
    return tmp_path


def test_sync_builds_each_notebook_from_its_source_and_says_so_only_then(tmp_path):
    folder = _sources_copy(tmp_path)
    changes = sync_notebooks(folder)  # a fresh clone: no .ipynb yet
    assert [c.describe() for c in changes] == \
        [f"built {folder / stage}.ipynb from {stage}.py" for stage in STAGES]
    for stage in STAGES:
        assert (folder / f"{stage}.ipynb").read_text(encoding="utf-8") == _built(stage)
    assert sync_notebooks(folder) == []  # nothing to do: nothing said (`make notebooks` prints each)
    assert sync_notebooks(folder, check=True) == []


def test_a_notebook_saved_with_outputs_is_cleared_and_said_so(tmp_path):
    import nbformat

    folder = _sources_copy(tmp_path)
    sync_notebooks(folder)
    path = folder / "01_train.ipynb"
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran in Lab\n")]
    nb.metadata["language_info"]["version"] = "3.11.7"
    nbformat.write(nb, path)
    py = (folder / "01_train.py").read_bytes()
    changes = sync_notebooks(folder)
    assert [c.describe() for c in changes] == [
        f"cleared the outputs and metadata saved in {path} (its cells match 01_train.py)"]
    assert path.read_text(encoding="utf-8") == _built("01_train")
    assert (folder / "01_train.py").read_bytes() == py


def test_make_lab_keeps_what_lab_saved_but_builds_missing_and_stale_notebooks(tmp_path):
    import nbformat

    folder = _sources_copy(tmp_path)
    changes = sync_notebooks(folder, keep_outputs=True)
    assert [c.direction for c in changes] == ["new"] * len(STAGES)
    path = folder / "01_train.ipynb"
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran in Lab\n")]
    nbformat.write(nb, path)
    saved = path.read_text(encoding="utf-8")
    assert sync_notebooks(folder, keep_outputs=True) == [] and path.read_text(encoding="utf-8") == saved
    py = folder / "02_collect.py"
    py.write_text(py.read_text(encoding="utf-8").replace("# %%\n", "# %%\nx = 0\n", 1), encoding="utf-8")
    assert [c.describe() for c in sync_notebooks(folder, keep_outputs=True)] == \
        [f"rebuilt {folder / '02_collect.ipynb'} from 02_collect.py"]


@pytest.mark.parametrize("stage", STAGES)
def test_no_outputs_and_no_execution_counts(stage):
    for cell in _code(stage):
        assert cell["outputs"] == [], f"{stage}: a code cell carries outputs"
        assert cell["execution_count"] is None, f"{stage}: a code cell carries an execution count"


@pytest.mark.parametrize("stage", STAGES)
def test_title_parameters_and_setup(stage, tmp_path):
    cells = _cells(stage)
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith(f"# {stage[:2]} · ")
    code = _code(stage)
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and tagged[0]["id"] == code[0]["id"], f"{stage}: the first code cell is the parameters cell"
    built = tmp_path / f"{stage}.ipynb"
    built.write_text(_built(stage), encoding="utf-8")
    declared = stage_parameters(built, {"profile": "smoke", "progress": False})
    assert declared["profile"] == "smoke"
    names = {t.id for node in ast.parse(_source(code[0])).body for t in getattr(node, "targets", [])}
    assert "profile" in names and names <= set(PARAMETERS), f"{stage} declares {sorted(names)}"
    assert "paper.notebook_setup(profile" in _source(code[1]), f"{stage}: setup cell must call notebook_setup"


@pytest.mark.parametrize("stage", STAGES)
def test_code_cells_are_thin_calls_into_lib(stage):
    for cell in _code(stage):
        src = _source(cell)
        tree = ast.parse(src)
        for node in ast.walk(tree):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)), \
                f"{stage}: define functions in lib/, not in a notebook cell"
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] == "linguistic_collapse", f"{stage}: imports {node.module}"
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] == "linguistic_collapse" for a in node.names), f"{stage}: imports outside lib"
        lines = [ln for ln in src.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        assert len(lines) <= MAX_CELL_LINES, f"{stage}: a {len(lines)}-line cell belongs in lib/"


def test_notebook_from_source_is_deterministic(tmp_path):
    src = tmp_path / "07_demo.py"
    src.write_text('# %% [markdown]\n# # 07 · Demo\n\n# %% tags=["parameters"]\nprofile = "smoke"\n\n'
                   "# %%\nx = 1\n", encoding="utf-8")
    first = notebook_text(notebook_from_source(src))
    assert first == notebook_text(notebook_from_source(src))
    nb = json.loads(first)
    assert [c["id"] for c in nb["cells"]] == ["07_demo-00", "07_demo-01", "07_demo-02"]
    assert nb["cells"][1]["metadata"] == {"tags": ["parameters"]}


def _demo_pair(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "07_demo.py"
    src.write_text('# %% [markdown]\n# # 07 · Demo\n\n# %%\nx = 1\n', encoding="utf-8")
    sync_notebooks(tmp_path)
    return src, tmp_path / "07_demo.ipynb"


def _edit_ipynb(nb_path: Path, source: str) -> None:
    import jupytext

    nb = jupytext.read(nb_path)
    nb.cells[1].source = source
    jupytext.write(nb, nb_path)


def test_sync_writes_an_edited_ipynb_back_to_its_py(tmp_path):
    src, nb_path = _demo_pair(tmp_path)
    _edit_ipynb(nb_path, "x = 2")
    changes = sync_notebooks(tmp_path)
    assert [c.direction for c in changes] == ["ipynb->py"]
    assert "back to 07_demo.py" in changes[0].describe()
    assert "x = 2" in src.read_text(encoding="utf-8"), "the notebook edit was lost"
    assert not src.read_text(encoding="utf-8").startswith("# ---"), "no YAML header in a .py twin"
    assert sync_notebooks(tmp_path, check=True) == []
    assert '"x = 2"' in Path(nb_path).read_text(encoding="utf-8")


def test_sync_keeps_a_py_edit_even_when_the_ipynb_is_newer(tmp_path):
    """The .py edit wins by content, not by modification time, and is reported so."""
    import os

    src, nb_path = _demo_pair(tmp_path)
    src.write_text(src.read_text(encoding="utf-8").replace("x = 1", "x = 3"), encoding="utf-8")
    os.utime(nb_path, (src.stat().st_mtime + 10,) * 2)  # e.g. touched by a checkout
    changes = sync_notebooks(tmp_path)
    assert [(c.direction, c.describe()) for c in changes] == \
        [("py->ipynb", f"rebuilt {nb_path} from 07_demo.py")]
    assert "x = 3" in src.read_text(encoding="utf-8")
    assert '"x = 3"' in nb_path.read_text(encoding="utf-8")


def test_sync_refuses_when_both_twins_changed(tmp_path):
    from linguistic_collapse.core.errors import UserError

    src, nb_path = _demo_pair(tmp_path)
    other = tmp_path / "06_other.py"  # an ordinary .py edit in another pair, judged first
    other.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    sync_notebooks(tmp_path)
    other.write_text(other.read_text(encoding="utf-8").replace("x = 1", "y = 1"), encoding="utf-8")
    src.write_text(src.read_text(encoding="utf-8").replace("x = 1", "x = 3"), encoding="utf-8")
    _edit_ipynb(nb_path, "x = 2")
    files = (src, nb_path, other, other.with_suffix(".ipynb"))
    before = [p.read_bytes() for p in files]
    with pytest.raises(UserError, match="both changed since they were last in sync") as err:
        sync_notebooks(tmp_path)
    message = str(err.value)
    assert "07_demo.py" in message and "07_demo.ipynb" in message and "\n" not in message
    assert [p.read_bytes() for p in files] == before, "a refused sync wrote a file"


def test_sync_cli_refusal_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from linguistic_collapse.series import paper, sources

    src, nb_path = _demo_pair(tmp_path)
    src.write_text(src.read_text(encoding="utf-8").replace("x = 1", "x = 3"), encoding="utf-8")
    _edit_ipynb(nb_path, "x = 2")
    monkeypatch.setattr(sources, "notebooks_dir", lambda: tmp_path)
    parser = argparse.ArgumentParser()
    paper.register_cli(parser.add_subparsers())
    args = parser.parse_args(["paper", "--sync-notebooks"])
    assert args.func(args) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "07_demo.py" in out[0] and "07_demo.ipynb" in out[0]


def test_kernel_display_name_is_the_one_jupyterlab_writes():
    """Saving in JupyterLab writes the running kernel's spec; the twins carry the same one."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    for stage in STAGES:
        meta = json.loads(_built(stage))["metadata"]
        assert meta["kernelspec"]["display_name"] == spec.display_name, stage


def _lab_copy(tmp_path: Path, stage: str = "01_train") -> Path:
    """The repository's jupytext.toml and one twin pair, where a Lab server rooted there sees them."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO_ROOT / "jupytext.toml", tmp_path)
    shutil.copy(NOTEBOOKS_DIR / f"{stage}.py", tmp_path / "notebooks")
    sync_notebooks(tmp_path / "notebooks")  # the .ipynb as `make lab` builds it
    return tmp_path / "notebooks"


@pytest.mark.parametrize("opened", ["01_train.ipynb", "01_train.py"])
def test_saving_either_twin_in_jupyterlab_updates_the_other(tmp_path, opened):
    """JupyterLab saves through jupytext's contents manager, rooted where `make lab` roots it."""
    from jupytext import TextFileContentsManager

    folder = _lab_copy(tmp_path)
    manager = TextFileContentsManager(root_dir=str(tmp_path))
    model = manager.get(f"notebooks/{opened}", type="notebook")
    model["content"].cells[2].source += "\nedited = True"
    manager.save({"type": "notebook", "format": "json", "content": model["content"]},
                 f"notebooks/{opened}")
    assert "edited = True" in (folder / "01_train.py").read_text(encoding="utf-8")
    assert "edited = True" in (folder / "01_train.ipynb").read_text(encoding="utf-8")
    changes = sync_notebooks(folder)  # both twins hold the edit: no conflict, the .py stays as saved
    saved_py = (folder / "01_train.py").read_text(encoding="utf-8")
    assert [c.direction for c in changes] == ["outputs"]  # Lab's metadata cleared
    assert (folder / "01_train.py").read_text(encoding="utf-8") == saved_py
    assert not saved_py.startswith("# ---"), "Lab writes the .py without a YAML header, as committed"


@pytest.mark.parametrize("opened", [f"{stage}.ipynb" for stage in STAGES] + ["01_train.py"])
def test_saving_without_edits_in_jupyterlab_keeps_the_tracked_py_byte_for_byte(tmp_path, opened):
    """Run All and an autosave or save without an edit: outputs and Lab's metadata go to the
    git-ignored .ipynb; the tracked .py is rewritten with the same bytes."""
    import nbformat
    from jupytext import TextFileContentsManager

    stage = opened.split(".")[0]
    folder = _lab_copy(tmp_path, stage)
    py = (folder / f"{stage}.py").read_bytes()
    manager = TextFileContentsManager(root_dir=str(tmp_path))
    nb = manager.get(f"notebooks/{opened}", type="notebook")["content"]
    for cell in nb.cells:  # as after Run All in a kernel Lab started
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]
            cell.execution_count = 1
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7",
                                    "codemirror_mode": {"name": "ipython", "version": 3}}
    manager.save({"type": "notebook", "format": "json", "content": nb}, f"notebooks/{opened}")
    assert (folder / f"{stage}.py").read_bytes() == py
    assert '"ran\\n"' in (folder / f"{stage}.ipynb").read_text(encoding="utf-8")
