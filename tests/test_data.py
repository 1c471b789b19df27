"""Tests of linguistic_collapse.lm.data: corpora, tokenizers, token blocks and the prepared-corpus cache."""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from checkout import REPO_ROOT
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.provenance import (
    sha256_array,
    sha256_json,
    sha256_texts,
    tokenizer_sha256,
)
from linguistic_collapse.lm import data, synthetic
from linguistic_collapse.lm import texts as sources

SHARED_TINYSTORIES = REPO_ROOT.parent / "shared" / "data" / "tinystories"  # `make paper` copies it

BPE = {"kind": "bpe", "vocab_size": 400}


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return synthetic.generate_corpus(300, seed=0)


@pytest.fixture(scope="module")
def tokenizer(texts, tmp_path_factory):
    return data.train_bpe_tokenizer(texts, 400, tmp_path_factory.mktemp("bpe"))


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Generated corpus


def test_generated_corpus_is_deterministic_and_seeded():
    a, b = synthetic.generate_corpus(50, seed=3), synthetic.generate_corpus(50, seed=3)
    assert a == b
    assert a != synthetic.generate_corpus(50, seed=4)
    assert synthetic.generate_corpus(20, seed=3) == a[:20]  # one stream: shorter is a prefix


def test_generated_stories_shape():
    stories = synthetic.generate_corpus(200, seed=0)
    names = set(synthetic._GIRLS + synthetic._BOYS)
    for s in stories:
        assert s == s.lower() and s.strip() == s
        assert 3 <= len(re.findall(r'[.!?]"?(?= |$)', s)) <= 6  # sentence ends
        assert names & set(s.replace(",", " ").replace(".", " ").split())
    assert len(set(stories)) > 150  # varied
    with pytest.raises(ValueError, match="n_stories"):
        synthetic.generate_corpus(0)


def test_load_generated_splits_differ_and_cap():
    train = data.load_corpus("generated", "train", max_stories=30)
    val = data.load_corpus("generated", "validation", max_stories=30)
    assert train == synthetic.generate_corpus(30, seed=0) and train != val
    assert len(data.load_corpus("generated", "validation")) == sources.DEFAULT_GENERATED["validation"]
    with pytest.raises(ValueError, match="split"):
        data.load_corpus("generated", "test")


# ---------------------------------------------------------------------------------------------
# Local text


def test_local_txt_is_a_stream_of_nonempty_lines(tmp_path, monkeypatch):
    lines = ["first story.", "", "second paragraph.", "   ", "third.", "fourth."]
    _write_lines(tmp_path / "corpus" / "train.txt", lines)
    expected = ["first story.", "second paragraph.", "third.", "fourth."]
    assert data.load_corpus(str(tmp_path / "corpus"), "train") == expected
    assert data.load_corpus(str(tmp_path / "corpus"), "train", max_stories=2) == expected[:2]
    assert data.load_corpus(str(tmp_path / "corpus" / "train.txt"), "validation") == expected
    # a relative source is anchored at the repository root, not the working directory
    monkeypatch.chdir(tmp_path)
    rel = os.path.relpath(tmp_path / "corpus", REPO_ROOT)
    assert data.load_corpus(rel, "train") == expected


def test_local_jsonl(tmp_path):
    records = [{"text": "once upon a time."}, {"text": ""}, {"text": "the end.", "id": 2}]
    (tmp_path / "validation.jsonl").write_text(
        "\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    assert data.load_corpus(str(tmp_path), "validation") == ["once upon a time.", "the end."]
    assert data.load_corpus(str(tmp_path), "validation", max_stories=1) == ["once upon a time."]
    (tmp_path / "train.jsonl").write_text('{"story": "no text key"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="'text'"):
        data.load_corpus(str(tmp_path), "train")


def test_missing_and_empty_sources(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*train.txt and validation.txt"):
        data.load_corpus(str(missing), "train")
    with pytest.raises(FileNotFoundError, match="validation.txt nor validation.jsonl"):
        data.load_corpus(str(tmp_path), "validation")
    _write_lines(tmp_path / "train.txt", ["", "  "])
    with pytest.raises(ValueError, match="no non-empty stories"):
        data.load_corpus(str(tmp_path), "train")
    with pytest.raises(ValueError, match="max_stories"):
        data.load_corpus("generated", "train", max_stories=0)


# ---------------------------------------------------------------------------------------------
# Hub and saved datasets


def test_hub_offline_fails_fast_with_guidance(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(RuntimeError) as err:
        data.load_corpus("hub:lc-test/no-such-dataset", "train", max_stories=5)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "offline" in message and "data/tinystories/" in message and "PROFILE=smoke" in message


def test_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(RuntimeError, match="unreachable.*train.txt and validation.txt"):
        data.load_corpus("hub", "validation")
    with pytest.raises(RuntimeError, match="unreachable"):
        data.load_tokenizer("lc-test/no-such-tokenizer")


def test_disk_source_round_trip(tmp_path):
    import datasets

    train = synthetic.generate_corpus(12, seed=5)
    val = synthetic.generate_corpus(4, seed=6)
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": train}),
        "validation": datasets.Dataset.from_dict({"text": val}),
    })
    dd.save_to_disk(str(tmp_path / "dd"))
    assert data.load_corpus(f"disk:{tmp_path / 'dd'}", "train") == train
    assert data.load_corpus(f"disk:{tmp_path / 'dd'}", "train", max_stories=5) == train[:5]
    assert data.load_corpus(f"disk:{tmp_path / 'dd'}", "validation") == val
    dd["train"].save_to_disk(str(tmp_path / "single"))
    with pytest.raises(ValueError, match="DatasetDict"):
        data.load_corpus(f"disk:{tmp_path / 'single'}", "train")
    with pytest.raises(FileNotFoundError, match="save_to_disk"):
        data.load_corpus(f"disk:{tmp_path / 'absent'}", "train")


# ---------------------------------------------------------------------------------------------
# Tokenizers


def test_bpe_vocab_size_round_trip_and_save(tokenizer, texts, tmp_path):
    assert len(tokenizer) == 400
    assert tokenizer.eos_token == data.EOT and tokenizer.convert_tokens_to_ids(data.EOT) == 0
    for text in [texts[0], "héllo wörld, 日本 🙂!\n\nnew   paragraph"]:  # bytes never unknown
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    saved = tmp_path / "saved"
    data.train_bpe_tokenizer(texts, 400, saved)
    reloaded = data.load_tokenizer(saved)
    assert reloaded.get_vocab() == tokenizer.get_vocab()  # deterministic training
    assert reloaded(texts[1])["input_ids"] == tokenizer(texts[1])["input_ids"]
    with pytest.raises(ValueError, match="too small"):
        data.train_bpe_tokenizer(texts, 100, tmp_path / "tiny")


def test_get_tokenizer_reuses_cache(texts, tmp_path, monkeypatch):
    calls = []
    real_train = data.train_bpe_tokenizer
    monkeypatch.setattr(data, "train_bpe_tokenizer",
                        lambda *a, **k: calls.append(a[1]) or real_train(*a, **k))
    cache = tmp_path / "tok"
    first = data.get_tokenizer(BPE, texts, cache)
    second = data.get_tokenizer(BPE, texts, cache)
    assert calls == [400] and second.get_vocab() == first.get_vocab()
    data.get_tokenizer({"kind": "bpe", "vocab_size": 300}, texts, cache)  # other spec: retrain
    data.get_tokenizer({"kind": "bpe", "vocab_size": 300}, texts[:100], cache)  # other texts
    assert calls == [400, 300, 300] and len(data.load_tokenizer(cache)) == 300
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no build leftovers


def test_get_tokenizer_pretrained_and_bad_specs(tokenizer, tmp_path):
    tokenizer.save_pretrained(str(tmp_path / "pre"))
    tok = data.get_tokenizer({"kind": "pretrained", "name": str(tmp_path / "pre")}, None,
                             tmp_path / "cache")
    assert tok.get_vocab() == tokenizer.get_vocab()
    assert (tmp_path / "cache" / data.TOKENIZER_SPEC_FILE).is_file()
    for bad in [{"kind": "wordpiece", "vocab_size": 10}, {"kind": "bpe"},
                {"kind": "bpe", "vocab_size": 400, "name": "x"}, {"kind": "pretrained"}]:
        with pytest.raises(ValueError, match="tokenizer"):
            data.get_tokenizer(bad, ["text"], tmp_path / "bad")
    with pytest.raises(ValueError, match="train_texts"):
        data.get_tokenizer(BPE, None, tmp_path / "bad")


def test_pretrained_hub_name_offline_fails_fast(tmp_path):
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="offline"):
        data.get_tokenizer({"kind": "pretrained", "name": "lc-test/no-such-tokenizer"}, None,
                           tmp_path / "tok")
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------------------------------------
# Blocks


def test_tokenize_blocks_loses_only_the_remainder(tokenizer, texts):
    stream = [t for s in texts[:80] for t in tokenizer.encode(s, add_special_tokens=False)]
    blocks = data.tokenize_blocks(texts[:80], tokenizer, 37, progress=False)
    n = len(stream) // 37
    assert blocks.shape == (n, 37) and blocks.dtype == np.int32
    assert blocks.ravel().tolist() == stream[:n * 37]  # in order, no separator token
    assert tokenizer.convert_tokens_to_ids(data.EOT) not in blocks


def test_tokenize_blocks_batches_agree(tokenizer, texts, monkeypatch):
    whole = data.tokenize_blocks(texts, tokenizer, 16, progress=False)
    monkeypatch.setattr(data, "_BATCH", 7)  # many small batches give the same stream
    assert np.array_equal(data.tokenize_blocks(texts, tokenizer, 16, progress=False), whole)


def test_tokenize_blocks_too_small(tokenizer):
    n = len(tokenizer.encode("tom had a ball.", add_special_tokens=False))
    with pytest.raises(ValueError, match=f"corpus has {n} tokens, fewer than one block of 500"):
        data.tokenize_blocks(["tom had a ball."], tokenizer, 500, progress=False)


def test_block_order():
    a = data.block_order(50, seed=1, epoch=2)
    assert a.dtype == np.int64 and sorted(a.tolist()) == list(range(50))
    assert np.array_equal(a, data.block_order(50, seed=1, epoch=2))
    assert np.array_equal(a, np.random.default_rng([1, 2]).permutation(50))
    assert not np.array_equal(a, data.block_order(50, seed=2, epoch=2))
    assert not np.array_equal(a, data.block_order(50, seed=1, epoch=3))
    with pytest.raises(ValueError):
        data.block_order(0, seed=0, epoch=0)


# ---------------------------------------------------------------------------------------------
# Prepared corpus


def _prepare(cache: Path, context_len: int = 32, **corpus):
    corpus = {"source": "generated", "max_train_stories": 200, "max_val_stories": 40, **corpus}
    return data.prepare_corpus(corpus=corpus, tokenizer=BPE, context_len=context_len,
                               cache_dir=cache, progress=False)


def _mtimes(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*")}


def test_prepare_corpus_builds_a_consistent_cache(tmp_path):
    pc = _prepare(tmp_path / "c")
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    train, val = pc.train_blocks(), pc.val_blocks()
    assert isinstance(train, np.memmap) and train.dtype == np.int32
    assert train.shape == (pc.n_train_blocks, 32) and val.shape == (pc.n_val_blocks, 32)
    assert pc.n_train_tokens == train.size == manifest["n_train_tokens"]
    assert pc.vocab_size == len(pc.tokenizer()) == 400 and int(train.max()) < pc.vocab_size
    assert manifest["train_blocks_sha256"] == sha256_array(np.asarray(train))
    assert manifest["val_blocks_sha256"] == sha256_array(np.asarray(val))
    assert manifest["tokenizer_sha256"] == tokenizer_sha256(pc.tokenizer())
    assert manifest["settings"]["corpus"]["max_train_stories"] == 200
    assert manifest["settings_sha256"] == sha256_json(manifest["settings"])
    texts = data.load_corpus("generated", "train", 200)  # independent re-tokenization
    assert manifest["train_text_sha256"] == sha256_texts(texts)
    assert manifest["val_text_sha256"] == sha256_texts(data.load_corpus("generated", "validation", 40))
    expected = data.tokenize_blocks(texts, pc.tokenizer(), 32, progress=False)
    assert np.array_equal(train, expected)
    assert not list(tmp_path.rglob("*.tmp"))
    assert [p.name for p in tmp_path.rglob(".*")] == [".c.lock"]  # the cache's lock, beside it


def test_prepare_corpus_reuses_then_rebuilds(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    first = _prepare(cache)
    before = _mtimes(cache)
    calls = []
    real = data.tokenize_blocks
    monkeypatch.setattr(data, "tokenize_blocks", lambda *a, **k: calls.append(1) or real(*a, **k))
    start = time.perf_counter()
    assert _prepare(cache) == first
    assert time.perf_counter() - start < 1 and not calls and _mtimes(cache) == before
    second = _prepare(cache, context_len=16)  # changed setting: rebuilt
    assert calls == [1, 1] and second.context_len == 16
    assert second.train_blocks().shape == (second.n_train_blocks, 16)
    third = _prepare(cache, context_len=16, max_train_stories=100)
    assert third.n_train_blocks < second.n_train_blocks


def test_replaced_text_rebuilds_the_cache(tmp_path):
    """Same settings, other text in train.txt: blocks are rebuilt, the manifest's hashes change."""
    src = tmp_path / "txt"
    _write_lines(src / "train.txt", synthetic.generate_corpus(100, seed=7))
    _write_lines(src / "validation.txt", synthetic.generate_corpus(30, seed=8))
    spec = {"source": "path", "path": str(src)}
    data.prepare_corpus(corpus=spec, tokenizer=BPE, context_len=24,
                        cache_dir=tmp_path / "c", progress=False)
    old = json.loads((tmp_path / "c" / "manifest.json").read_text())
    _write_lines(src / "train.txt", synthetic.generate_corpus(100, seed=9))  # replaced entirely
    second = data.prepare_corpus(corpus=spec, tokenizer=BPE, context_len=24,
                                 cache_dir=tmp_path / "c", progress=False)
    new = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert new["train_text_sha256"] != old["train_text_sha256"]
    assert new["train_blocks_sha256"] != old["train_blocks_sha256"]
    assert new["tokenizer_sha256"] != old["tokenizer_sha256"]  # the BPE is retrained too
    assert new["val_text_sha256"] == old["val_text_sha256"]
    texts = data.load_corpus(str(src), "train")
    assert np.array_equal(second.train_blocks(),
                          data.tokenize_blocks(texts, second.tokenizer(), 24, progress=False))


def test_binary_or_non_utf8_text_names_the_file(tmp_path):
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "train.txt").write_bytes("once upon a time\nsch\xf6n\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1/train.txt: not UTF-8 text .*0xf6.*UTF-8"):
        data.load_corpus(str(tmp_path / "latin1"), "train")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "train.txt").write_bytes(b"a story\nab\x00\x01cd\n")
    with pytest.raises(UserError, match=r"bin/train.txt:2: binary data"):
        data.load_corpus(str(tmp_path / "bin"), "train")
    (tmp_path / "bin" / "train.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UserError, match=r"train.jsonl: not UTF-8 text"):
        data.load_corpus(str(tmp_path / "bin" / "train.jsonl"), "train")


def test_prepare_corpus_path_form_and_bad_sections(tmp_path):
    _write_lines(tmp_path / "txt" / "train.txt", synthetic.generate_corpus(100, seed=7))
    _write_lines(tmp_path / "txt" / "validation.txt", synthetic.generate_corpus(30, seed=8))
    pc = data.prepare_corpus(corpus={"source": "path", "path": str(tmp_path / "txt")},
                             tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=24,
                             cache_dir=tmp_path / "c", progress=False)
    assert pc.vocab_size == 300 and pc.n_val_blocks > 0
    for corpus in [{"source": "generated", "max_stories": 3}, {"max_train_stories": 3},
                   {"source": "path"}, {"source": "generated", "path": "x"}]:
        with pytest.raises(ValueError, match="corpus"):
            _prepare_bad(tmp_path, corpus, 24)
    with pytest.raises(ValueError, match="context_len"):
        _prepare_bad(tmp_path, {"source": "generated"}, 1)


def _prepare_bad(tmp_path: Path, corpus: dict, context_len: int):
    return data.prepare_corpus(corpus=corpus, tokenizer=BPE, context_len=context_len,
                               cache_dir=tmp_path / "bad", progress=False)


def test_cli_prepare_corpus(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data.register_cli(parser.add_subparsers())
    args = parser.parse_args(["prepare-corpus", "--tokenizer", "bpe:300", "--context-len", "20",
                              "--max-train-stories", "60", "--max-val-stories", "20",
                              "--out", str(tmp_path / "c"), "--no-progress"])
    args.func(args)
    pc = data.PreparedCorpus.from_manifest(tmp_path / "c")
    assert pc.vocab_size == 300 and pc.context_len == 20
    assert f"{pc.n_train_blocks} train" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The real TinyStories sample


def test_real_tinystories_slice(tmp_path):
    if not SHARED_TINYSTORIES.is_dir():
        if os.environ.get("LC_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"LC_REQUIRE_SHARED_DATA=1 but {SHARED_TINYSTORIES} is missing")
        pytest.skip(reason=f"TinyStories sample not found at {SHARED_TINYSTORIES}")
    stories = data.load_corpus(str(SHARED_TINYSTORIES), "validation", max_stories=40)
    with open(SHARED_TINYSTORIES / "validation.txt", encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()][:40]
    assert stories == lines
    tok = data.train_bpe_tokenizer(stories, 320, tmp_path / "tok")
    blocks = data.tokenize_blocks(stories, tok, 64, progress=False)
    text = "".join(stories)  # stories concatenated with no separator
    assert text.startswith(tok.decode(blocks.ravel().tolist()))
