"""The notebook runner: one parameter route, the override guard, the output redirect, stamps,
progress lines, every module importable, the CLI."""

import importlib
import os
import pkgutil
import shutil
import subprocess
import sys

import linguistic_collapse
import matplotlib.pyplot as plt
import nbformat
import pytest
from checkout import REPO_ROOT
from linguistic_collapse.core import paths
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import Layout
from linguistic_collapse.core.profiles import load_profile
from linguistic_collapse.figures.save import save_figure
from linguistic_collapse.series.paper import (
    notebook_setup,
    stage_parameters,
    stage_stamp,
)
from linguistic_collapse.series.progress import ProgressWatcher, stage_counter


@pytest.mark.parametrize("module", sorted(m.name for m in
                                          pkgutil.walk_packages(linguistic_collapse.__path__, prefix="linguistic_collapse.")))
def test_every_module_imports(module):
    importlib.import_module(module)


def _notebook(tmp_path, params_source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(params_source)])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


# --- one parameter route ---------------------------------------------------------------------


def test_stage_parameters_pass_only_declared(tmp_path):
    path = _notebook(tmp_path, 'profile = "x"\nresults_table = None')
    assert stage_parameters(path, {"profile": "smoke", "progress": False}) == {"profile": "smoke"}


def test_stage_parameters_refuse_names_outside_the_route(tmp_path):
    path = _notebook(tmp_path, 'profile = "x"\nanalysis_seed = 3')
    with pytest.raises(UserError, match="analysis_seed"):
        stage_parameters(path, {"profile": "smoke"})


def test_setup_derives_everything_from_the_profile():
    cfg = notebook_setup("smoke", style=False)
    root = paths.output_root()
    assert cfg.profile == load_profile("smoke")
    assert cfg.results_table == root / "runs" / "smoke" / "results.csv"
    assert cfg.tables_dir == root / "runs" / "smoke"
    assert cfg.figures_dir == root / "figures" / "smoke"
    assert cfg.table_path("correlations.csv") == root / "runs" / "smoke" / "correlations.csv"
    assert cfg.profile.analysis == load_profile("smoke").analysis
    assert not hasattr(cfg, "analysis")  # one spelling: profile settings only via cfg.profile
    assert cfg.progress is True
    cpu = notebook_setup("cpu", style=False)
    assert cpu.results_table == root / "runs" / "cpu" / "results.csv"  # no smoke default survives


def test_setup_refuses_another_profiles_table():
    with pytest.raises(UserError, match=r"profile 'smoke''s table.*profile 'cpu'.*output_dir"):
        notebook_setup("cpu", results_table="runs/smoke/results.csv", style=False)
    with pytest.raises(UserError, match="not a profile's own table"):
        notebook_setup("cpu", results_table="/tmp/elsewhere/results.csv", style=False)
    # the profile's own table, spelled out, is fine
    cfg = notebook_setup("smoke", results_table=paths.tables_dir_for("smoke") / "results.csv", style=False)
    assert cfg.figures_dir == paths.figures_dir_for("smoke")


def test_setup_override_with_output_dir(tmp_path):
    cfg = notebook_setup("cpu", results_table="runs/smoke/results.csv", output_dir=tmp_path, style=False)
    assert cfg.results_table == REPO_ROOT / "runs" / "smoke" / "results.csv"
    assert cfg.tables_dir == tmp_path and cfg.figures_dir == tmp_path / "figures"


# --- nothing clobbered -------------------------------------------------------------------------


def test_tests_write_outputs_to_a_temporary_root():
    root = paths.output_root()
    assert os.environ.get(paths.OUTPUT_ROOT_ENV) and root != REPO_ROOT
    assert not root.is_relative_to(REPO_ROOT)
    assert (root / "runs" / "smoke" / "results.csv").is_file()  # seeded with the committed tables


def _tracked_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", "figures", "runs"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="no git")
def test_save_paths_under_the_redirect_leave_tracked_files_alone():
    from linguistic_collapse.tables import results

    before = _tracked_status()
    cfg = notebook_setup("smoke", style=False)
    for where in (cfg, "smoke"):  # a notebook's cfg and a bare profile name
        fig, ax = plt.subplots()
        ax.plot([1, 2], [2, 1])
        paths = save_figure(fig, "training_curves", where)
        assert all(p.parent == linguistic_collapse.core.paths.output_root() / "figures" / "smoke" for p in paths)
    table = results.load_table(cfg.results_table)
    results.save_table(table, cfg.table_path("results.csv"))
    assert _tracked_status() == before


def test_figures_are_byte_stable(tmp_path):
    def draw():
        fig, ax = plt.subplots()
        ax.scatter([1, 2, 3], [3, 1, 2], c=[1, 2, 3])
        ax.set_title("stable")
        return fig

    first = [p.read_bytes() for p in save_figure(draw(), "a", "t", figures_dir=tmp_path)]
    second = [p.read_bytes() for p in save_figure(draw(), "a", "t", figures_dir=tmp_path)]
    assert first == second
    assert b"Software" not in first[0] and b"matplotlib.org" not in first[1].split(b"<svg", 1)[1][:400]


# --- stamps and progress ---------------------------------------------------------------------


def test_stamp_changes_with_parameters_previous_output_root_and_inputs(tmp_path):
    path = _notebook(tmp_path, "a = 1")
    profile_file = REPO_ROOT / "profiles" / "smoke.yaml"
    base = stage_stamp(path, {"a": 1}, profile_file, "", "lib")
    assert base == stage_stamp(path, {"a": 1}, profile_file, "", "lib")
    assert base != stage_stamp(path, {"a": 2}, profile_file, "", "lib")
    assert base != stage_stamp(path, {"a": 1}, profile_file, "prev", "lib")
    assert base != stage_stamp(path, {"a": 1}, profile_file, "", "lib changed")
    assert base != stage_stamp(path, {"a": 1}, profile_file, "", "lib", str(tmp_path))
    assert base != stage_stamp(path, {"a": 1}, profile_file, "", "lib", "", "inputs")


def test_lib_digest_covers_subpackages(tmp_path, monkeypatch):
    from linguistic_collapse.series import stamps

    (tmp_path / "lib" / "nc").mkdir(parents=True)
    (tmp_path / "lib" / "a.py").write_text("x = 1\n")
    (tmp_path / "lib" / "nc" / "b.py").write_text("y = 1\n")
    monkeypatch.setattr(stamps, "CODE_DIR", tmp_path / "lib")
    before = stamps.lib_digest()
    (tmp_path / "lib" / "nc" / "b.py").write_text("y = 2\n")
    assert stamps.lib_digest() != before


def test_stage_inputs_are_the_data_a_stage_reads(tmp_path):
    """Retraining a model (new results.json) or a new results table changes the stamp of the
    stage that reads it, even when notebooks, profile and code are unchanged."""
    from types import SimpleNamespace

    from linguistic_collapse.core.paths import atomic_write_json
    from linguistic_collapse.series.stamps import inputs_digest, stage_inputs

    text = tmp_path / "text"
    text.mkdir()
    (text / "train.txt").write_text("once upon a time\n")
    profile = SimpleNamespace(out_path=tmp_path / "out",
                              corpus=SimpleNamespace(source="path", path=str(text)))
    table = tmp_path / "results.csv"
    atomic_write_json(tmp_path / "out" / "models" / "L1-d8-e1-wd0.1-s0" / "results.json", {"a": 1})
    table.write_text("name,val_loss\nx,1.0\n")
    before = {s: inputs_digest(stage_inputs(s, profile, table))
              for s in ("01_train", "02_collect", "04_correlate")}
    (text / "train.txt").write_text("a different story\n")
    atomic_write_json(tmp_path / "out" / "models" / "L1-d8-e1-wd0.1-s0" / "results.json", {"a": 2})
    table.write_text("name,val_loss\nx,2.0\n")
    after = {s: inputs_digest(stage_inputs(s, profile, table)) for s in before}
    assert all(before[s] != after[s] for s in before)
    assert inputs_digest(stage_inputs("02_collect", profile, table)) == after["02_collect"]


def test_progress_counts_finished_runs_from_their_files(tmp_path):
    from linguistic_collapse.core.profiles import Profile

    profile = Profile.from_dict({**load_profile("smoke").as_dict(), "out_dir": str(tmp_path)})
    count = stage_counter("01_train", profile)
    done, total, unit, current = count()
    assert (done, total, unit, current) == (0, len(profile.runs()), "runs trained", "-")
    first, second = profile.runs()[:2]
    (tmp_path / "models" / str(first)).mkdir(parents=True)
    (tmp_path / "models" / str(first) / "results.json").write_text('{"status": "complete"}')
    (tmp_path / "models" / str(second)).mkdir(parents=True)
    (tmp_path / "models" / str(second) / "results.json").write_text('{"status": "running"}')
    done, _, _, current = count()
    assert done == 1 and current == str(second)
    assert stage_counter("04_correlate", profile) is None
    ck = profile.checkpoints()[0]
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / f"{ck}.json").write_text("{}")
    assert stage_counter("03_measure", profile)()[0] == 1
    sens = profile.sensitivity  # then the sensitivity draws: counted too, not just "finishing"
    draws = [(c, f, d) for c in sens.checkpoints() for f in sens.fractions if f < 1
             for d in sens.draws_of(f)]
    assert draws
    done, total, _, _ = stage_counter("03_measure", profile)()
    assert (done, total) == (1, len(profile.checkpoints()) + len(draws))
    c, f, d = draws[0]
    path = Layout(tmp_path).metrics(c, f, d)
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    assert stage_counter("03_measure", profile)()[0] == 2


def test_progress_watcher_emits_lines_on_change_and_heartbeat():
    state = {"done": 0}
    lines: list[str] = []
    counter = lambda: (state["done"], 4, "runs trained", "L1-d8")  # noqa: E731
    with ProgressWatcher("01_train", counter, heartbeat_s=0.3, poll_s=0.05, emit=lines.append) as w:
        import time

        time.sleep(0.4)
        state["done"] = 1
        time.sleep(0.2)
        assert "1/4 runs trained" in w.line() and "ETA" in w.line()
    assert any("0/4 runs trained · now L1-d8" in s for s in lines)  # heartbeat
    assert any("1/4 runs trained" in s for s in lines)  # change
    no_counter = ProgressWatcher("04_correlate", None)
    assert "running" in no_counter.line() and "elapsed" in no_counter.line()


# --- CLI -------------------------------------------------------------------------------------


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "linguistic_collapse", "--help"], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout
    for command in ("train", "grid", "collect", "merge-stats", "measure", "analyze", "paper"):
        assert command in out


@pytest.mark.slow  # spawns the CLI in a subprocess (imports torch and transformers afresh)
def test_cli_paper_unknown_profile_fails_clearly():
    proc = subprocess.run([sys.executable, "-m", "linguistic_collapse", "paper", "--profile", "nope"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode in (1, 2)
    assert "unknown profile 'nope'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_executed_copy_drops_what_changes_on_every_run(tmp_path):
    """Wall-clock times, widget state and random widget ids are removed or made stable, so an
    executed notebook re-run on unchanged inputs is byte-identical."""
    import nbformat
    from linguistic_collapse.series.paper import WIDGET_VIEW, _normalise_executed
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    def executed(model_id: str):
        cell = new_code_cell("explorer", outputs=[new_output(
            "display_data", data={WIDGET_VIEW: {"model_id": model_id, "version_major": 2},
                                  "text/plain": "VBox()"})])
        cell.id = "explorer"  # from the source notebook: stable
        cell.metadata["execution"] = {"iopub.status.idle": "2026-11-29T21:00:00"}
        nb = new_notebook(cells=[cell], metadata={"widgets": {"state": {model_id: {}}},
                                                  "papermill": {"duration": 1.5}})
        path = tmp_path / f"{model_id}.ipynb"
        nbformat.write(nb, path)
        _normalise_executed(path)
        return path

    a, b = executed("0a96e0c5"), executed("c8e9a5dc")
    assert a.read_bytes() == b.read_bytes()
    nb = nbformat.read(a, as_version=4)
    assert "widgets" not in nb.metadata and "duration" not in nb.metadata["papermill"]
    assert nb.cells[0].outputs[0]["data"][WIDGET_VIEW]["model_id"] == "cell0-output0"
