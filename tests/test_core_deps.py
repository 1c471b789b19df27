"""The core installs light: ``pip install linguistic-collapse`` declares only what the core
(``linguistic_collapse.nc``, the Trainer callback) imports, importing it pulls in nothing heavy,
and ``requirements.lock`` still pins every package the core and each extra name."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import linguistic_collapse
from checkout import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LIB = Path(linguistic_collapse.__file__).resolve().parent
# never pulled in by the core: the notebook series, tables, figures, hub and cluster tools
HEAVY = ("pandas", "matplotlib", "seaborn", "scipy", "statsmodels", "transformers", "datasets",
         "tokenizers", "papermill", "nbformat", "nbclient", "jupytext", "IPython", "ipywidgets",
         "submitit", "yaml", "pydantic", "sklearn")
# the core's entry modules, and the extra each needs beyond the core dependencies
ENTRY = {"linguistic_collapse.nc": None, "linguistic_collapse.nc.classstats": None,
         "linguistic_collapse.nc.measure": None, "linguistic_collapse.lm.hf_callback": "hf"}


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _module_file(module: str) -> Path | None:
    base = LIB.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _top_level_imports(path: Path) -> list[str]:
    """Dotted names imported at module level (not in functions, not under ``TYPE_CHECKING``)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.extend([child.module] + [f"{child.module}.{a.name}" for a in child.names])
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _third_party_imports(entry: str) -> set[str]:
    """Top-level third-party packages that importing ``entry`` imports through the package's own
    modules (module-level imports only: a function-local import is an optional feature)."""
    todo, seen, outside = [entry], set(), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _top_level_imports(_module_file(module)):
            top = name.split(".")[0]
            if top == "linguistic_collapse":
                target = name
                while target and _module_file(target) is None:
                    target = target.rpartition(".")[0]
                todo.extend(t for t in (target, *_parents(target)) if t)
            elif top not in sys.stdlib_module_names and top != "__future__":
                outside.add(top)
    return outside


def _parents(module: str) -> list[str]:
    """The packages a module's import runs first (``a.b.c`` -> ``a.b``, ``a``)."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def test_every_third_party_import_of_the_core_is_declared():
    dists = packages_distributions()
    core = _names(PROJECT["dependencies"])
    extras = {name: _names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}
    missing = []
    for entry, extra in ENTRY.items():
        allowed = core | (extras[extra] if extra else set())
        for top in sorted(_third_party_imports(entry)):
            provided = {canonicalize_name(d) for d in dists.get(top, [top])}
            if not provided & allowed:
                missing.append(f"{entry} imports {top} ({', '.join(sorted(provided))}), not in "
                               f"the {'[' + extra + '] extra' if extra else 'core dependencies'}")
    assert not missing, "\n".join(missing)


def test_the_core_dependencies_are_a_handful_with_lower_bounds():
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    assert {canonicalize_name(r.name) for r in reqs} >= {"torch", "numpy", "safetensors"}
    assert len(reqs) <= 5, [str(r) for r in reqs]
    for req in reqs:
        assert req.specifier and all(s.operator == ">=" for s in req.specifier), \
            f"{req}: give a lower bound, never pin (the user's own torch must do)"
    assert PROJECT["requires-python"] == ">=3.11"
    assert {"hf", "paper", "slurm", "dev"} <= set(PROJECT["optional-dependencies"])


def test_importing_the_core_pulls_in_nothing_heavy():
    """In a fresh interpreter: the core accumulates, measures, saves and loads, and the shell's
    ``measure`` measures the file (README, "Install the core"); the modules they imported
    include none of ``HEAVY``."""
    code = f"""
import sys
before = set(sys.modules)
import linguistic_collapse.nc
from linguistic_collapse import nc
import torch
exports = [getattr(nc, name) for name in nc.__all__]
stats = nc.ClassStats(num_classes=3, dim=2)
stats.add(torch.randn(30, 2, dtype=torch.float64), torch.arange(30) % 3)
W = torch.randn(3, 2)
stats.add_validation(torch.randn(9, 2, dtype=torch.float64), torch.arange(9) % 3, W)
stats.measures(W)
stats.save("stats.safetensors", model="m")
nc.ClassStats.load("stats.safetensors")
from linguistic_collapse.__main__ import main
assert main(["measure", "stats.safetensors", "--out", "m.json"]) == 0  # the shell's measure too
loaded = {{name.split(".")[0] for name in set(sys.modules) - before}}
print(sorted(loaded & set({HEAVY!r})))
"""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        run = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                             text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]", f"the core imported {run.stdout.strip()}"


def _locked() -> dict[str, str]:
    """{package: version} pinned in requirements.lock."""
    pins = {}
    for line in (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split(";")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_package_the_core_and_the_extras_name():
    """``make setup`` installs the lock with no resolution: each requirement of the core and of
    every extra must be pinned there, at a version its bound allows."""
    pins, wrong = _locked(), []
    requirements = [*PROJECT["dependencies"],
                    *(r for reqs in PROJECT["optional-dependencies"].values() for r in reqs)]
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name == "linguistic-collapse":  # an extra naming another extra
            continue
        if name not in pins:
            wrong.append(f"{req}: not in requirements.lock (make lock)")
        elif not req.specifier.contains(pins[name].split("+")[0], prereleases=True):
            wrong.append(f"{req}: the lock pins {pins[name]}")
    assert not wrong, "\n".join(wrong)


def test_the_readme_install_section_names_every_extra():
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Install the core\n", 1)[1].split("\n## ", 1)[0]
    for extra in PROJECT["optional-dependencies"]:
        assert f"`{extra}`" in section, f"README's install section does not explain [{extra}]"
    assert "pip install ." in section and "LC_ROOT" in section and "--root" in section
