"""The ``--device`` of every command, checked once before anything is loaded (light to import:
``python -m linguistic_collapse --help`` imports it)."""

from __future__ import annotations

from linguistic_collapse.core.errors import UserError

DEVICES = "cpu, auto or cuda[:N]"


def check_device(text: str) -> str:
    """``text`` when it names a device this project runs on here (cpu, auto, cuda or cuda:N of
    an existing GPU), else a one-line ``UserError``: checked once, before any model loads."""
    import torch  # here, not at the top: the CLI imports this module before --help

    name = str(text).strip()
    if name in ("cpu", "auto"):
        return name
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UserError(f"--device {name!r} is not a device this project runs on; use {DEVICES}")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name!r}: CUDA is not available here (torch "
                        f"{torch.__version__}, {torch.version.cuda or 'a CPU build'}); use cpu "
                        "or auto, or install a CUDA build of torch on a machine with a GPU")
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                        f"device(s), numbered from 0; use {DEVICES}")
    return name
