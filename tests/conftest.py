"""Test settings: never reach the Hugging Face hub; never write a tracked file; work in this
checkout (``$LC_ROOT``); float results compared as tests/numerics.py says.

Every figure and table path goes through ``linguistic_collapse.core.paths.output_root()``, which honours
``$LC_OUTPUT_ROOT``. It is set here, at start-up, to a fresh temporary folder seeded with the
committed tables (``runs/<profile>/*.csv``), before nbval starts any kernel (kernels inherit the
environment): the nbval runs of ``runs/smoke/*.ipynb`` read and write there, not in ``runs/`` or
``figures/``.
"""

import atexit
import copy
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
# The checkout under test, for the code and every notebook kernel (kernels inherit the
# environment): never another clone's, whatever the working directory or the shell's $LC_ROOT.
os.environ["LC_ROOT"] = str(REPO_ROOT)


def _redirect_outputs() -> Path:
    """A temporary output root holding copies of the committed tables; removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="lc-test-outputs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for table in (REPO_ROOT / "runs").glob("*/*.csv"):
        dest = root / "runs" / table.parent.name / table.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(table, dest)
    return root


# The SLURM tier (tests/slurm) needs a running cluster: `make test-slurm` starts one and sets
# LC_SLURM_TIER; every other pytest run leaves it out.
collect_ignore = [] if os.environ.get("LC_SLURM_TIER") else ["slurm"]

if "LC_OUTPUT_ROOT" not in os.environ:
    os.environ["LC_OUTPUT_ROOT"] = str(_redirect_outputs())


def _build_missing_notebooks() -> None:
    """The git-ignored notebooks/*.ipynb working copies a fresh clone lacks, built from their
    .py twins as `make notebooks` builds them (existing ones, perhaps open in Lab, untouched)."""
    from linguistic_collapse.core.paths import atomic_write_text
    from linguistic_collapse.series.sources import notebook_from_source, notebook_text

    for source in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        if not source.with_suffix(".ipynb").exists():
            atomic_write_text(source.with_suffix(".ipynb"), notebook_text(notebook_from_source(source)))


_build_missing_notebooks()

# Tests use tiny tensors: one thread avoids OpenMP contention on small shared CPUs (CI has 2 cores),
# unless $LC_TORCH_THREADS says otherwise (`make test-othercpu` sets 2: another numeric path).
# nbval's notebook kernels keep torch's default threads, or $LC_TORCH_THREADS (CI sets other
# counts than the committed run's, so float sums round as on another CPU and nbval proves the
# committed outputs do not depend on it). Float comparisons follow tests/numerics.py.

import matplotlib  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")

torch.set_num_threads(int(os.environ.get("LC_TORCH_THREADS", "1")))


# ---------------------------------------------------------------------------------------------
# Shared fixtures

import pytest  # noqa: E402


def make_tiny_profile(out_dir, *, grid: dict | None = None, collect: dict | None = None,
                      dynamics: dict | None = None):
    """The smoke profile trimmed to one tiny 1-epoch run (width 16, depth 1) on ~60 generated
    stories, no sensitivity or dynamics runs; ``grid`` and ``collect`` update those sections,
    ``dynamics`` replaces that one."""
    from linguistic_collapse.core.profiles import Profile, load_profile

    d = copy.deepcopy(load_profile("smoke").as_dict())
    d.update(out_dir=str(out_dir), context_len=32, device="cpu")
    d["corpus"].update(max_train_stories=60, max_val_stories=20)
    d["tokenizer"]["vocab_size"] = 300
    d["training"]["batch_size"] = 8
    d["grid"].update({"widths": [16], "depths": [1], "replicas": None,
                      "variants": [{"epochs": 1, "weight_decay": 0.1}], **(grid or {})})
    d["collect"].update(collect or {})
    d["sensitivity"]["runs"] = []
    d["dynamics"] = dynamics if dynamics is not None else {**d["dynamics"], "runs": []}
    return Profile.from_dict(d)


@pytest.fixture(scope="session")
def tiny_profile():
    """``make_tiny_profile``: the one tiny profile of the tests that train."""
    return make_tiny_profile


TRAINING_FIXTURES = {"tiny_profile", "uninterrupted"}  # fixtures that train a model


def pytest_collection_modifyitems(config, items) -> None:
    """Every test that trains (through a training fixture) is ``slow``; tests marked
    ``after_notebooks`` read what the nbval runs wrote, so they run last."""
    items.sort(key=lambda item: item.get_closest_marker("after_notebooks") is not None)
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
