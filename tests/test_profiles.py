"""Profiles: every shipped profile validates and round-trips; bad profiles fail clearly."""

from __future__ import annotations

import copy

import pytest
import yaml

from lib.model import RunName
from lib.profiles import Profile, available_profiles, load_profile


@pytest.fixture(scope="module")
def smoke_dict() -> dict:
    return load_profile("smoke").as_dict()


@pytest.mark.parametrize("name", ["smoke", "cpu", "paper"])
def test_shipped_profiles_validate_and_round_trip(name):
    profile = load_profile(name)
    assert profile.name == name
    assert Profile.from_dict(profile.as_dict()) == profile
    assert Profile.from_dict(yaml.safe_load(yaml.safe_dump(profile.as_dict()))) == profile
    assert profile.section("training") == profile.as_dict()["training"]
    assert name in available_profiles()


def test_load_by_path_equals_load_by_name():
    assert load_profile("profiles/smoke.yaml") == load_profile("smoke")


def test_unknown_top_level_key_names_key_section_and_allowed(smoke_dict):
    bad = {**smoke_dict, "epochz": 3}
    with pytest.raises(ValueError, match=r"unknown key 'epochz' in section 'profile'.*allowed keys:.*grid"):
        Profile.from_dict(bad)


def test_unknown_nested_key_names_section(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    bad["training"]["learning_rate"] = 0.1
    with pytest.raises(ValueError, match=r"'learning_rate' in section 'training'.*lr"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["grid"]["variants"][0]["wd"] = 0.1
    with pytest.raises(ValueError, match=r"'wd' in section 'grid.variants\[0\]'.*weight_decay"):
        Profile.from_dict(bad)


def test_missing_key_and_bad_values(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    del bad["training"]["lr"]
    with pytest.raises(ValueError, match="missing key 'lr'"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["device"] = "tpu"
    with pytest.raises(ValueError, match="device"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["grid"]["variants"][1]["checkpoints"] = [3]
    with pytest.raises(ValueError, match="checkpoint 3 outside epochs 1..2"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["context_len"] = "long"
    with pytest.raises(ValueError, match="context_len must be int"):
        Profile.from_dict(bad)


def test_float_written_without_dot_is_accepted(smoke_dict):
    d = copy.deepcopy(smoke_dict)
    d["training"]["lr"] = "5e-5"  # PyYAML reads this as a string
    assert Profile.from_dict(d).training.lr == 5e-5


def test_unknown_profile_lists_available():
    with pytest.raises(FileNotFoundError, match=r"unknown profile 'nope'.*smoke"):
        load_profile("nope")


def test_width_not_divisible_into_heads(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    bad["model"]["n_head"] = 3
    with pytest.raises(ValueError, match="width 16 is not divisible into 3 attention heads"):
        Profile.from_dict(bad)


def test_smoke_runs_and_checkpoints():
    p = load_profile("smoke")
    runs, cks = p.runs(), p.checkpoints()
    assert len(runs) == 2 * 2 * 2 + 3 and len(set(runs)) == len(runs)
    assert len(cks) == 2 * 2 * (1 + 2) + 3
    assert RunName.parse("L2-d32-e2-wd0.1-s0-ck1") in cks
    assert all(ck.run in runs for ck in cks)
    assert p.checkpoints_of(RunName.parse("L1-d16-e2-wd0.1-s0")) == [
        RunName.parse("L1-d16-e2-wd0.1-s0-ck1"), RunName.parse("L1-d16-e2-wd0.1-s0-ck2")]


def test_replicas_deduplicate_with_grid(smoke_dict):
    d = copy.deepcopy(smoke_dict)
    d["grid"]["replicas"]["seeds"] = [0, 1]  # seed 0 is the grid's own L1-d16-e1-wd0.0005 run
    p = Profile.from_dict(d)
    assert len(p.runs()) == 8 + 1
    assert len(p.checkpoints()) == 12 + 1


def test_paper_population():
    p = load_profile("paper")
    runs, cks = p.runs(), p.checkpoints()
    assert len(runs) == 30 * 5 + 20
    assert len(cks) == 230  # 30 x 7 + 20
    seeds = {r.seed for r in runs if (r.depth, r.width, r.epochs, r.weight_decay) == (2, 768, 1, 5e-4)}
    assert seeds == set(range(21))
    assert p.context_len == 2048 and p.model.n_head == 16 and p.training.lr == 5e-5
    assert p.tokenizer.expected_vocab_size() == 50257
    assert p.batch_size(RunName(1, 64, 1, 0.1, 0)) == 16
    assert p.batch_size(RunName(2, 1024, 1, 0.1, 0)) == 8
    assert p.batch_size(RunName(12, 1024, 10, 0.1, 0)) == 4
    assert sum(ck.checkpoint == 6 for ck in cks) == 60


def test_cpu_profile_is_laptop_scale():
    p = load_profile("cpu")
    assert p.corpus.source == "path" and p.tokenizer.kind == "bpe"
    assert max(p.grid.widths) <= 128 and max(p.grid.depths) <= 4
    assert len(p.grid.replicas.seeds) == 20
    assert {v.weight_decay for v in p.grid.variants} == {0.1, 5e-4}


def test_unknown_section():
    with pytest.raises(ValueError, match="no section 'nope'"):
        load_profile("smoke").section("nope")
