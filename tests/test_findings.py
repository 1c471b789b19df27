"""linguistic_collapse.tables.findings: sections kept per notebook, numbers found as prose writes them."""

import pytest
from linguistic_collapse.tables import findings


def test_sections_are_kept_and_sorted(tmp_path):
    path = tmp_path / "findings.md"
    a = findings.Findings(path, "05_permutation")
    assert a.add("NC4 r", -0.391, "permutation.csv: nc4_agreement, r") == "-0.39"
    a.save()
    b = findings.Findings(path, "04_correlate")
    b.add("NC1 R² all", "0.83 [0.78, 0.89]", "claims.csv")
    b.add("models", 74, "results.csv: rows", fmt="{:d}")
    b.save()
    sections = findings.read_sections(path)
    assert list(sections) == ["04_correlate", "05_permutation"]
    assert findings.values(path) == {"-0.39", "0.83", "0.78", "0.89", "74"}
    b2 = findings.Findings(path, "04_correlate")  # a rerun replaces its own section only
    b2.add("models", 75, "results.csv: rows", fmt="{:d}")
    b2.save()
    assert findings.values(path) == {"-0.39", "75"}

def test_duplicate_key_refused(tmp_path):
    f = findings.Findings(tmp_path / "f.md", "x")
    f.add("k", 1.0, "t.csv")
    with pytest.raises(ValueError, match="twice"):
        f.add("k", 2.0, "t.csv")

def test_numbers_as_prose_writes_them():
    text = "r −0.39 [−0.70, +0.05] over 1,629 classes in L4-d128, 95 % and 3 epochs (p = 0.0005)."
    assert findings.numbers(text) == ["-0.39", "-0.70", "0.05", "1629", "95", "3", "0.0005"]
    assert findings.missing_numbers(text, {"-0.39", "-0.70", "0.05", "1629"}, ignore=["95", "3"]) == ["0.0005"]
    assert findings.format_value(float("nan")) == "n/a"
