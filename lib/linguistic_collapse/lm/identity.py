"""Which model and tokenizer a statistics file belongs to: names, the state-dict hash, the
tokenizer checks, and the metadata that ``linguistic_collapse.nc.stats_file`` records (``model_info``).

Lives outside ``linguistic_collapse.nc`` because it loads tokenizers and reads a model's LM head
(``linguistic_collapse.lm.head``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.outputs import CorpusLayout
from linguistic_collapse.core.paths import find_root, read_json
from linguistic_collapse.core.provenance import sha256_tensor, tokenizer_sha256
from linguistic_collapse.lm.head import lm_head_weight


def name_of_path(path: str | Path) -> str:
    """A local checkpoint's name: relative to the checkout you work in when inside it."""
    p, root = Path(path).resolve(), find_root()
    return str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)


def model_name(model: nn.Module) -> str:
    """The model's name_or_path (normalised when it is a local path) or an in-memory tag."""
    name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
    if not name:
        return f"<in-memory {type(model).__name__}>"
    return name_of_path(name) if Path(name).exists() else str(name)


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 over an in-memory model's state dict: names and ``sha256_tensor`` of each, in name
    order. Not ``linguistic_collapse.core.provenance.weights_sha256`` (the bytes of saved weight files), so it is
    recorded under its own key, ``state_dict_sha256``."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(sha256_tensor(t).encode())
    return h.hexdigest()


def manifest_tokenizer_sha256(*paths: object) -> str | None:
    """``tokenizer_sha256`` of the corpus manifest.json beside block files given as paths."""
    for p in paths:
        manifest = CorpusLayout(Path(p).parent).manifest if isinstance(p, (str, Path)) else None
        if manifest is not None and manifest.is_file():
            sha = read_json(manifest).get("tokenizer_sha256")
            if sha:
                return str(sha)
    return None


def tokenizer_identity(tokenizer: object | None,
                        model_dir: Path | None) -> tuple[int | None, str | None, str | None]:
    """(number of tokens, name, tokenizer_sha256) of the given tokenizer or the model folder's."""
    if tokenizer is None and model_dir is not None:
        if any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            tokenizer = model_dir
    if tokenizer is None:
        return None, None, None
    if isinstance(tokenizer, (str, Path)):
        # heavy (transformers): loaded only when a model or tokenizer is used
        from transformers import AutoTokenizer

        path = Path(tokenizer)
        n = len(AutoTokenizer.from_pretrained(str(path), trust_remote_code=False))
        sha = tokenizer_sha256(path) if (path / "tokenizer.json").is_file() else None
        return n, name_of_path(path) if path.exists() else str(path), sha
    sha = tokenizer_sha256(tokenizer) if hasattr(tokenizer, "backend_tokenizer") else None
    return len(tokenizer), getattr(tokenizer, "name_or_path", None) or None, sha


def tokenizer_provenance(tokenizer: object | None, model_dir: Path | None, vocab_size: int,
                         blocks_tokenizer_sha256: str | None) -> tuple[str | None, str | None]:
    """(name, sha256 to record) of the model's tokenizer, checked: UserError when it has more
    tokens than the LM head has rows, or differs from the tokenizer the blocks were made with."""
    n_tokens, name, sha = tokenizer_identity(tokenizer, model_dir)
    if n_tokens is not None and n_tokens > vocab_size:
        raise UserError(f"tokenizer has {n_tokens} tokens but the model's LM head has "
                        f"{vocab_size} rows: use the tokenizer the model was trained with")
    blocks_sha = blocks_tokenizer_sha256
    if sha and blocks_sha and sha != blocks_sha:
        raise UserError(f"the blocks were made with another tokenizer (sha256 {blocks_sha[:12]}"
                        f"...) than the model's {name} ({sha[:12]}...): rebuild the corpus with "
                        "the model's tokenizer, or collect with the matching model")
    return name, sha or blocks_sha


def model_info(model: nn.Module, name: str | None = None,
               tokenizer: str | None = None) -> dict[str, str]:
    """Metadata identifying the model a stats file belongs to."""
    W = lm_head_weight(model)
    name = name or model_name(model)
    return {"model": name, "tokenizer": tokenizer or name, "vocab_size": str(W.shape[0]),
            "width": str(W.shape[1]), "lm_head_sha256": sha256_tensor(W)}
