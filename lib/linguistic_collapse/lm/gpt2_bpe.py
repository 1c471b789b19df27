"""The paper's tokenizer without the Hugging Face hub: GPT-2's byte-level BPE (GPT-Neo's 50,257
tokens) built from the merge ranks that ship in a package registry.

The source distribution of ``openai-whisper`` 20250625 on PyPI (MIT licence) holds
``whisper/assets/gpt2.tiktoken``: the 50,256 GPT-2 tokens as "<base64 bytes> <rank>" lines.
``ranks_file`` fetches that sdist once (PyPI's simple index, no package is installed), checks the
sdist against the index's sha256, extracts only that file, checks it against ``RANKS_SHA256`` and
caches it at ``data/gpt2-bpe/gpt2.tiktoken``; ``LC_GPT2_TIKTOKEN=<file>`` points at a copy
instead (still hash-checked). ``gpt2_tokenizer`` turns the ranks into a fast tokenizer with
transformers' ``TikTokenConverter`` and GPT-2's pre-tokenisation pattern, plus
``<|endoftext|>`` as id 50256: "Hello world" -> [15496, 995], the GPT-2 / GPT-Neo ids.

    python -m linguistic_collapse.lm.gpt2_bpe          # fetch and verify the ranks file (make setup does this)
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import atomic_write, repo_root
from linguistic_collapse.core.provenance import sha256_bytes, sha256_file

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PACKAGE, VERSION = "openai-whisper", "20250625"
SDIST = f"openai_whisper-{VERSION}.tar.gz"
MEMBER = f"openai_whisper-{VERSION}/whisper/assets/gpt2.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
CACHE = Path("data") / "gpt2-bpe" / "gpt2.tiktoken"  # in the checkout (cache_path)
SIMPLE_INDEX = "https://pypi.org/simple"  # LC_PYPI_SIMPLE overrides (a mirror)
EOT, EOT_ID, VOCAB_SIZE = "<|endoftext|>", 50256, 50257
# GPT-2's pre-tokenisation (encoder.py of openai/gpt-2; tiktoken's "gpt2" pat_str)
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _check(path: Path, where: str) -> Path:
    """``path`` if its sha256 is ``RANKS_SHA256``; else one line naming it and the fix."""
    got = sha256_file(path)
    if got != RANKS_SHA256:
        raise UserError(f"{path}: sha256 {got[:16]}... is not the GPT-2 ranks file's "
                        f"{RANKS_SHA256[:16]}... ({where}); delete it and rerun to fetch "
                        f"{MEMBER} from PyPI again")
    return path


def _sdist_url(index: str) -> tuple[str, str]:
    """(download URL, sha256) of the sdist from the PEP 691 JSON simple index."""
    req = urllib.request.Request(f"{index.rstrip('/')}/{PACKAGE}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        files = json.load(r)["files"]
    for f in files:
        if f["filename"] == SDIST:
            return f["url"], f["hashes"]["sha256"]
    raise UserError(f"{index}: {PACKAGE} lists no {SDIST}; set LC_PYPI_SIMPLE to an index "
                    "that has it, or LC_GPT2_TIKTOKEN to a copy of gpt2.tiktoken")


def cache_path() -> Path:
    """``<checkout>/data/gpt2-bpe/gpt2.tiktoken``: where the ranks file is kept."""
    return repo_root() / CACHE


def fetch_ranks(dest: Path | None = None, index: str | None = None) -> Path:
    """Download the sdist, verify it and the extracted ranks file, write only that file (to
    ``dest``, the checkout's cache by default)."""
    dest = cache_path() if dest is None else dest
    index = index or os.environ.get("LC_PYPI_SIMPLE", SIMPLE_INDEX)
    try:
        url, sdist_sha = _sdist_url(index)
        with urllib.request.urlopen(url, timeout=120) as r:
            data = r.read()
    except OSError as err:
        raise UserError(f"cannot fetch {SDIST} from {index} ({err}); with no network, copy "
                        f"gpt2.tiktoken to {dest} (or set LC_GPT2_TIKTOKEN to it)") from None
    if sha256_bytes(data) != sdist_sha:
        raise UserError(f"{url}: download's sha256 differs from the index's {sdist_sha[:16]}...; "
                        "rerun (a broken download) or check the index (LC_PYPI_SIMPLE)")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)  # read as bytes; nothing of the sdist is executed
        if member is None:
            raise UserError(f"{url}: no {MEMBER} in the sdist; it is not the expected release")
        ranks = member.read()
    if sha256_bytes(ranks) != RANKS_SHA256:
        raise UserError(f"{url}: {MEMBER} has sha256 {sha256_bytes(ranks)[:16]}..., not "
                        f"{RANKS_SHA256[:16]}...; the index serves another file; use PyPI")
    return atomic_write(dest, lambda tmp: tmp.write_bytes(ranks))


def ranks_file() -> Path:
    """The verified GPT-2 ranks file: ``LC_GPT2_TIKTOKEN``, else the cache (fetched if absent)."""
    given = os.environ.get("LC_GPT2_TIKTOKEN")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise UserError(f"LC_GPT2_TIKTOKEN={given}: no such file; point it at gpt2.tiktoken "
                            "or unset it to fetch the file from PyPI")
        return _check(path, "LC_GPT2_TIKTOKEN")
    cache = cache_path()
    if cache.is_file():
        return _check(cache, "cached copy")
    return fetch_ranks(cache)


def load_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """{token bytes: rank} from a tiktoken ranks file ("<base64> <rank>" per line)."""
    ranks = {}
    for n, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:
            raise UserError(f"{path}:{n}: not a '<base64 token> <rank>' line; use the GPT-2 "
                            "ranks file (gpt2.tiktoken)") from None
    return ranks


def build_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """A fast byte-level BPE from a ranks file (GPT-2 pattern), ``<|endoftext|>`` after the ranks."""
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Ranks(TikTokenConverter):
        """TikTokenConverter reading the ranks itself (the ``tiktoken`` package is not needed)."""

        @staticmethod
        def load_tiktoken_bpe(tiktoken_url: str) -> dict[bytes, int]:
            return load_ranks(tiktoken_url)

    backend = _Ranks(vocab_file=str(path), pattern=GPT2_PATTERN,
                     extra_special_tokens=[EOT]).converted()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=EOT, eos_token=EOT,
                                   unk_token=EOT, model_max_length=2048)


def gpt2_tokenizer() -> PreTrainedTokenizerFast:
    """GPT-2 / GPT-Neo's tokenizer (50,257 tokens, ``<|endoftext|>`` = 50256), offline."""
    tok = build_tokenizer(ranks_file())
    if len(tok) != VOCAB_SIZE or tok.convert_tokens_to_ids(EOT) != EOT_ID:
        raise UserError(f"{ranks_file()}: built {len(tok)} tokens with {EOT} at "
                        f"{tok.convert_tokens_to_ids(EOT)}, not {VOCAB_SIZE} and {EOT_ID}")
    return tok


if __name__ == "__main__":
    try:
        print(f"{ranks_file()}: GPT-2 BPE ranks, sha256 verified")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
