"""Test settings: never reach the Hugging Face hub; never write a tracked file.

Every figure and table path goes through ``lib.paper.output_root()``, which honours
``$LC_OUTPUT_ROOT``. It is set here, at start-up, to a fresh temporary folder seeded with the
committed tables (``runs/<profile>/*.csv``), before nbval starts any kernel (kernels inherit the
environment): the nbval runs of ``runs/smoke/*.ipynb`` read and write there, not in ``runs/`` or
``figures/``.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent


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

# Tests use tiny tensors: one thread avoids OpenMP contention on small shared CPUs (CI has 2 cores).
# Only this process: nbval's notebook kernels keep torch's default threads, as under `make paper`,
# so they reproduce the committed outputs bit for bit (float sums depend on the thread count).

import matplotlib  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")

torch.set_num_threads(1)
