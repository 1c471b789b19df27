"""Test settings: never reach the Hugging Face hub."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Tests use tiny tensors: one thread avoids OpenMP contention on small shared CPUs (CI has 2 cores).
# Only this process: nbval's notebook kernels keep torch's default threads, as under `make paper`,
# so they reproduce the committed outputs bit for bit (float sums depend on the thread count).

import matplotlib  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")

torch.set_num_threads(1)
