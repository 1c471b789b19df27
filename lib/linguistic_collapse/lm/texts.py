"""Story texts of one corpus split: generated, from the hub, a saved dataset, or local files.

Local text must be UTF-8: a binary file or another encoding raises ``UserError`` naming the
file. Offline (``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``) or with the hub unreachable, hub
sources fail within seconds with a message saying how to run on local text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import resolve
from linguistic_collapse.lm.hub import hub_reachable  # the one probe of the hub endpoint
from linguistic_collapse.lm.synthetic import generate_corpus

SPLITS = ("train", "validation")
DEFAULT_HUB_DATASET = "roneneldan/TinyStories"  # source "hub" alone means this dataset
DEFAULT_GENERATED = {"train": 2000, "validation": 200}  # stories when max_stories is None
GENERATED_SEEDS = {"train": 0, "validation": 1}
_OFFLINE_HINT = (
    "Without network, put local text under data/tinystories/ (train.txt and validation.txt, "
    "one story or paragraph per line) and set the profile's corpus to source: path, path: "
    "data/tinystories; or run the offline profile with PROFILE=smoke."
)


# ---------------------------------------------------------------------------------------------
# Local files, the hub, saved datasets


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; binary or other encodings raise ``UserError``."""
    fix = "save it as UTF-8 text, one story per line (e.g. iconv -t UTF-8)"
    lineno = 0
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if "\0" in line:
                    raise UserError(f"{path}:{lineno}: binary data (a NUL byte), not text; {fix}")
                yield lineno, line
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} after line "
                        f"{lineno}); {fix}") from None


def _read_txt(path: Path, max_stories: int | None) -> list[str]:
    """Non-empty lines of a text file, read as a stream (at most ``max_stories`` of them)."""
    stories: list[str] = []
    for _, line in _text_lines(path):
        if max_stories is not None and len(stories) >= max_stories:
            break
        line = line.rstrip("\r\n")
        if line.strip():
            stories.append(line)
    return stories


def _read_jsonl(path: Path, max_stories: int | None) -> list[str]:
    """The "text" field of each JSON line (blank lines skipped, empty texts dropped)."""
    stories: list[str] = []
    for lineno, line in _text_lines(path):
        if max_stories is not None and len(stories) >= max_stories:
            break
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno}: not a JSON line ({err.msg}); write one "
                            '{"text": ...} object per line') from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f"{path}:{lineno}: expected a JSON object with a string 'text'")
        if record["text"].strip():
            stories.append(record["text"])
    return stories


def _local_file(source: str, split: str) -> Path:
    """The text file a local source names: the file itself or ``<dir>/<split>.txt|.jsonl``."""
    path = resolve(source)
    if path.is_file():
        return path
    if path.is_dir():
        for suffix in (".txt", ".jsonl"):
            if (path / f"{split}{suffix}").is_file():
                return path / f"{split}{suffix}"
        raise FileNotFoundError(
            f"{path} holds neither {split}.txt nor {split}.jsonl; put the {split} split there "
            "(one story per line, or JSON lines with a 'text' field)"
        )
    raise FileNotFoundError(
        f"corpus source {source!r} is not 'generated', 'hub:<name>', 'disk:<path>' or an "
        f"existing path ({path} does not exist); put train.txt and validation.txt there, "
        "e.g. under data/tinystories/"
    )


def hub_offline() -> bool:
    flags = (os.environ.get(k, "") for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    return any(v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in flags)


def hub_error(what: str, err: BaseException | None = None) -> RuntimeError:
    mode = "offline mode is set (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if hub_offline() else \
        "the Hugging Face hub is unreachable"
    detail = f" ({type(err).__name__}: {err})" if err else ""
    return RuntimeError(f"cannot load {what}: {mode} and it is not in the local cache{detail}. "
                        + _OFFLINE_HINT)


def _texts_of(dataset, origin: str, max_stories: int | None) -> list[str]:
    """The non-empty "text" column of a ``datasets.Dataset`` (first ``max_stories`` rows)."""
    if "text" not in dataset.column_names:
        raise ValueError(f"{origin} has no 'text' column (columns: {dataset.column_names})")
    if max_stories is not None:
        dataset = dataset.select(range(min(max_stories, len(dataset))))
    return [t for t in dataset["text"] if isinstance(t, str) and t.strip()]


def _load_hub(name: str, split: str, max_stories: int | None) -> list[str]:
    """``datasets.load_dataset(name, split=...)``; offline or unreachable -> RuntimeError, fast."""
    if not hub_offline() and not hub_reachable():
        raise hub_error(f"dataset {name!r}")
    # heavy (datasets): loaded only for a hub or saved dataset
    import datasets

    hub_split = split if max_stories is None else f"{split}[:{max_stories}]"
    try:
        dataset = datasets.load_dataset(name, split=hub_split)
    except (OSError, ConnectionError) as err:  # hub errors are OSError/ConnectionError subclasses
        raise hub_error(f"dataset {name!r}", err) from err
    return _texts_of(dataset, f"hub dataset {name!r} split {split!r}", max_stories)


def _load_disk(path_str: str, split: str, max_stories: int | None) -> list[str]:
    """A ``DatasetDict`` saved with ``save_to_disk``: its ``split`` split's "text" column."""
    # heavy (datasets): loaded only for a hub or saved dataset
    import datasets

    path = resolve(path_str)
    if not path.exists():
        raise FileNotFoundError(f"no saved dataset at {path}; save one there with "
                                "DatasetDict.save_to_disk (splits 'train' and 'validation')")
    saved = datasets.load_from_disk(str(path))
    if isinstance(saved, datasets.Dataset):
        raise ValueError(f"{path} holds a single Dataset, not splits; save a DatasetDict with "
                         "'train' and 'validation' splits instead")
    if split not in saved:
        raise ValueError(f"saved dataset {path} has no split {split!r} (has {list(saved)})")
    return _texts_of(saved[split], f"saved dataset {path} split {split!r}", max_stories)


def corpus_source_arg(text: str) -> str:
    """argparse ``type`` of a corpus source on the command line: a local path (also after
    "disk:") made absolute against the caller's working directory, a named source as it is."""
    if text == "generated" or text == "hub" or text.startswith("hub:"):
        return text
    if text.startswith("disk:"):
        return "disk:" + str(Path(text[5:]).expanduser().absolute())
    return str(Path(text).expanduser().absolute())


def load_corpus(source: str, split: str, max_stories: int | None = None) -> list[str]:
    """The stories of one split ("train" or "validation") of a corpus source.

    ``source`` is "generated" (train seed 0, validation seed 1; 2000/200 stories by default),
    "hub:<dataset>" (``datasets.load_dataset``; "hub" alone is roneneldan/TinyStories), "disk:<path>" (a saved ``DatasetDict``), or a
    local path (relative to the repository root): a directory holding ``<split>.txt`` or
    ``<split>.jsonl``, or one such file. A .txt file is read as a stream of documents, one per
    non-empty line (TinyStories text separates paragraphs by blank lines and rarely marks
    story ends), so ``max_stories`` caps lines; a .jsonl file has one {"text": ...} per line.
    """
    _check_split(split)
    if max_stories is not None and max_stories < 1:
        raise ValueError(f"max_stories must be positive or None, got {max_stories}")
    if source == "generated":
        n = max_stories or DEFAULT_GENERATED[split]
        stories = generate_corpus(n, seed=GENERATED_SEEDS[split])
    elif source == "hub" or source.startswith("hub:"):
        stories = _load_hub(source[4:] or DEFAULT_HUB_DATASET, split, max_stories)
    elif source.startswith("disk:"):
        stories = _load_disk(source[5:], split, max_stories)
    else:
        path = _local_file(source, split)
        read = _read_jsonl if path.suffix == ".jsonl" else _read_txt
        stories = read(path, max_stories)
    if not stories:
        raise ValueError(f"corpus source {source!r} split {split!r} gave no non-empty stories")
    return stories
