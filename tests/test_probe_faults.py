"""Probe set, faults: kills, full disks, read-only folders, dead kernels, outputs over inputs and
byte stability. Each case failed before the behaviour it names was built (docs/checks.md, "The probe
set")."""

from __future__ import annotations

import errno
import json
import os
from types import SimpleNamespace

import nbformat
import pytest
import torch
from checkout import NOTEBOOKS_DIR, PROFILES_DIR
from linguistic_collapse import __main__ as cli
from linguistic_collapse.core import paths
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.series import paper
from stats_helpers import random_stats

SMOKE = (PROFILES_DIR / "smoke.yaml").read_text(encoding="utf-8")


META = {"model": "m", "tokenizer": "t", "vocab_size": "8", "width": "4", "weights_sha256": "w" * 64,
        "train_blocks_sha256": "t" * 64, "val_blocks_sha256": "v" * 64, "tokenizer_sha256": "k" * 64,
        **{f"pass{p}_{k}": v for p in (1, 2) for k, v in
           (("blocks", "4"), ("tokens", "60"), ("shard", ""), ("split_sha", f"s{p}"))}}


def _authors_csv(path):
    path.write_text("model,n_params,val_acc,val_loss,cdnv\n01x0064_01d@0,10000,0.5,2.0,1.0\n")
    return path


# --- stages and stamps ------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for kill -9 / Ctrl-C in the middle of a stage."""


def _own_profile(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(SMOKE.replace("name: smoke", "name: probe-faults")
                    .replace("out_dir: data/smoke", f"out_dir: {tmp_path / 'data'}"))
    return path


def test_killed_forced_rerun_is_never_up_to_date(tmp_path, monkeypatch):
    profile, calls = _own_profile(tmp_path), []

    def execute(notebook, output, params):
        calls.append(notebook.stem)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")

    monkeypatch.setattr(paper, "execute_stage", execute)
    assert paper.run_paper(str(profile), stages=("04_correlate",)) == ["04_correlate"]
    assert paper.run_paper(str(profile), stages=("04_correlate",)) == []  # up to date

    def killed(notebook, output, params):
        raise Killed

    monkeypatch.setattr(paper, "execute_stage", killed)
    with pytest.raises(Killed):
        paper.run_paper(str(profile), stages=("04_correlate",), force=True)
    monkeypatch.setattr(paper, "execute_stage", execute)
    assert paper.run_paper(str(profile), stages=("04_correlate",)) == ["04_correlate"]


def _fake_papermill(monkeypatch, then: BaseException, running_cell: int = 2):
    """papermill.execute_notebook that writes a half-run notebook and then fails with ``then``."""
    import papermill

    def execute_notebook(source, output, **kwargs):
        nb = nbformat.read(source, as_version=4)
        for i, cell in enumerate(nb.cells):  # as papermill leaves them: every status "completed"
            started = "2026-01-01T00:00:00" if i <= running_cell else None
            cell.metadata["papermill"] = {"status": "completed", "start_time": started}
        nb.metadata["papermill"] = {"output_path": output}
        nbformat.write(nb, output)
        raise then

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def test_killed_stage_leaves_the_executed_copy_as_it_was(tmp_path, monkeypatch):
    output = tmp_path / "04_correlate.ipynb"
    output.write_text("the last complete run")
    _fake_papermill(monkeypatch, Killed())
    with pytest.raises(Killed):
        paper.execute_stage(NOTEBOOKS_DIR / "04_correlate.ipynb", output, {"profile": "smoke"})
    assert output.read_text() == "the last complete run"
    assert [p.name for p in tmp_path.iterdir()] == ["04_correlate.ipynb"]  # no partial left


@pytest.mark.slow
def test_dead_kernel_of_a_real_notebook_names_its_cell(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("import os\nos.kill(os.getpid(), 9)"),
                                         nbformat.v4.new_code_cell("y = 2")])
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    source = tmp_path / "99_dies.ipynb"
    nbformat.write(nb, source)
    with pytest.raises(RuntimeError, match=r"notebook 99_dies\.ipynb: the kernel died in cell 1"):
        paper.execute_stage(source, tmp_path / "out" / "99_dies.ipynb", {})
    assert not paper.partial_path(tmp_path / "out" / "99_dies.ipynb").exists()


def test_dead_kernel_names_the_notebook_and_the_cell(tmp_path, monkeypatch):
    from nbclient.exceptions import DeadKernelError

    _fake_papermill(monkeypatch, DeadKernelError("Kernel died"), running_cell=3)
    with pytest.raises(RuntimeError, match=r"notebook 04_correlate\.ipynb: the kernel died in cell 3"):
        paper.execute_stage(NOTEBOOKS_DIR / "04_correlate.ipynb", tmp_path / "04.ipynb",
                            {"profile": "smoke"})


# --- operating-system errors: one line naming the path, exit 2 -------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EISDIR, errno.EIO])
def test_os_errors_are_one_line_naming_the_path(tmp_path, monkeypatch, capsys, code):
    source = _authors_csv(tmp_path / "lc.csv")

    def failing_mkstemp(*args, dir=None, **kwargs):
        raise OSError(code, os.strerror(code), str(dir))

    monkeypatch.setattr(paths.tempfile, "mkstemp", failing_mkstemp)
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    assert cli.main(["import-authors", str(source), "--out", str(tmp_path / "out" / "t.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {tmp_path / 'out' / 't.csv'}: ")
    assert os.strerror(code) in err and errno.errorcode[code] in err


def test_full_disk_while_writing_statistics_is_one_line(tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    g = torch.Generator().manual_seed(0)
    y, x = torch.randint(0, 5, (10,), generator=g), torch.randn(10, 3, generator=g, dtype=torch.float64)
    parts = []
    for i in range(2):
        counts = torch.bincount(y, minlength=5)
        sums = torch.zeros(5, 3, dtype=torch.float64).index_add_(0, y, x)
        parts.append(sf.write_stats(tmp_path / f"p{i}.safetensors", {
            "counts": counts, "sums": sums, "sq_dev": torch.zeros(5, dtype=torch.float64),
            "sw": torch.zeros(3, 3, dtype=torch.float64), "lm_head": torch.ones(5, 3)}, {"model": "m", "vocab_size": "5", "width": "3",
                                            "pass1_blocks": "1", "pass1_tokens": "10",
                                            "pass1_shard": f"{i}/2", "pass1_split_sha": "s"}))

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(sf, "save_file", full)
    out = tmp_path / "m.safetensors"
    assert cli.main(["merge-stats", str(out), *map(str, parts)]) == 2
    err = capsys.readouterr().err.strip()
    assert "No space left on device (ENOSPC)" in err and str(out) in err and "\n" not in err


def test_os_error_in_make_paper_is_one_line(monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/smoke/04_correlate.ipynb")

    monkeypatch.setattr(paper, "run_paper", full)
    args = SimpleNamespace(sync_notebooks=False, profile="smoke", stage=None, force=False)
    assert paper._cli_paper(args) == 2
    out = capsys.readouterr().out.strip()
    assert out == ("[paper] error: runs/smoke/04_correlate.ipynb: No space left on device "
                   "(ENOSPC); free space there or write to another disk")


# --- nothing computed or given is lost -------------------------------------------------------


def test_import_authors_out_equal_to_an_input_is_refused(tmp_path, capsys):
    source = _authors_csv(tmp_path / "lc.csv")
    before = source.read_bytes()
    assert cli.main(["import-authors", str(source), "--out", str(source)]) == 2
    assert "is also an input" in capsys.readouterr().err and source.read_bytes() == before


def test_out_onto_a_folder_is_refused(tmp_path, capsys):
    source = _authors_csv(tmp_path / "lc.csv")
    assert cli.main(["import-authors", str(source), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_measure_out_onto_model_weights_is_refused(tmp_path, capsys):
    stats = sf.write_stats(tmp_path / "stats.safetensors", random_stats(), META)
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    weights = checkpoint / "model.safetensors"
    sf.save_raw(weights, {"w": torch.ones(2)}, {"format": "pt"})
    config = checkpoint / "config.json"
    config.write_text('{"model_type": "gpt_neo"}')
    before = weights.read_bytes(), config.read_bytes()
    for target in (weights, config):
        assert cli.main(["measure", str(stats), "--out", str(target)]) == 2
    assert (weights.read_bytes(), config.read_bytes()) == before
    err = capsys.readouterr().err
    assert "does not end in .json" in err and "not a file this command writes" in err


# --- byte stability ---------------------------------------------------------------------------


def test_equal_statistics_give_equal_bytes(tmp_path):
    a = sf.write_stats(tmp_path / "a.safetensors", random_stats(), META)
    b = sf.write_stats(tmp_path / "b.safetensors", random_stats(), dict(reversed(META.items())))
    assert a.read_bytes() == b.read_bytes()
    assert sf.read_stats(a)[1]["model"] == "m"


def test_metrics_json_is_strict_with_reasons(tmp_path):
    tensors = random_stats()
    tensors["sums"][1] = tensors["sums"][0] / tensors["counts"][0] * tensors["counts"][1]
    stats = sf.write_stats(tmp_path / "stats.safetensors", tensors, META)
    out = tmp_path / "metrics.json"
    assert cli.main(["measure", str(stats), "--out", str(out)]) == 0

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    metrics = json.loads(out.read_text(), parse_constant=refuse)
    assert metrics["nc1_cdnv"] is None and "identical means" in metrics["undefined"]["nc1_cdnv"]


def test_strict_json_marks_every_non_finite_value():
    text = paths.strict_json({"a": float("inf"), "b": [float("nan")], "c": 1.5})
    assert json.loads(text) == {"a": None, "b": [None], "c": 1.5, "undefined": {
        "a": "not a finite number (inf)", "b": "not a finite number (nan)"}}



def test_collect_out_onto_another_models_statistics_is_refused(tmp_path, capsys):
    other = sf.write_stats(tmp_path / "stats.safetensors", random_stats(), {**META, "model": "gpt2"})
    before = other.read_bytes()
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    assert cli.main(["collect", str(checkpoint), "--out", str(other)]) == 2
    assert "not a file this command writes" in capsys.readouterr().err
    assert other.read_bytes() == before
