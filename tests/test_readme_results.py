"""Every number the README's Results section quotes comes from runs/cpu/findings.md.

The notebooks record each reported number with its source table (linguistic_collapse.tables.findings); a rerun
that changes a number therefore fails here until the README says the new one.
"""

from __future__ import annotations

import re
from pathlib import Path

from linguistic_collapse.tables import findings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FINDINGS = ROOT / "runs" / "cpu" / "findings.md"
# Numbers that are names or settings of the study, not results: small counts (epochs, depths,
# figure and table numbers), the interval level and the profile's sizes stated in the text.
NOT_RESULTS = [str(i) for i in range(11)] + ["95", "90", "80", "100", "2,048", "10,000", "128",
                                             "32", "64", "0.1", "5e-4", "1e-3", "16", "20", "21",
                                             "230", "0.10"]  # the authors' pool; the margin


def results_section(text: str) -> str:
    """The README's "## Results" section without code, links' targets and images."""
    start = text.index("\n## Results")
    end = text.index("\n## ", start + 1)
    section = text[start:end]
    section = re.sub(r"```.*?```", " ", section, flags=re.S)  # code blocks
    section = re.sub(r"`[^`]*`", " ", section)  # code spans: file names, settings
    section = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", section)  # images
    return re.sub(r"\]\([^)]*\)", "]", section)  # link targets


def test_every_number_in_results_is_a_recorded_finding():
    quoted = results_section(README.read_text(encoding="utf-8"))
    missing = findings.missing_numbers(quoted, findings.values(FINDINGS), ignore=NOT_RESULTS)
    assert not missing, (f"README Results quotes numbers not in {FINDINGS.relative_to(ROOT)}: "
                         f"{sorted(set(missing))}; rerun the notebooks or update the README")


def test_the_check_finds_a_changed_number(tmp_path):
    path = tmp_path / "findings.md"
    f = findings.Findings(path, "04_correlate")
    f.add("NC1 R²", 0.83, "claims.csv")
    f.save()
    text = "\n## Results\nNC1 has R² 0.83 in 74 models.\n## Next\n"
    assert findings.missing_numbers(results_section(text), findings.values(path), NOT_RESULTS) == ["74"]
