"""Probe set, runs of a profile: impossible sizes refused before any work, one ``paper`` runner
per profile at a time, and Ctrl-C of ``paper`` as one line. Each case failed before the
behaviour it names was built (README, "What is checked")."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from checkout import PROFILES_DIR
from linguistic_collapse import __main__ as cli
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.profiles import load_profile
from linguistic_collapse.lm.gpt_neo import paper_param_count
from linguistic_collapse.pipeline import costs
from linguistic_collapse.series import paper

SMOKE = (PROFILES_DIR / "smoke.yaml").read_text(encoding="utf-8")


def _profile(folder, name="probe-runner", widths="[16, 32]"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(SMOKE.replace("name: smoke", f"name: {name}")
                    .replace("widths: [16, 32]", f"widths: {widths}")
                    .replace("out_dir: data/smoke", f"out_dir: {folder / 'data'}"),
                    encoding="utf-8")
    return path


# --- impossible sizes ------------------------------------------------------------------------


def test_a_job_that_cannot_fit_is_refused_before_the_corpus_is_prepared(tmp_path, monkeypatch,
                                                                         capsys):
    path = _profile(tmp_path, widths="[16, 32, 65536]")
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    monkeypatch.setattr(costs, "available_memory", lambda device: (64 * costs.GIB, "this machine"))
    assert cli.main(["grid", "--profile", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(
        "error: profile 'probe-runner': job L1-d65536-e1-wd0.0005-s0 needs about ")
    assert "more than the 64 GiB available on this machine" in err and "grid.widths" in err
    assert not (tmp_path / "data" / "corpus").exists()


def test_dry_run_prints_each_jobs_peak_memory(tmp_path, capsys):
    assert cli.main(["grid", "--profile", str(_profile(tmp_path, widths="[16, 32, 65536]")),
                     "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "peak_gib" in lines[0].split()
    big = next(ln for ln in lines if ln.lstrip().startswith("L1-d65536-e1"))
    assert float(big.split()[-1]) > 700  # 51.6e9 parameters x 16 bytes alone: 769 GiB


def test_peak_memory_holds_its_parts():
    """The estimate of a known job against its parts, computed plainly: 16 bytes per parameter
    for training, the V x D float64 sums of every collected stream for collection; bf16 with
    flash attention on CUDA needs less than fp32 eager attention on the CPU."""
    profile = load_profile("smoke")
    run = ModelName(2, 32, 1, 0.1, 0)
    V, T = profile.tokenizer.expected_vocab_size(), profile.context_len
    n = paper_param_count(2, 32, V, T)
    need = costs.peak_memory(profile, run, cuda=False)  # as check_memory of a given amount
    assert need["train"] >= 16 * n + profile.batch_size(run) * T * V * 12
    assert need["collect"] >= 4 * n + (2 + 1 + 1) * 8 * V * 32 + 8 * 32 * 32  # layers: all
    assert need["peak"] == max(need["train"], need["collect"])
    assert costs.peak_memory(profile, run, cuda=True)["train"] < need["train"]  # bf16 on CUDA
    costs.check_memory(profile, available=need["peak"])  # fits exactly
    with pytest.raises(UserError, match=r"job L\d-d\d+-.* needs about .* GiB"):
        costs.check_memory(profile, available=need["peak"] - 1, where="a test")


# --- one runner per profile ------------------------------------------------------------------


HOLD = textwrap.dedent("""
    import sys
    from linguistic_collapse.core.profiles import load_profile
    from linguistic_collapse.series import paper
    with paper.runner_lock(load_profile(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.readline()
""")


def _fake_stages(monkeypatch, ran):
    def execute(notebook, output, params):
        ran.append(notebook.stem)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")

    monkeypatch.setattr(paper, "execute_stage", execute)


def test_a_second_runner_of_a_profile_is_refused_and_another_profile_runs(tmp_path, monkeypatch,
                                                                          capsys):
    mine, other = _profile(tmp_path / "a", "probe-a"), _profile(tmp_path / "b", "probe-b")
    ran = []
    _fake_stages(monkeypatch, ran)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(mine)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the first runner, another process
        assert cli.main(["paper", "--profile", str(mine), "--stage", "04_correlate"]) == 2
        out = capsys.readouterr().out.strip().splitlines()
        assert out[-1].startswith("[paper] error: another `paper` of profile 'probe-a' is running")
        assert ran == []
        assert cli.main(["paper", "--profile", str(other), "--stage", "04_correlate"]) == 0
        assert ran == ["04_correlate"]  # side by side
    finally:
        holder.communicate("\n", timeout=60)
    assert cli.main(["paper", "--profile", str(mine), "--stage", "04_correlate"]) == 0
    assert ran == ["04_correlate", "04_correlate"]


def test_ctrl_c_of_paper_is_one_line_naming_the_stage(tmp_path, monkeypatch, capsys):
    def interrupted(notebook, output, params):
        raise KeyboardInterrupt

    monkeypatch.setattr(paper, "execute_stage", interrupted)
    try:
        code = cli.main(["paper", "--profile", str(_profile(tmp_path)), "--stage", "04_correlate"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped as a KeyboardInterrupt traceback")
    assert code == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("[paper] interrupted in stage 04_correlate (Ctrl-C); nothing finished is "
                    "lost: run the same command again to resume from that stage")
    ran = []
    _fake_stages(monkeypatch, ran)  # the lock was released: the rerun runs the stage
    assert cli.main(["paper", "--profile", str(_profile(tmp_path)), "--stage", "04_correlate"]) == 0
    assert ran == ["04_correlate"]
