"""Probe set, the caller's paths and file modes: every ``--profile`` path is read from the
working directory (a bare name is still ``profiles/<name>.yaml``), and every file the project
writes follows the umask. Each case failed before the behaviour it names was built (README,
"What is checked")."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch
from checkout import PROFILES_DIR
from linguistic_collapse import __main__ as cli
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.classstats import ClassStats
from linguistic_collapse.nc.merge import merge_stats
from linguistic_collapse.pipeline.collect import collect_model_stats

SMOKE = (PROFILES_DIR / "smoke.yaml").read_text(encoding="utf-8")


def _mine(folder, name="mine"):
    """A profile of the caller's own: another name, another width, its own out_dir."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(SMOKE.replace("name: smoke", f"name: {name}")
                    .replace("widths: [16, 32]", "widths: [16, 32, 48]")
                    .replace("out_dir: data/smoke", f"out_dir: {folder / 'data'}"),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("given", ["mine.yaml", "profiles/smoke.yaml", "./mine.yaml"])
def test_grid_dry_run_reads_a_relative_profile_from_the_callers_folder(tmp_path, monkeypatch,
                                                                     capsys, given):
    _mine(tmp_path)
    _mine(tmp_path / "profiles", "smoke")  # the caller's own profiles/smoke.yaml
    monkeypatch.chdir(tmp_path)
    assert cli.main(["grid", "--profile", given, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-d48-" in out


def test_train_reads_a_relative_profile_from_the_callers_folder(tmp_path, monkeypatch, capsys):
    _mine(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LC_TRACEBACK", raising=False)
    assert cli.main(["train", "--profile", "mine.yaml", "--run", "L9-d16-e1-wd0.0005-s0"]) == 2
    err = capsys.readouterr().err  # the caller's profile was read (and no run trained)
    assert "run L9-d16-e1-wd0.0005-s0 is not in profile 'mine'" in err


def test_a_bare_profile_name_is_still_the_checkouts(tmp_path, monkeypatch, capsys):
    _mine(tmp_path, "smoke")  # ./smoke.yaml is not what `--profile smoke` means
    monkeypatch.chdir(tmp_path)
    assert cli.main(["grid", "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "-d32-" in out and "-d48-" not in out


# --- every writer follows the umask ----------------------------------------------------------

V, D, T = 20, 8, 8


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _blocks():
    rng = np.random.default_rng(1)
    return rng.integers(0, V, (4, T)).astype(np.int32), rng.integers(0, V, (2, T)).astype(np.int32)


def _model():
    return build_model(gpt_neo_config(1, D, V, T), seed=0).eval()


def _stats(tmp):
    return collect_model_stats(_model(), *_blocks(), tmp / "collected" / "stats.safetensors",
                               progress=False)


def _partial(tmp):
    path = sf.partial_path(tmp / "w.safetensors")
    sf.save_raw(path, {"counts": torch.zeros(3, dtype=torch.int64)}, {"pass": "1"})
    return path


def _shards(tmp):
    model, (train, _) = _model(), _blocks()
    from linguistic_collapse.pipeline.collect import collect_pass

    return [collect_pass(model, train, 1, tmp / f"s{i}.safetensors", shard=(i, 2),
                         progress=False) for i in range(2)]


def _merged(tmp):
    return merge_stats(_shards(tmp), tmp / "merged.safetensors")


def _classstats(tmp):
    return ClassStats.load(_stats(tmp)).save(tmp / "saved.safetensors", "m")


def _collect_cli(tmp):
    model = _model()
    model.save_pretrained(tmp / "ckpt")
    train, val = _blocks()
    np.save(tmp / "train.npy", train)
    np.save(tmp / "val.npy", val)
    out = tmp / "cli.safetensors"
    assert cli.main(["collect", str(tmp / "ckpt"), "--train-blocks", str(tmp / "train.npy"),
                     "--val-blocks", str(tmp / "val.npy"), "--out", str(out),
                     "--no-progress"]) == 0
    return out


def _dynamics_snapshot(tmp):
    """A dynamics step's files: its snapshot (save_pretrained in an atomic folder) and stats."""
    from linguistic_collapse.core.outputs import DynamicsLayout
    from linguistic_collapse.core.paths import atomic_dir

    files = DynamicsLayout(tmp / "dyn")
    with atomic_dir(files.checkpoint(5)) as build:
        _model().save_pretrained(build)
    collect_model_stats(files.checkpoint(5), *_blocks(), files.stats(5), progress=False)
    return files.stats(5), files.checkpoint(5) / "model.safetensors"


def _training_state(tmp):
    from linguistic_collapse.pipeline.checkpoints import STATE_TENSORS, save_checkpoint

    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    model(input_ids=torch.zeros(1, T, dtype=torch.long), labels=torch.zeros(1, T, dtype=torch.long)).loss.backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_checkpoint(tmp / "run", 1, model, None, opt, sched, [{}], {})
    return tmp / "run" / "checkpoint-1" / STATE_TENSORS, tmp / "run" / "checkpoint-1" / "model.safetensors"


WRITERS = {"stats (collect_model_stats)": _stats, "working file (save_raw)": _partial,
           "pass-1 shards": _shards, "merge-stats": _merged, "ClassStats.save": _classstats,
           "collect CLI": _collect_cli, "dynamics snapshot": _dynamics_snapshot,
           "training_state": _training_state}


@pytest.mark.parametrize("writer", WRITERS)
def test_every_written_file_follows_the_umask(tmp_path, umask_027, writer):
    written = WRITERS[writer](tmp_path)
    for path in (written if isinstance(written, (list, tuple)) else [written]):
        assert _mode(path) == umask_027, f"{path}: {oct(_mode(path))}"


# every path argument of every command, parsed from another folder
PATH_ARGS = {
    "figures --table": (["figures", "--table", "t.csv", "--profile", "x", "--figures-dir", "f"],
                        ("table", "figures_dir")),
    "pretrained --corpus": (["pretrained", "--model", "gpt2", "--corpus", "texts", "--out", "o"],
                            ("corpus", "out")),
    "pretrained --corpus disk:": (["pretrained", "--model", "gpt2", "--corpus", "disk:saved",
                                   "--out", "o"], ("corpus",)),
    "paper --profile": (["paper", "--profile", "p.yaml"], ("profile",)),
    "grid --profile": (["grid", "--profile", "sub/p.yaml"], ("profile",)),
    "train --profile": (["train", "--profile", "p.yml", "--run", "r"], ("profile",)),
}


@pytest.mark.parametrize("case", PATH_ARGS)
def test_every_path_argument_is_read_from_the_callers_folder(tmp_path, monkeypatch, case):
    argv, keys = PATH_ARGS[case]
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser(argv[0]).parse_args(argv)
    for key in keys:
        value = str(getattr(args, key)).removeprefix("disk:")
        assert value.startswith(str(tmp_path) + os.sep), (key, value)


def test_prepare_corpus_source_and_tokenizer_folders_are_the_callers(tmp_path, monkeypatch):
    from linguistic_collapse.lm import data

    texts = tmp_path / "texts"
    texts.mkdir()
    for split in ("train", "validation"):
        (texts / f"{split}.txt").write_text("a b c\n" * 3)
    monkeypatch.chdir(tmp_path)
    seen = {}

    class Stop(Exception):
        pass

    def stop(**kwargs):  # what the command would prepare: nothing is built
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(data, "prepare_corpus", stop)
    with pytest.raises(Stop):
        cli.main(["prepare-corpus", "--source", "texts", "--tokenizer", "texts", "--out", "c"])
    assert seen["corpus"]["path"] == str(texts) and seen["tokenizer"]["name"] == str(texts)
