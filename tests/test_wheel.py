"""The wheel works as a researcher installs it: built from this checkout, installed without
dependencies into a fresh environment that has the core's dependencies but not the editable
checkout, used from a project folder with its own ``lib/`` package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import linguistic_collapse
import pytest
from checkout import REPO_ROOT
from test_readme_nc import _examples

pytestmark = pytest.mark.slow  # builds, installs and runs a Trainer: about a minute

PACKAGE = Path(linguistic_collapse.__file__).resolve().parent
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
TIMEOUT = 600


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    run = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


def _clean_env() -> dict[str, str]:
    """This process's environment without the checkout: no PYTHONPATH, no root, no redirection."""
    drop = {"PYTHONPATH", "PYTHONHOME", "LC_ROOT", "LC_OUTPUT_ROOT", "VIRTUAL_ENV"}
    return {**{k: v for k, v in os.environ.items() if k not in drop},
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """Build the wheel from a copy of the checkout's project files, and install it with
    ``--no-deps`` into a fresh venv whose only other packages are this venv's site-packages,
    added by path: its ``.pth`` files (the editable install of a checkout) are not read."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, src)
    shutil.copytree(REPO_ROOT / "lib", src / "lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    env = _clean_env()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "-w", str(tmp / "dist"), str(src)], tmp, env)
    (wheel,) = (tmp / "dist").glob("linguistic_collapse-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp, env).stdout.strip())
    shared = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "shared-site-packages.pth").write_text("\n".join(sorted(shared)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(wheel)], tmp, env)

    project = tmp / "project"  # a researcher's project with a lib/ package of its own
    (project / "lib").mkdir(parents=True)
    (project / "lib" / "__init__.py").write_text('OWNER = "the project"\n')
    return {"wheel": wheel, "venv": venv, "python": python, "site": site, "project": project}


def test_the_wheel_holds_the_package_and_its_data(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    sources = {f"linguistic_collapse/{p.relative_to(PACKAGE).as_posix()}"
               for p in PACKAGE.rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "linguistic_collapse/tables/first_names.txt" in names
    assert not any(n.startswith("lib/") for n in names), "the package is linguistic_collapse"
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    lines = zipfile.ZipFile(installed["wheel"]).read(meta).decode().splitlines()
    core = sorted(line.split(": ", 1)[1] for line in lines
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert core == sorted(PROJECT["dependencies"])  # the core needs only these
    assert "Requires-Python: >=3.11" in lines
    entry = zipfile.ZipFile(installed["wheel"]).read(meta.replace("METADATA", "entry_points.txt"))
    assert "linguistic-collapse = linguistic_collapse.__main__:main" in entry.decode()


def test_the_core_imports_from_the_wheel_beside_a_projects_own_lib(installed):
    code = ("import lib, linguistic_collapse\n"
            "from linguistic_collapse.nc import ClassStats\n"
            "from linguistic_collapse.lm.hf_callback import NeuralCollapseCallback\n"
            "from linguistic_collapse.tables.tokens import load_first_names\n"
            "print(lib.OWNER, linguistic_collapse.__file__, len(load_first_names()) > 100, sep='\\n')")
    out = _run([str(installed["python"]), "-c", code], installed["project"], _clean_env())
    owner, where, names = out.stdout.strip().splitlines()[-3:]
    assert owner == "the project"  # the project's lib is its own, not ours
    assert Path(where).resolve().is_relative_to(installed["site"].resolve()), where
    assert names == "True"  # package data: the first-names list ships in the wheel


def test_the_cli_runs_from_the_wheel(installed):
    env, project = _clean_env(), installed["project"]
    module = _run([str(installed["python"]), "-m", "linguistic_collapse", "--help"], project, env)
    script = _run([str(installed["venv"] / "bin" / "linguistic-collapse"), "--help"], project, env)
    for run in (module, script):
        assert "measure" in run.stdout and "--root" in run.stdout
    refused = subprocess.run([str(installed["python"]), "-m", "linguistic_collapse", "paper",
                              "--profile", "smoke"], cwd=project, env=env, capture_output=True,
                             text=True, timeout=TIMEOUT)
    assert refused.returncode == 2
    assert "no linguistic-collapse checkout found" in refused.stdout + refused.stderr


def test_the_readme_examples_run_from_the_wheel(installed):
    """The README's "Neural collapse of your own model" examples, as written, in the project."""
    project = installed["project"]
    script = project / "readme_examples.py"
    script.write_text("\n\n".join(_examples()) + "\n", encoding="utf-8")
    _run([str(installed["python"]), str(script)], project, _clean_env())
    assert (project / "stats.safetensors").is_file()
    rows = (project / "nc.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("step,") and len(rows) == 3  # measured at steps 2 and 4
