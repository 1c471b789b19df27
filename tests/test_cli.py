"""The shell interface (lib/linguistic_collapse/__main__.py): every command listed without heavy imports, user
errors as one line with exit status 2, paths relative to the caller's directory."""

from __future__ import annotations

import subprocess
import sys

import pytest
from checkout import REPO_ROOT
from linguistic_collapse.__main__ import COMMANDS


def _run(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, "-m", "linguistic_collapse", *args]
    return subprocess.run(env_cmd, capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(REPO_ROOT / "lib"), "HF_HUB_OFFLINE": "1",
                               "PATH": "/usr/bin:/bin"})


def test_help_lists_every_command_without_importing_torch():
    out = _run("--help").stdout
    assert all(name in out for name in COMMANDS)
    probe = ("import sys, linguistic_collapse.__main__ as m; m._summary_parser(); "
             "print('torch' in sys.modules, 'transformers' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=True).stdout.split()
    assert loaded == ["False", "False"]


@pytest.mark.slow  # spawns the CLI in a subprocess (imports torch and transformers afresh)
def test_every_command_module_registers_its_command():
    """The lazy table and the modules agree: each command's --help builds."""
    for name in COMMANDS:
        proc = _run(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr[-500:])
        assert "usage:" in proc.stdout


@pytest.mark.slow  # spawns the CLI in a subprocess (imports torch and transformers afresh)
def test_user_error_is_one_line_with_exit_status_2(tmp_path):
    proc = _run("measure", "missing.safetensors", "--out", "m.json", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(tmp_path / "missing.safetensors") in lines[0]  # relative to the caller's folder


@pytest.mark.slow  # spawns the CLI in a subprocess (imports torch and transformers afresh)
def test_collect_hub_name_fails_at_once_offline(tmp_path):
    proc = _run("collect", "gpt2", "--train-blocks", "t.npy", "--val-blocks", "v.npy",
                "--out", "s.safetensors", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "gpt2" in proc.stderr and "offline" in proc.stderr
