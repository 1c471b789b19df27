"""Model names: a local folder or a Hugging Face hub id, and loading from the hub that fails fast.

A hub id is tried in the local cache first, then on the hub only when HF_HUB_OFFLINE is unset
and the endpoint answers a quick probe; otherwise a one-line ``UserError`` says how to get it.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from linguistic_collapse.core.errors import UserError, error_line
from linguistic_collapse.core.paths import resolve_if_checkout

T = TypeVar("T")

_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_TRUE = {"1", "ON", "YES", "TRUE"}


def local_model_dir(name_or_path: str | Path) -> Path | None:
    """The existing local folder ``name_or_path`` names (as given, else checkout-relative)."""
    for p in (Path(name_or_path).expanduser(), resolve_if_checkout(name_or_path)):
        if p.exists():
            return p
    return None


def is_hub_name(name_or_path: str | Path) -> bool:
    """True for a hub id like "gpt2" or "EleutherAI/pythia-70m" that is not a local path."""
    text = str(name_or_path)
    return (local_model_dir(text) is None and not text.startswith(".")
            and _HUB_NAME.match(text) is not None and not text.endswith((".", "-")))


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(k, "").strip().upper() in _TRUE
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint (HF_ENDPOINT), so no network fails in seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def _unavailable(what: str, name: str, revision: str | None) -> UserError:
    # heavy (huggingface_hub, with transformers): loaded only when a hub model is asked for
    from huggingface_hub import constants

    at = f" at revision {revision!r}" if revision else ""
    why = ("HF_HUB_OFFLINE is set" if hub_offline()
           else f"the hub ({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) is unreachable")
    rev = f" --revision {revision}" if revision else ""
    return UserError(
        f"{what} {name!r}{at} is not available offline: it is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and {why}; download it on a connected machine "
        f"(`hf download {name}{rev}`) and copy that cache here or point HF_HOME at it, "
        + ("unset HF_HUB_OFFLINE where the hub is reachable, " if hub_offline() else "")
        + "or pass a local folder written by save_pretrained"
    )


def from_hub(load: Callable[..., T], name: str, revision: str | None = None,
             what: str = "model") -> T:
    """``load(name, revision=..., local_files_only=...)`` (a ``from_pretrained``): cache first,
    then the hub only when it is allowed and reachable; otherwise one-line ``UserError`` at once
    (no retries against an unreachable hub)."""
    try:
        return load(name, revision=revision, local_files_only=True)
    except OSError:  # not (completely) in the cache
        pass
    if hub_offline() or not hub_reachable():
        raise _unavailable(what, name, revision) from None
    try:
        return load(name, revision=revision)
    except OSError as err:
        at = f" at revision {revision!r}" if revision else ""
        raise UserError(f"could not load {what} {name!r}{at} from the hub ({error_line(err)}); "
                        "check the name and revision") from None
