"""linguistic_collapse.tables.tokens: decoded token tables, first names, rankings over classes with enough samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.tables import tokens as tk

# ---------------------------------------------------------------------------------------------
# Tokens


class FakeTokenizer:
    """Byte-level-BPE-like decode: a leading 'Ġ' marks a space."""

    vocab = {0: "ĠLily", 1: "Ġthe", 2: "Tom", 3: ".", 4: "ĠTimmy", 5: "Ġlily", 6: "Ġmaxwell"}

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids).replace("Ġ", " ")


def per_class_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "token_id": [0, 1, 2, 3, 4, 5, 6],
        "count": [50, 400, 30, 300, 20, 5, 15],
        "sigma2": np.ones(7),
        "norm": np.ones(7),
        "duality": np.ones(7),
        "variability": [0.1, 2.0, 0.2, 1.5, 0.3, 0.05, 1.0],
        "interference": [0.01, 0.2, 0.02, 0.3, 0.03, 0.0, 0.1],
    })


def test_token_table_decodes_and_frequencies():
    tokens = tk.token_table(per_class_frame(), FakeTokenizer())
    assert list(tokens["token"]) == ["Lily", "the", "Tom", ".", "Timmy", "lily", "maxwell"]
    assert tokens["frequency"].sum() == pytest.approx(1.0)
    assert tokens["frequency"][1] == pytest.approx(400 / 820)
    with pytest.raises(ValueError, match="variability"):
        tk.token_table(per_class_frame().drop(columns="variability"), FakeTokenizer())


def test_first_name_table():
    tokens = tk.token_table(per_class_frame(), FakeTokenizer())
    table = tk.first_name_table(tokens, names=["lily", "tom", "timmy", "max"], min_count=1)
    names = table[table["kind"] == "first name"]
    assert list(names["token"]) == ["Lily", "Tom", "Timmy", "lily"]  # by count; 'maxwell' is not 'max'
    avg = table.set_index("token").loc["average token"]
    assert avg["variability"] == pytest.approx(np.mean([0.1, 2.0, 0.2, 1.5, 0.3, 0.05, 1.0]))
    assert avg["count"] == round(820 / 7)  # whole samples, as the names' counts
    assert str(table["token_id"].dtype) == str(table["count"].dtype) == "Int64"
    assert "." not in table.to_string(columns=["token_id", "count"])  # no 418.0 or 99.00
    weighted = table.set_index("token").loc["average token (count-weighted)"]
    w = np.array([50, 400, 30, 300, 20, 5, 15])
    assert weighted["interference"] == pytest.approx(np.dot(w, [0.01, 0.2, 0.02, 0.3, 0.03, 0.0, 0.1]) / w.sum())


def test_first_names_file():
    names = tk.load_first_names()
    assert 150 <= len(names) <= 300
    assert {"lily", "tom", "timmy", "sarah"} <= names
    assert all(n == n.lower() and n.isalpha() for n in names)


def test_most_and_least_collapsed():
    tokens = tk.token_table(per_class_frame(), FakeTokenizer())
    out = tk.most_and_least_collapsed(tokens, k=2, min_count=10)
    assert list(out["token"]) == ["Lily", "Tom", "the", "."]
    assert list(out["group"]) == ["most collapsed"] * 2 + ["least collapsed"] * 2


def test_nearest_classes_against_loop():
    rng = np.random.default_rng(0)
    counts = np.array([3, 0, 5, 2, 4, 1])
    sums = rng.standard_normal((6, 4)) * counts[:, None]
    out = tk.nearest_classes({"counts": counts, "sums": sums}, token_id=2, k=3)
    present = [c for c in range(6) if counts[c] > 0]
    mu = {c: sums[c] / counts[c] for c in present}
    mu_g = np.mean([mu[c] for c in present], axis=0)
    m = {c: mu[c] - mu_g for c in present}
    cos = {c: m[c] @ m[2] / (np.linalg.norm(m[c]) * np.linalg.norm(m[2])) for c in present if c != 2}
    best = sorted(cos, key=cos.get, reverse=True)[:3]
    assert list(out["token_id"]) == best
    np.testing.assert_allclose(out["cosine"], [cos[c] for c in best])
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)
    assert list(tk.nearest_classes(means, 2, k=3)["token_id"]) == best
    torch = pytest.importorskip("torch")  # stats files load as torch tensors
    stats = {"counts": torch.tensor(counts), "sums": torch.tensor(sums)}
    assert list(tk.nearest_classes(stats, 2, k=3)["token_id"]) == best
    with pytest.raises(ValueError, match="token 1 is not a class"):
        tk.nearest_classes({"counts": counts, "sums": sums}, token_id=1)


def test_rankings_and_names_use_only_classes_with_enough_samples():
    tokens = tk.token_table(per_class_frame(), FakeTokenizer())  # counts 50 400 30 300 20 5 15
    table = tk.first_name_table(tokens, names=["lily", "tom", "timmy"], min_count=20)
    assert list(table.loc[table["kind"] == "first name", "token"]) == ["Lily", "Tom", "Timmy"]
    avg = table.set_index("token").loc["average token"]
    assert avg["variability"] == pytest.approx(np.mean([0.1, 2.0, 0.2, 1.5, 0.3]))  # 5 kept classes
    ranked = tk.most_and_least_collapsed(tokens, k=1, min_count=20)
    assert list(ranked["token"]) == ["Lily", "the"]  # 'lily' (count 5, variability 0.05) excluded
    assert tk.exclusion_note(tokens, min_count=20).startswith("2 of 7 classes (29%) have fewer than 20")
    with pytest.raises(ValueError, match="min_count"):
        tk.eligible(tokens, min_count=0)


# ---------------------------------------------------------------------------------------------
# Names merged into distinct names, and the frequency-matched test


def test_word_table_merges_case_and_space_variants():
    tokens = tk.token_table(per_class_frame(), FakeTokenizer())
    words = tk.word_table(tokens, min_count=1).set_index("word")
    assert len(words) == 6 and words.loc["lily", "variants"] == 2  # "ĠLily" and "Ġlily"
    assert words.loc["lily", "count"] == 55 and words.loc["lily", "token_ids"] == "0 5"
    assert words.loc["lily", "variability"] == pytest.approx((50 * 0.1 + 5 * 0.05) / 55)
    assert words.loc["lily", "interference"] == pytest.approx((50 * 0.01 + 5 * 0.0) / 55)
    assert words.loc["lily", "frequency"] == pytest.approx(55 / 820)
    assert tk.word_table(tokens, min_count=10).set_index("word").loc["lily", "count"] == 50
    names = tk.distinct_names(tokens, names=["lily", "tom", "timmy"], min_count=1)
    assert list(names["word"]) == ["lily", "tom", "timmy"]


def test_log_frequency_bins():
    bins = tk.log_frequency_bins(pd.Series([1, 9, 10, 17, 18, 100]), per_decade=4)
    assert list(bins) == [0, 3, 4, 4, 5, 8]  # log10(17.78) = 1.25 starts bin 5


def _words(values: dict[str, tuple[int, float]]) -> pd.DataFrame:
    """A token frame from {token: (count, value)}, the value as both measures."""
    return pd.DataFrame({"token": list(values), "token_id": range(len(values)),
                         "count": [c for c, _ in values.values()],
                         "variability": [v for _, v in values.values()],
                         "interference": [-v for _, v in values.values()]})


def test_name_test_against_plain_counts_and_frequency_matching():
    values = {"ann": (100, 0.1), "bob": (110, 0.3), "cat": (105, 0.2), "dog": (120, 0.5),
              "sun": (115, 0.6), "the": (5000, 0.0)}  # "the" lies in another frequency bin
    out = tk.name_test(_words(values), names=["ann", "bob"], min_count=1).set_index("measure")
    row = out.loc["variability"]
    assert (row["names"], row["matched_others"], row["bins"]) == (2, 3, 1)
    names, others = [0.1, 0.3], [0.2, 0.5, 0.6]
    u_plain = sum((a > b) + 0.5 * (a == b) for a in names for b in others)  # 1 of 6 pairs
    assert row["u"] == u_plain == 1
    assert row["rank_biserial"] == pytest.approx(2 * 1 / 6 - 1)
    assert row["median_names"] == pytest.approx(0.2) and row["median_others"] == pytest.approx(0.5)
    assert row["p"] == pytest.approx(0.4, abs=1e-12)  # exact: 4 of the 10 splits have U <= 1 or >= 5
    assert out.loc["interference", "u"] == 6 - u_plain  # the measure negated


def test_record_findings_writes_names_and_test(tmp_path):
    from linguistic_collapse.tables.findings import Findings, values

    values_ = {"ann": (100, 0.1), "bob": (110, 0.3), "Bob": (20, 0.3), "cat": (105, 0.2),
               "dog": (120, 0.5), "sun": (115, 0.6)}
    tokens = _words(values_).assign(frequency=lambda t: t["count"] / t["count"].sum())
    names = tk.first_name_table(tokens, names=["ann", "bob"], min_count=1)
    distinct = tk.distinct_names(tokens, names=["ann", "bob"], min_count=1)
    test = tk.name_test(tokens, names=["ann", "bob"], min_count=1)
    f = Findings(tmp_path / "findings.md", "06_tokens")
    tk.record_findings(f, "L1-d8", tokens, names, distinct, test, 1)
    f.save()
    text = (tmp_path / "findings.md").read_text()
    assert "| first-name tokens | 3 |" in text and "| distinct first names (variants merged) | 2 |" in text
    assert "0.4" in values(tmp_path / "findings.md")  # the exact Mann-Whitney p


# ---------------------------------------------------------------------------------------------
# Names near the average token (pre-registered test)


def _names_frame(name_var: list[float], others: int = 40) -> pd.DataFrame:
    """8 name tokens (counts 800, 700, ..., 100, most frequent first) with variabilities
    ``name_var`` and ``others`` non-name tokens with variability 1 (log10 0) and count 50."""
    names = ["lily", "tom", "ben", "sue", "mia", "max", "sam", "amy"]
    return pd.DataFrame({
        "token": names + [f"w{i}" for i in range(others)],
        "token_id": np.arange(8 + others),
        "count": [800, 700, 600, 500, 400, 300, 200, 100] + [50] * others,
        "variability": name_var + [1.0] * others,
        "interference": [0.0] * (8 + others),
    })


def _mean_log(df: pd.DataFrame) -> float:
    return float(np.mean(np.log10(df["variability"])))


def test_names_near_average_holds_with_two_frequent_names():
    df = _names_frame([2.0, 2.0] + [1e-3] * 6)
    out = tk.names_near_average(df, names=df["token"].iloc[:8], min_count=20)
    assert out.attrs["threshold"] == pytest.approx(_mean_log(df))
    assert list(out.loc[out["near"], "token"]) == ["lily", "tom"]
    assert list(out["rank"]) == list(range(1, 9)) and list(out.loc[out["near"], "quartile"]) == ["top", "top"]
    assert out.attrs["n_near"] == 2 and out.attrs["verdict"] == "holds"
    assert out.attrs["near"] == "lily (rank 1), tom (rank 2)"


def test_names_near_average_fails_and_inconclusive():
    five = _names_frame([2.0] * 5 + [1e-3] * 3)
    assert tk.names_near_average(five, names=five["token"].iloc[:8], min_count=20).attrs["verdict"] == "fails"
    rare = _names_frame([2.0] + [1e-3] * 6 + [2.0])  # amy, the rarest name, comes near
    assert tk.names_near_average(rare, names=rare["token"].iloc[:8], min_count=20).attrs["verdict"] == "fails"
    three = _names_frame([2.0, 2.0, 2.0] + [1e-3] * 5)  # 3 near, all at or above the median
    out = tk.names_near_average(three, names=three["token"].iloc[:8], min_count=20)
    assert out.attrs["verdict"] == "inconclusive" and out.attrs["n_near"] == 3
    none = _names_frame([1e-3] * 8)
    assert tk.names_near_average(none, names=none["token"].iloc[:8], min_count=20).attrs["verdict"] == "holds"


def test_names_near_average_respects_min_count_and_interference(tmp_path):
    df = _names_frame([2.0, 2.0] + [1e-3] * 6)
    out = tk.names_near_average(df, names=df["token"].iloc[:8], min_count=250)  # 6 names, no others
    assert out.attrs["n_names"] == 6
    df["interference"] = np.r_[[0.5] * 8, [0.0] * 40]
    inter = tk.names_near_average(df, names=df["token"].iloc[:8], min_count=20, measure="interference")
    assert inter.attrs["threshold"] == pytest.approx(df["interference"].mean())
    assert inter.attrs["n_near"] == 8 and inter.attrs["verdict"] == "fails"
    from linguistic_collapse.tables.findings import Findings

    found = Findings(tmp_path / "f.md", "06_tokens")
    tk.record_near_findings(found, inter, exploratory=True)
    rec = {k: v for k, v, _ in found.rows}
    assert rec["names near the average token (interference, exploratory): verdict"] == "exploratory"
