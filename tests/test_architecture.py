"""The import graph of lib/: layered by ``linguistic_collapse.LAYERS``, no cycles, display libraries
only in figures and series, every module in docs/architecture.md, long modules reported."""

import ast
import re
import warnings
from pathlib import Path

import linguistic_collapse

LIB = Path(linguistic_collapse.__file__).resolve().parent
GUIDE_LINES = 500  # a guideline, reported: concern, not a line count, decides where code goes


def _module_name(path: Path) -> str:
    parts = ("linguistic_collapse", *path.relative_to(LIB).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def _target(name: str) -> str | None:
    """The lib module that a dotted import name refers to (a module, or its package)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, source: str | None = None) -> list[tuple[str, int, bool]]:
    """(imported lib module, line, inside a function) for every import statement of ``module``
    (its file, or ``source`` when given)."""
    path, found = MODULES[module], []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*up, base] if base else up)
                names = [f"{base}.{a.name}" for a in child.names]
            for name in names:
                target = _target(name) if name.split(".")[0] == "linguistic_collapse" else None
                if target and target != module and target != "linguistic_collapse":
                    found.append((target, child.lineno, local))
            visit(child, inner)

    visit(ast.parse(path.read_text() if source is None else source), False)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> int:
    """Index in ``linguistic_collapse.LAYERS`` of a module's subpackage; lib's own top-level files are above all."""
    parts = module.split(".")
    return linguistic_collapse.LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in linguistic_collapse.LAYERS \
        else len(linguistic_collapse.LAYERS)


def test_every_subpackage_is_declared_in_layers():
    packages = {p.parent.name for p in LIB.glob("*/__init__.py")}
    assert packages == set(linguistic_collapse.LAYERS)


def test_imports_follow_the_layer_order():
    wrong = [f"{m}:{line} imports {t}" for m, edges in GRAPH.items() for t, line, _ in edges
             if _layer(t) > _layer(m)]
    assert not wrong, "imports against linguistic_collapse.LAYERS:\n" + "\n".join(wrong)


def test_no_function_local_imports_of_lib_modules():
    local = [f"{m}:{line} imports {t}" for m, edges in GRAPH.items() for t, line, inner in edges
             if inner]
    assert not local, "function-local imports of lib (import at the top):\n" + "\n".join(local)


def _find_cycle(graph: dict[str, list[tuple[str, int, bool]]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t, _, _ in graph.get(m, []):
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (cycle := walk(t)):
                return cycle
        state[m] = 2
        path.pop()
        return None

    for m in graph:
        if m not in state and (cycle := walk(m)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_long_modules_are_reported():
    """Modules over the guideline are reported as a warning (split one only by concern)."""
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > GUIDE_LINES}
    if long:
        warnings.warn(f"modules over {GUIDE_LINES} lines (split by concern if it has two): {long}",
                      stacklevel=1)


def test_the_checker_sees_local_imports_cycles_and_package_attributes():
    """The checks can fail: a function-local import, a cycle and an upward import are found."""
    source = ("from linguistic_collapse.nc import ClassStats\n"
              "def f():\n    from linguistic_collapse.series import paper\n    import linguistic_collapse.pipeline.collect\n")
    edges = {(t, inner) for t, _, inner in _imports("linguistic_collapse.core.errors", source)}
    assert edges == {("linguistic_collapse.nc", False), ("linguistic_collapse.series.paper", True), ("linguistic_collapse.pipeline.collect", True)}
    assert _layer("linguistic_collapse.series.paper") > _layer("linguistic_collapse.core.errors")
    assert _find_cycle({"a": [("b", 1, False)], "b": [("c", 1, True)], "c": [("a", 1, False)]}) \
        == ["a", "b", "c", "a"]
    assert _find_cycle({"a": [("b", 1, False)], "b": []}) is None
    assert _target("linguistic_collapse.pipeline.collect.collect_model_stats") == "linguistic_collapse.pipeline.collect"


# Display libraries: drawing and showing belong to the figures and the notebook series
DISPLAY_LIBRARIES = ("matplotlib", "seaborn", "ipywidgets", "IPython")
DISPLAY_PACKAGES = ("figures", "series")


def _display_imports(source: str) -> list[tuple[int, str]]:
    """(line, name) of every import of a display library in ``source``, top-level or inside a
    function."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in DISPLAY_LIBRARIES]
    return found


def test_display_code_lives_in_figures_and_series():
    """matplotlib, seaborn, ipywidgets and IPython are imported only in ``figures`` and
    ``series``: tables compute, figures draw and show."""
    wrong = [f"{m}:{line} imports {name}" for m, p in MODULES.items()
             if (m.split(".") + [""])[1] not in DISPLAY_PACKAGES
             for line, name in _display_imports(p.read_text())]
    assert not wrong, "display code outside figures/series (move it to a figures module):\n" \
        + "\n".join(wrong)


def test_the_display_check_can_fail():
    source = ("import numpy as np\nimport matplotlib.pyplot as plt\nfrom .plots import x\n"
              "def f():\n    # display\n    import ipywidgets as w\n    from IPython.display import Markdown\n"
              "    import seaborn\n    import matplotlib_inline\n")
    assert _display_imports(source) == [(2, "matplotlib.pyplot"), (6, "ipywidgets"),
                                        (7, "IPython.display"), (8, "seaborn")]


# Names of files and folders inside an output folder: only linguistic_collapse.core spells them
OUTPUT_NAMES = {"metrics", "stats", "models", "stamps", "runs", "figures", "dynamics", "sensitivity",
                "corpus", "slurm", "tokenizer", "manifest.json", "results.csv", "results.json",
                "settings.json", "snapshots.json", "dynamics.csv", "stats.safetensors",
                "throughput.json", "metrics.json", "train_blocks.npy", "val_blocks.npy"}


def _joined_text(node: ast.AST) -> str | None:
    """The text of a string or f-string literal (``{}`` for each placeholder), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def test_output_paths_come_from_the_layouts():
    """No ``folder / "metrics"``-style join outside linguistic_collapse.core: every output path is a Layout's."""
    found = []
    for module, path in MODULES.items():
        if module.startswith("linguistic_collapse.core"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                text = _joined_text(node.right)
                if text is not None and (text.split("/")[0] in OUTPUT_NAMES
                                         or text.startswith(("checkpoint-", "step-"))):
                    found.append(f"{module}:{node.lineno} / {text!r}")
    assert not found, f"hand-built output paths (use linguistic_collapse.core.paths.Layout / linguistic_collapse.core.outputs): {found}"


ARCHITECTURE = LIB.parents[1] / "docs" / "architecture.md"


def _documented_modules(text: str) -> set[str]:
    """The module names (``nc.subset``, ``__main__``, ...) in the first column of the
    document's tables."""
    return {name for line in text.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([\w.]+)`", line.split("|")[1])}


def test_every_module_is_named_in_the_architecture_document():
    named = _documented_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    missing = [m.removeprefix("linguistic_collapse.") for m, p in MODULES.items()
               if p.name != "__init__.py" and m.removeprefix("linguistic_collapse.") not in named]
    assert not missing, f"modules docs/architecture.md does not name with their concern: {missing}"


def _uncommented_local_imports(source: str) -> list[int]:
    """Lines of function-local imports with no comment on their line nor above their group
    (consecutive import lines share the comment above the first)."""
    lines, local = source.splitlines(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    bare = []
    for line in sorted(local):
        first = line
        while first - 1 in local:
            first -= 1
        if "#" not in lines[line - 1] and not lines[first - 2].strip().startswith("#"):
            bare.append(line)
    return bare


def test_function_local_imports_have_a_comment():
    """A function-local import is kept only for a heavy library, with a comment saying why."""
    bare = [f"{m}:{line}" for m, p in MODULES.items()
            for line in _uncommented_local_imports(p.read_text())]
    assert not bare, f"function-local imports without a comment (or move them to the top): {bare}"


def test_the_document_and_comment_checks_can_fail():
    source = ("def f():\n    import json\n\n"
              "def g():\n    # heavy\n    import pandas\n    import scipy\n    import torch  # why\n")
    assert _uncommented_local_imports(source) == [2]
    assert _documented_modules("| `nc.subset`, `tables.depth` | x |\n| y | `nc.merge` |\n") \
        == {"nc.subset", "tables.depth"}
