"""Probe set, one line for every OS error, bad device and bad model file: safetensors'
"(os error N)", numpy's short write, a failed write leaving nothing at --out, --device checked
before any loading, unreadable model headers and configs, no srun, leftover temporary folders.
Each case failed before the behaviour it names was built (README, "What is checked")."""

from __future__ import annotations

import errno
import json
import os
import struct

import numpy as np
import pytest
import torch
from checkout import PROFILES_DIR
from linguistic_collapse import __main__ as cli
from linguistic_collapse.core.errors import as_os_error, os_error_line
from linguistic_collapse.lm import data
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.pipeline.freshness import stale_reasons
from safetensors import SafetensorError

V, D, T = 30, 16, 10
FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    build_model(gpt_neo_config(1, D, V, T), seed=0).save_pretrained(folder)
    return folder


@pytest.fixture
def blocks(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for name, n in (("train", 6), ("val", 3)):
        path = tmp_path / f"{name}_blocks.npy"
        np.save(path, rng.integers(0, V, (n, T)).astype(np.int32))
        paths.append(path)
    return paths


def _collect(checkpoint, blocks, out, *extra):
    return cli.main(["collect", str(checkpoint), "--train-blocks", str(blocks[0]),
                     "--val-blocks", str(blocks[1]), "--out", str(out), "--batch-size", "2",
                     "--no-progress", *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("text", [FULL, "IoError(Os { code: 28, kind: StorageFull })",
                                  "[Errno 28] No space left on device"])
def test_every_errno_wrapper_is_understood(text):
    err = as_os_error(SafetensorError(text), "/x/stats.safetensors")
    assert err is not None and err.errno == errno.ENOSPC
    assert os_error_line(err).startswith("/x/stats.safetensors: No space left on device (ENOSPC)")


def test_text_without_an_errno_is_not_an_os_error():
    assert as_os_error(RuntimeError("the job ended with exit code: 1")) is None


def test_full_disk_during_collect_is_one_line_and_leaves_nothing_at_out(
        tmp_path, checkpoint, blocks, monkeypatch, capsys):
    out = tmp_path / "stats.safetensors"
    real = sf.save_file

    def full_at_out(tensors, filename, metadata=None):
        if os.path.basename(filename).startswith(f".{out.name}."):  # the final write only
            raise SafetensorError(FULL)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(sf, "save_file", full_at_out)
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    assert _collect(checkpoint, blocks, out) == 2
    assert _one_line(capsys) == (f"error: {out}: No space left on device (ENOSPC); free space "
                                 "there or write to another disk")
    assert not out.exists()  # no pass-1-only file where the finished one belongs
    assert [p.name for p in tmp_path.glob(".*.tmp")] == []
    monkeypatch.setattr(sf, "save_file", real)  # space freed: the rerun finishes from pass 1
    assert _collect(checkpoint, blocks, out) == 0 and stale_reasons(out) == []
    assert not sf.pass1_path(out).exists() and not sf.partial_path(out).exists()


def test_full_disk_while_saving_training_state_is_one_line(tmp_path, monkeypatch):
    from linguistic_collapse.pipeline import checkpoints
    from linguistic_collapse.pipeline.checkpoints import save_checkpoint

    model = build_model(gpt_neo_config(1, D, V, T), seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    def full(*args, **kwargs):
        raise SafetensorError(FULL)

    monkeypatch.setattr(checkpoints, "save_file", full)
    with pytest.raises(OSError) as got:
        save_checkpoint(tmp_path / "run", 1, model, None, optimizer, scheduler, [{}], {})
    assert os_error_line(got.value).startswith(
        f"{tmp_path / 'run' / 'checkpoint-1'}: No space left on device (ENOSPC)")
    assert list((tmp_path / "run").iterdir()) == []  # nothing half-written left


def test_short_write_of_prepare_corpus_names_the_path(tmp_path, monkeypatch):
    def short(file, array, *args, **kwargs):
        raise OSError("220736 requested and 33760 written")

    monkeypatch.setattr(data.np, "save", short)
    target = tmp_path / "corpus" / "train_blocks.npy"
    with pytest.raises(OSError) as got:
        data._save_blocks(target, np.zeros((3, 4), dtype=np.int32))
    line = os_error_line(got.value)
    assert line.startswith(f"{target}: 220736 requested and 33760 written") and "free space" in line
    assert not target.exists() and list(target.parent.iterdir()) == []


def _profile(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text((PROFILES_DIR / "smoke.yaml").read_text(encoding="utf-8").replace(
        "out_dir: data/smoke", f"out_dir: {tmp_path / 'data'}"), encoding="utf-8")
    return path


BAD_DEVICES = ["gpu", "mps", "cuda:x", *(["cuda", "cuda:0"] if not torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("command", ["collect", "measure", "pretrained", "train"])
def test_bad_device_is_one_line_before_any_loading(tmp_path, checkpoint, blocks, monkeypatch,
                                                    capsys, command, device):
    import transformers

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before --device was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    args = {
        "collect": ["collect", str(checkpoint), "--train-blocks", str(blocks[0]), "--out",
                    str(tmp_path / "s.safetensors")],
        "measure": ["measure", str(tmp_path / "s.safetensors"), "--out", str(tmp_path / "m.json")],
        "pretrained": ["pretrained", "--model", str(checkpoint), "--corpus", "generated",
                       "--out", str(tmp_path / "pre")],
        "train": ["train", "--profile", str(_profile(tmp_path)), "--run",
                  "L1-d16-e1-wd0.0005-s0"],
    }[command]
    assert cli.main([*args, "--device", device]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"error: --device {device!r}") and ("cpu" in line)
    assert not (tmp_path / "data").exists() and not (tmp_path / "pre").exists()


def _header_claiming(path, size: int) -> None:
    path.write_bytes(struct.pack("<Q", size) + b'{"__metadata__":{}}')


def test_model_with_an_impossible_safetensors_header_is_one_line(tmp_path, checkpoint, blocks,
                                                                 monkeypatch, capsys):
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    _header_claiming(checkpoint / "model.safetensors", 2**62)
    assert _collect(checkpoint, blocks, tmp_path / "s.safetensors") == 2
    line = _one_line(capsys)
    assert f"{checkpoint / 'model.safetensors'} is not a readable safetensors file" in line


def test_model_with_a_huge_tensor_in_its_header_is_one_line(tmp_path, checkpoint, blocks,
                                                            monkeypatch, capsys):
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**9, 10**9],
                               "data_offsets": [0, 4 * 10**18]}}).encode()
    (checkpoint / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"0" * 64)
    assert _collect(checkpoint, blocks, tmp_path / "s.safetensors") == 2
    assert f"{checkpoint / 'model.safetensors'} is not a readable" in _one_line(capsys)


def test_model_whose_config_cannot_be_built_is_one_line(tmp_path, checkpoint, blocks,
                                                        monkeypatch, capsys):
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(hidden_size=262144, vocab_size=50_000_000)
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert _collect(checkpoint, blocks, tmp_path / "s.safetensors") == 2
    line = _one_line(capsys)
    assert f"model {checkpoint}: cannot be built from its config.json" in line


def test_slurm_without_srun_is_one_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 1'\n")
    (folder / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    assert cli.main(["grid", "--profile", str(_profile(tmp_path)), "--slurm"]) == 2
    assert "--slurm needs SLURM's srun on PATH" in _one_line(capsys)
    assert not (tmp_path / "data" / "slurm").exists() or not any(
        (tmp_path / "data" / "slurm").rglob("*.pkl"))


def test_interrupted_tokenizer_folders_are_removed(tmp_path):
    cache = tmp_path / "corpus"
    leftover = cache / ".tokenizer.k1ll3d.tmp"
    leftover.mkdir(parents=True)
    (cache / ".train_blocks.npy.x.tmp").write_bytes(b"half")
    data.prepare_corpus(corpus={"source": "generated", "max_train_stories": 30,
                                "max_val_stories": 10},
                        tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=16,
                        cache_dir=cache, progress=False)
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []
