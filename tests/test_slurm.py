"""linguistic_collapse.pipeline.slurm without a cluster: the profile's cluster section, the sbatch script submitit writes,
refusals (no sbatch, sbatch errors) and the skipping of recorded active jobs, with stand-in
sbatch/squeue scripts. The real cluster is the SLURM tier (tests/slurm, make test-slurm)."""

from __future__ import annotations

import copy
import json
import stat

import pytest
import yaml
from checkout import PROFILES_DIR, REPO_ROOT
from linguistic_collapse.__main__ import main
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import Layout
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.pipeline import costs, slurm


def _profile(tmp_path, **cluster) -> Profile:
    data = yaml.safe_load((PROFILES_DIR / "smoke.yaml").read_text())
    data["out_dir"] = str(tmp_path / "out")
    data["cluster"].update(cluster)
    return Profile.from_dict(copy.deepcopy(data))


def _bin(tmp_path, monkeypatch, **scripts: str):
    """Stand-in commands (name -> shell body) first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(folder))  # nothing else: no real sbatch either
    return folder


def test_cluster_section_limits(tmp_path):
    p = _profile(tmp_path, gpus_per_node=0)
    assert p.cluster.gpus_per_node == 0 and p.cluster.timeout_requeues == 3
    with pytest.raises(UserError, match=r"timeout_min is 4; use at least 5: the time-limit signal"):
        _profile(tmp_path, timeout_min=4)
    assert _profile(tmp_path, timeout_requeues=0).cluster.timeout_requeues == 0


def test_sbatch_script_has_no_gres_without_gpus_and_cancels_on_failed_dependency(
        tmp_path, monkeypatch):
    _bin(tmp_path, monkeypatch, sbatch="exit 1", srun="exit 1")
    p = _profile(tmp_path, gpus_per_node=0, timeout_requeues=5, partition="cpu")
    executor = slurm.slurm_executor(p)
    assert executor.max_num_timeout == 5
    text = executor._make_submission_file_text("cmd", "uid")
    assert "--gpus" not in text and "--gres" not in text and "--partition=cpu" in text
    assert f"export LC_ROOT={REPO_ROOT}\n" in text  # the jobs' checkout is the submitter's
    executor.update_parameters(**slurm._parameters(p, dependency="41"))
    text = executor._make_submission_file_text("cmd", "uid")
    assert "--dependency=afterok:41" in text and "--kill-on-invalid-dep=yes" in text
    gpu = slurm._parameters(_profile(tmp_path, gpus_per_node=2))
    assert gpu["gpus_per_node"] == 2


def test_no_sbatch_refused_before_anything_runs(tmp_path, monkeypatch):
    _bin(tmp_path, monkeypatch)  # PATH without sbatch
    p = _profile(tmp_path)
    with pytest.raises(UserError, match="needs SLURM's sbatch on PATH"):
        slurm.submit_slurm(p)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(p.as_dict()))
    assert main(["grid", "--profile", str(path), "--slurm"]) == 2
    assert not p.out_path.exists()  # nothing ran locally


def test_cpu_jobs_beyond_cluster_mem_gb_refused_by_the_library_before_anything_runs(
        tmp_path, monkeypatch):
    _bin(tmp_path, monkeypatch)  # no sbatch: the memory check comes first
    data = yaml.safe_load((PROFILES_DIR / "smoke.yaml").read_text())
    data.update(out_dir=str(tmp_path / "out"), device="cpu")
    data["grid"].update(widths=[16, 32, 2048], depths=[1, 2, 8])  # L8-d2048: ~0.4e9 parameters
    data["cluster"]["mem_gb"] = 1
    p = Profile.from_dict(data)
    assert any(costs.peak_memory(p, run)["peak"] > costs.GIB for run in p.runs())
    with pytest.raises(UserError, match=r"more than the 1 GiB available on a SLURM job"):
        slurm.submit_slurm(p)
    assert not p.out_path.exists()  # nothing ran locally


def test_sbatch_error_is_one_line_naming_the_key_and_leaves_no_files(tmp_path, monkeypatch,
                                                                      capsys):
    _bin(tmp_path, monkeypatch, srun="exit 1", sbatch=(
        "echo 'sbatch: error: Invalid generic resource (gres) specification' >&2; exit 1"))
    p = _profile(tmp_path)
    with pytest.raises(UserError) as err:
        slurm.submit_slurm(p)
    message = str(err.value)
    assert "Invalid generic resource" in message and "cluster.gpus_per_node" in message
    assert "\n" not in message
    assert [f for f in Layout(p.out_path).slurm.rglob("*") if not f.name.startswith(".jobs")] == []
    assert "Traceback" not in capsys.readouterr().err


def test_recorded_active_jobs_are_skipped(tmp_path, monkeypatch):
    _bin(tmp_path, monkeypatch, srun="exit 1", sbatch="echo 'Submitted batch job 77'",
         squeue="echo '70_0|70|RUNNING'; echo '70_1|70|REQUEUED'; echo '70_2|70|COMPLETED'")
    p = _profile(tmp_path)
    runs = [str(r) for r in p.runs()]
    slurm_dir = Layout(p.out_path).slurm
    slurm_dir.mkdir(parents=True)
    (slurm_dir / slurm.JOBS_FILE).write_text(json.dumps(
        {"preparation": "69", "runs": {runs[0]: "70_0", runs[1]: "70_1", runs[2]: "70_2"}}))
    sub = slurm.submit_slurm(p)
    assert sub.skipped == {runs[0]: "70_0 RUNNING", runs[1]: "70_1 REQUEUED"}
    assert [str(r) for r in sub.runs] == runs[2:]  # a completed job's run with work left: again
    assert sub.preparation == "77" and sub.array == "77"
    recorded = json.loads((slurm_dir / slurm.JOBS_FILE).read_text())
    assert recorded["runs"][runs[0]] == "70_0" and recorded["runs"][runs[2]] == "77_0"
    lines = sub.summary(p)
    assert "skipped 2 runs whose jobs are still queued, running or requeued" in lines
    assert "preparation job 77" in lines and "submitted array 77 of" in lines
    assert "the runs' jobs are cancelled; see why in" in lines


def test_corpus_staleness_is_prepare_corpus_check(tmp_path):
    from linguistic_collapse.lm.data import corpus_staleness, prepare_corpus

    text = tmp_path / "text"
    text.mkdir()
    (text / "train.txt").write_text("a tiny story\n" * 40 + "another one\n" * 40)
    (text / "validation.txt").write_text("a tiny story\n" * 20)
    args = {"corpus": {"source": "path", "path": str(text)},
            "tokenizer": {"kind": "bpe", "vocab_size": 300}, "context_len": 4,
            "cache_dir": tmp_path / "corpus"}
    assert corpus_staleness(**args) == "not prepared"
    prepare_corpus(**args, progress=False)
    assert corpus_staleness(**args) is None
    assert corpus_staleness(**{**args, "context_len": 8}) == "prepared with other settings"
    (text / "train.txt").write_text("a changed story\n" * 80)
    assert corpus_staleness(**args) == "its text changed (train_text_sha256)"
