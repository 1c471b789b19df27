"""Profiles: every shipped profile validates and round-trips; bad profiles fail clearly."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import linguistic_collapse
import pytest
import yaml
from checkout import PROFILES_DIR
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.profile_sections import AnalysisConfig
from linguistic_collapse.core.profiles import Profile, available_profiles, load_profile


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
    with pytest.raises(UserError, match=r"^profile: unknown key 'epochz'; allowed keys:.*grid"):
        Profile.from_dict(bad)


def test_unknown_nested_key_names_section(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    bad["training"]["learning_rate"] = 0.1
    with pytest.raises(UserError, match=r"training: unknown key 'learning_rate'; allowed keys: lr,"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["grid"]["variants"][0]["wd"] = 0.1
    with pytest.raises(UserError, match=r"grid.variants\[0\]: unknown key 'wd'.*weight_decay"):
        Profile.from_dict(bad)


def test_missing_key_and_bad_values(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    del bad["training"]["lr"]
    with pytest.raises(UserError, match=r"training.lr: missing key"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["device"] = "tpu"
    with pytest.raises(UserError, match=r"device: Input should be 'auto', 'cpu' or 'cuda' \(got 'tpu'\)"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["grid"]["variants"][1]["checkpoints"] = [3]
    with pytest.raises(UserError, match=r"grid.variants\[1\]: checkpoint 3 outside epochs 1..2"):
        Profile.from_dict(bad)
    bad = copy.deepcopy(smoke_dict)
    bad["context_len"] = "long"
    with pytest.raises(UserError, match=r"context_len: Input should be a valid integer.*'long'"):
        Profile.from_dict(bad)


def test_float_written_without_dot_is_accepted(tmp_path):
    text = (PROFILES_DIR / "smoke.yaml").read_text().replace("lr: 1.0e-3", "lr: 5e-5")
    assert "lr: 5e-5" in text  # YAML 1.1 would read this as a string; the loader reads 1.2
    (tmp_path / "p.yaml").write_text(text)
    assert load_profile(tmp_path / "p.yaml").training.lr == 5e-5


def test_unknown_profile_lists_available():
    with pytest.raises(UserError, match=r"unknown profile 'nope'.*smoke"):
        load_profile("nope")


def test_width_not_divisible_into_heads(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    bad["model"]["n_head"] = 3
    with pytest.raises(UserError, match="width 16 is not divisible into 3 attention heads"):
        Profile.from_dict(bad)


def test_smoke_runs_and_checkpoints():
    p = load_profile("smoke")
    runs, cks = p.runs(), p.checkpoints()
    assert len(runs) == 2 * 2 * 2 + 3 and len(set(runs)) == len(runs)
    assert len(cks) == 2 * 2 * (1 + 2) + 3
    assert ModelName.parse("L2-d32-e2-wd0.1-s0-ck1") in cks
    assert all(ck.run in runs for ck in cks)
    assert p.checkpoints_of(ModelName.parse("L1-d16-e2-wd0.1-s0")) == [
        ModelName.parse("L1-d16-e2-wd0.1-s0-ck1"), ModelName.parse("L1-d16-e2-wd0.1-s0-ck2")]


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
    assert p.batch_size(ModelName(1, 64, 1, 0.1, 0)) == 16
    assert p.batch_size(ModelName(2, 1024, 1, 0.1, 0)) == 8
    assert p.batch_size(ModelName(12, 1024, 10, 0.1, 0)) == 4
    assert sum(ck.checkpoint == 6 for ck in cks) == 60


def test_cpu_profile_is_laptop_scale():
    p = load_profile("cpu")
    assert p.corpus.source == "path" and p.tokenizer.kind == "bpe"
    assert max(p.grid.widths) <= 128 and max(p.grid.depths) <= 4
    assert len(p.grid.replicas.seeds) == 20
    assert {v.weight_decay for v in p.grid.variants} == {5e-4}  # no weight-decay twins (preregistration)


def test_cpu_grid_has_one_model_per_design_point():
    """docs/preregistration.md: >= 40 design points, one final checkpoint each, so Kish's n_eff of
    the grid's models is the number of design points (>= 35); the replica architecture is in the grid."""
    from linguistic_collapse.tables.clusters import kish_n_eff

    p = load_profile("cpu")
    grid = [ck for ck in p.checkpoints() if ck.seed == p.grid.seed]
    assert all(ck.checkpoint == ck.epochs for ck in grid)
    designs = [(ck.depth, ck.width, ck.epochs) for ck in grid]
    assert len(set(designs)) == len(designs) >= 40 and kish_n_eff([str(d) for d in designs]) >= 35
    r = p.grid.replicas
    assert (r.depth, r.width, r.epochs) in designs and p.grid.seed not in r.seeds
    sens = p.sensitivity.checkpoints()
    assert len({ck.depth for ck in sens}) > 1 and len({ck.width for ck in sens}) > 1
    assert len({ck.epochs for ck in sens}) > 1


def test_unknown_section():
    with pytest.raises(UserError, match="no section 'nope'"):
        load_profile("smoke").section("nope")


def _write_profile(tmp_path, data: dict):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("where, value, message", [
    (("grid", "seed"), -1, r"grid.seed: Input should be greater than or equal to 0 \(got -1\)"),
    (("grid", "replicas", "seeds"), [1, -2], r"grid.replicas.seeds\[1\]: .*greater than or equal to 0"),
    (("model", "init_seed"), -1, r"model.init_seed: .*greater than or equal to 0"),
    (("training", "lr"), float("nan"), r"training.lr: Input should be a finite number"),
    (("training", "adam_eps"), float("inf"), r"training.adam_eps: Input should be a finite number"),
    (("cluster", "utilization"), float("nan"), r"cluster.utilization: .*finite number"),
    (("sensitivity", "fractions"), [0.5, 1.5], r"sensitivity.fractions\[1\]: .*less than or equal to 1"),
    (("sensitivity", "draws"), 0, r"sensitivity.draws: .*greater than 0"),
])
def test_bad_values_are_refused_naming_file_and_key(smoke_dict, tmp_path, where, value, message):
    """Refused when the profile is loaded: before any run folder exists."""
    bad = copy.deepcopy(smoke_dict)
    section = bad
    for key in where[:-1]:
        section = section[key]
    section[where[-1]] = value
    path = _write_profile(tmp_path, bad)
    with pytest.raises(UserError, match=f"^{path}: {message}"):
        load_profile(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntraining:\n  lr: [1e-3\n  batch_size: 8\n")
    with pytest.raises(UserError, match=rf"^{path}:4:\d+: YAML syntax error"):
        load_profile(path)
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(UserError, match="not UTF-8"):
        load_profile(path)
    path.write_text("- a list\n")
    with pytest.raises(UserError, match="must be a YAML mapping"):
        load_profile(path)


def test_new_keys_and_their_defaults(smoke_dict):
    cpu = load_profile("cpu")
    assert cpu.collect.max_train_blocks is None and cpu.analysis.min_count == 20
    assert cpu.sensitivity.fractions == (0.125, 0.25, 0.5, 1.0)
    assert all(load_profile(n).sensitivity.draws == 3 for n in ("smoke", "cpu", "paper"))
    assert list(cpu.sensitivity.draws_of(0.5)) == [0, 1, 2] and list(cpu.sensitivity.draws_of(1.0)) == [0]
    assert len(cpu.sensitivity.runs) == 6
    assert set(cpu.sensitivity.checkpoints()) <= set(cpu.checkpoints())
    assert 1 <= len(load_profile("smoke").sensitivity.runs) <= 2
    d = copy.deepcopy(smoke_dict)
    del d["sensitivity"]
    p = Profile.from_dict(d)
    assert p.sensitivity.runs == ()
    d["sensitivity"] = {"runs": ["L9-d16-e1-wd0.0005-s0-ck1"]}
    with pytest.raises(UserError, match="is not a measured checkpoint of this profile"):
        Profile.from_dict(d)


def test_sections_are_typed_and_validated_once():
    """linguistic_collapse.lm.data takes the profile's sections as they are; a bad mapping fails the same way."""
    from linguistic_collapse.lm.data import prepare_corpus

    with pytest.raises(UserError, match=r"^corpus: unknown key 'max_stories'"):
        prepare_corpus(corpus={"source": "generated", "max_stories": 3},
                       tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=8,
                       cache_dir="/nonexistent")


# ---------------------------------------------------------------------------------------------
# The profile is the only default: analysis values are required, and no code default shadows them

LIB = Path(linguistic_collapse.__file__).resolve().parent
# parameters that carry an ``analysis`` value wherever they appear in lib (the authors' files are
# analysed with their own settings, not a profile's: ``tables/authors_stats.py`` is not scanned)
PROFILE_PARAMETERS = {"min_count": "min_count", "n_bootstrap": "n_bootstrap",
                      "n_permutations": "n_permutations"}
# ``seed`` is a common name (a run's shuffling seed, a subsample's): checked only where it is the analysis seed
NOT_A_PROFILE = {"tables/authors_stats.py"}
# (file, function, parameter) that take a profile value under another name
PROFILE_ARGUMENTS = {("tables/analysis.py", "correlate", "seed"): "seed",
                     ("tables/analysis.py", "permutation_test", "seed"): "seed",
                     ("tables/analysis.py", "table1", "seed"): "seed",
                     ("tables/robustness.py", "min_count_table", "seed"): "seed",
                     ("tables/analysis.py", "permutation_test", "alpha"): "permutation_alpha",
                     ("tables/analysis.py", "table1", "alpha"): "permutation_alpha",
                     ("tables/replicas.py", "record_findings", "alpha"): "permutation_alpha",
                     ("tables/tokens.py", "most_and_least_collapsed", "k"): "extreme_tokens",
                     ("figures/table1.py", "table1_figure", "alpha"): "permutation_alpha",
                     ("tables/sample_sizes.py", "class_count_thresholds", "thresholds"): "count_thresholds",
                     ("figures/class_counts.py", "class_count_figure", "thresholds"): "count_thresholds"}


def _parameter_defaults(path: Path) -> list[tuple[str, str, int]]:
    """(function, parameter, line) of every parameter with a default in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = [*a.posonlyargs, *a.args]
            with_default = positional[len(positional) - len(a.defaults):] if a.defaults else []
            with_default += [arg for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
            out += [(node.name, arg.arg, node.lineno) for arg in with_default]
    return out


def test_no_code_default_shadows_an_analysis_value():
    """A function that takes an ``analysis`` value has no default for it: a call that forgets
    it fails instead of silently using the code's number when the profile says another."""
    assert set(PROFILE_PARAMETERS.values()) | set(PROFILE_ARGUMENTS.values()) <= set(AnalysisConfig.model_fields)
    shadows = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        for function, parameter, line in _parameter_defaults(path):
            key = PROFILE_ARGUMENTS.get((rel, function, parameter)) or (
                PROFILE_PARAMETERS.get(parameter) if rel not in NOT_A_PROFILE else None)
            if key:
                shadows.append(f"{rel}:{line} {function}({parameter}=...) shadows analysis.{key}")
    assert not shadows, "take these from the profile (no default):\n" + "\n".join(shadows)
    sources = {rel: (LIB / rel).read_text(encoding="utf-8") for rel, _, _ in PROFILE_ARGUMENTS}
    missing = [f"{rel} {fn}({p})" for rel, fn, p in PROFILE_ARGUMENTS if f"def {fn}(" not in sources[rel]]
    assert not missing, f"PROFILE_ARGUMENTS names functions that no longer exist: {missing}"


def test_the_checker_finds_a_shadowing_default(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f(t, n_bootstrap=1000, *, min_count=20, seed=0):\n    pass\n"
                    "def g(t, *, min_count):\n    pass\n")
    assert _parameter_defaults(path) == [("f", "n_bootstrap", 1), ("f", "min_count", 1), ("f", "seed", 1)]


@pytest.mark.parametrize("key", list(AnalysisConfig.model_fields))
def test_a_profile_missing_an_analysis_value_fails_in_one_line(smoke_dict, tmp_path, key):
    """Every ``analysis`` key is required: a profile without one fails when it is loaded, in one
    line naming the file and the key (no code default stands in for it)."""
    for name in ("smoke", "cpu", "paper"):  # the shipped profiles set it
        assert key in yaml.safe_load((PROFILES_DIR / f"{name}.yaml").read_text(encoding="utf-8"))["analysis"]
    bad = copy.deepcopy(smoke_dict)
    del bad["analysis"][key]
    path = _write_profile(tmp_path, bad)
    with pytest.raises(UserError, match=rf"^{path}: analysis\.{key}: missing key \(required\)$") as err:
        load_profile(path)
    assert "\n" not in str(err.value)


def test_a_profile_without_an_analysis_section_fails(smoke_dict):
    bad = copy.deepcopy(smoke_dict)
    del bad["analysis"]
    with pytest.raises(UserError, match=r"^profile: analysis: missing key \(required\)$"):
        Profile.from_dict(bad)
