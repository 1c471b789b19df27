"""Shared plumbing of the provenance chain: ordinary permissions, locks, the output layout,
content hashes of weights, nested change reports."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
from checkout import REPO_ROOT
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import (
    Layout,
    atomic_dir,
    atomic_write,
    atomic_write_json,
    lock_for,
)
from linguistic_collapse.core.provenance import (
    changed_paths,
    sha256_file,
    sha256_json,
    weights_sha256,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_and_folders_follow_the_umask(tmp_path, umask_022):
    f = atomic_write_json(tmp_path / "a" / "x.json", {"a": 1})
    assert mode(f) == 0o644 and mode(tmp_path / "a") == 0o755
    with atomic_dir(tmp_path / "d") as build:
        (build / "y.txt").write_text("y")
    assert mode(tmp_path / "d") == 0o755 and mode(tmp_path / "d" / "y.txt") == 0o644
    os.umask(0o077)
    assert mode(atomic_write(tmp_path / "p", lambda t: t.write_text("p"))) == 0o600


@pytest.mark.slow
def test_checkpoint_folders_are_readable_by_others(tmp_path, umask_022):
    """A checkpoint written by linguistic_collapse.pipeline.train: folder 0755, files 0644 (not mkdtemp's 0700)."""
    from linguistic_collapse.core.profile_sections import ModelConfig, TrainingConfig
    from linguistic_collapse.lm.data import prepare_corpus
    from linguistic_collapse.pipeline.train import train_run

    corpus = prepare_corpus(corpus={"source": "generated", "max_train_stories": 40,
                                    "max_val_stories": 10},
                            tokenizer={"kind": "bpe", "vocab_size": 280}, context_len=16,
                            cache_dir=tmp_path / "corpus", progress=False)
    train_run(ModelName.parse("L1-d16-e1-wd0.1-s0"), corpus=corpus,
              training=TrainingConfig(lr=1e-3, batch_size=8), model_cfg=ModelConfig(),
              out_dir=tmp_path / "out", device="cpu", progress=False)
    written = [p for p in (tmp_path / "out").rglob("*") if not p.name.endswith(".lock")]
    written += [p for p in (tmp_path / "corpus").rglob("*")]
    assert written
    for p in written:
        assert mode(p) == (0o755 if p.is_dir() else 0o644), p


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "t"
    with atomic_dir(target) as build:
        (build / "old").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as build:
        (build / "new").write_text("2")
        raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old"]
    with atomic_dir(target) as build:
        (build / "new").write_text("2")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]  # no temporary left


@pytest.mark.slow
def test_a_run_in_progress_is_not_touched_by_a_second_trainer(tmp_path):
    """While one process holds a run's lock, another waits: it never removes the first one's
    temporary checkpoint folder (the old last_checkpoint did)."""
    from linguistic_collapse.core.profile_sections import ModelConfig, TrainingConfig
    from linguistic_collapse.lm.data import prepare_corpus
    from linguistic_collapse.pipeline.train import train_run

    corpus = prepare_corpus(corpus={"source": "generated", "max_train_stories": 40,
                                    "max_val_stories": 10},
                            tokenizer={"kind": "bpe", "vocab_size": 280}, context_len=16,
                            cache_dir=tmp_path / "corpus", progress=False)
    run = ModelName.parse("L1-d16-e1-wd0.1-s0")
    run_dir = Layout(tmp_path / "out").run_dir(run)
    in_flight = run_dir / ".checkpoint-1.abc.tmp"
    in_flight.mkdir(parents=True)
    done = {}

    def second() -> None:
        done["results"] = train_run(run, corpus=corpus, training=TrainingConfig(lr=1e-3, batch_size=8),
                                    model_cfg=ModelConfig(), out_dir=tmp_path / "out",
                                    device="cpu", progress=False)

    with lock_for(run_dir):  # the first trainer
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive() and in_flight.is_dir()
    thread.join(timeout=120)
    assert done["results"]["status"] == "complete"


def test_layout_spells_every_path(tmp_path):
    layout = Layout("data/cpu")
    assert layout.root == REPO_ROOT / "data" / "cpu"
    ck = ModelName.parse("L2-d64-e3-wd0.1-s0-ck2")
    assert layout.checkpoint_dir(ck) == layout.root / "models" / "L2-d64-e3-wd0.1-s0" / "checkpoint-2"
    assert layout.results(ck) == layout.root / "models" / "L2-d64-e3-wd0.1-s0" / "results.json"
    assert layout.stats(ck) == layout.root / "stats" / str(ck) / "stats.safetensors"
    assert layout.metrics(ck) == layout.root / "metrics" / f"{ck}.json"
    assert layout.throughput(ck).parent == layout.stats(ck).parent
    assert layout.manifest == layout.corpus / "manifest.json"
    assert layout.stats(ck, 0.25, 2).parts[-5:] == ("sensitivity", str(ck), "fraction-0.25",
                                                    "draw-2", "stats.safetensors")
    assert layout.stats(ck, 0.25) == layout.stats(ck, 0.25, 0) != layout.stats(ck, 0.25, 1)
    assert layout.stats(ck, 1.0, 0) == layout.stats(ck)  # the full pass: the main statistics
    assert layout.metrics(ck, 0.25) == layout.stats(ck, 0.25).with_name("metrics.json")
    assert layout.throughput(ck, 0.25) == layout.stats(ck, 0.25).with_name("throughput.json")
    assert Layout(tmp_path).root == tmp_path
    with pytest.raises(ValueError, match="names no checkpoint"):
        layout.checkpoint_dir(ck.run)


def test_weights_sha256_and_changed_paths(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"w")
    (tmp_path / "training_state.safetensors").write_bytes(b"s")  # not the model's weights
    assert weights_sha256(tmp_path) == sha256_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    for i in (1, 2):
        (tmp_path / f"model-0000{i}-of-00002.safetensors").write_bytes(bytes([i]))
    assert weights_sha256(tmp_path) == sha256_json(
        {f"model-0000{i}-of-00002.safetensors": sha256_file(
            tmp_path / f"model-0000{i}-of-00002.safetensors") for i in (1, 2)})
    with pytest.raises(FileNotFoundError):
        weights_sha256(tmp_path / "nothing")
    old = {"training": {"lr": 1e-3, "batch_size": 8}, "tokenizer_sha256": "a", "n": 1}
    new = {"training": {"lr": 5e-4, "batch_size": 8}, "tokenizer_sha256": "b", "n": 1, "x": 2}
    assert changed_paths(old, new) == ["tokenizer_sha256", "training.lr", "x"]


def test_safetensors_written_atomically_is_ordinary(tmp_path, umask_022):
    import torch
    from safetensors.torch import save_file

    path = atomic_write(tmp_path / "s.safetensors",
                        lambda tmp: save_file({"a": torch.zeros(2)}, str(tmp)))
    assert mode(path) == 0o644
