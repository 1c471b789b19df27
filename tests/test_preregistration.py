"""docs/preregistration.md equals the code: its machine-readable YAML block is compared, value by
value, with the constants the analyses use (registry, verdicts, claims, sensitivity) and with the
cpu profile; a changed constant on either side fails."""

from __future__ import annotations

import inspect
import math
import re
from fractions import Fraction
from typing import Any

import pytest
import yaml
from checkout import REPO_ROOT
from linguistic_collapse.core.profiles import Profile, load_profile
from linguistic_collapse.nc import registry
from linguistic_collapse.tables import claims, sensitivity, verdicts
from linguistic_collapse.tables.authors_facts import AUTHORS_BY_EPOCHS
from linguistic_collapse.tables.clusters import kish_n_eff

DOC = REPO_ROOT / "docs" / "preregistration.md"


def document_values(text: str) -> dict[str, Any]:
    """The one YAML block under "## Machine-readable values", fractions such as "1/3" as floats."""
    section = text.split("## Machine-readable values", 1)[1]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "docs/preregistration.md: expected exactly one ```yaml block of values"

    def numbers(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: numbers(x) for k, x in v.items()}
        if isinstance(v, list):
            return [numbers(x) for x in v]
        if isinstance(v, str) and re.fullmatch(r"\d+/\d+", v):
            return float(Fraction(v))
        return v

    return numbers(yaml.safe_load(blocks[0]))


def _grid_checkpoints(profile: Profile) -> list:
    return [ck for ck in profile.checkpoints() if ck.seed == profile.grid.seed]


def code_values(profile: Profile) -> dict[str, Any]:
    """The same keys as the document's block, read from the code and ``profile``."""
    g, a = profile.grid, profile.analysis
    grid_cks = _grid_checkpoints(profile)
    decays = sorted({v.weight_decay for v in g.variants})
    epochs = sorted({v.epochs for v in g.variants})
    by_statistic: dict[str, dict[str, str]] = {}
    for c in claims._claims():
        if c["measure"] is not None:
            by_statistic.setdefault(c["measure"], {})[c["statistic"]] = c["claimed"]
    plateau = inspect.signature(claims.plateau_mask).parameters
    r = g.replicas
    return {
        "grid": {"widths": list(g.widths), "depths": list(g.depths), "epochs": epochs,
                 "weight_decay": decays[0] if len(decays) == 1 else decays, "seed": g.seed,
                 "checkpoints": "final" if all(ck.checkpoint == ck.epochs for ck in grid_cks)
                 else sorted({ck.checkpoint for ck in grid_cks}),
                 "design_points": len({(ck.depth, ck.width, ck.epochs) for ck in grid_cks})},
        "replicas": {"depth": r.depth, "width": r.width, "epochs": r.epochs,
                     "weight_decay": r.weight_decay, "seeds": list(r.seeds)},
        "populations": {"primary": verdicts.PRIMARY,
                        "secondary": [p for p in claims.POPULATIONS if p != verdicts.PRIMARY][0]},
        "plateau_rule": {"min_gap": plateau["min_gap"].default,
                         "max_fraction": plateau["max_fraction"].default},
        "bands": {k: list(v) for k, v in registry.BANDS.items()},
        "claims": {m: {"band": registry.REGISTRY[m].claim, "direction": s.get("r", "none")}
                   for m, s in by_statistic.items()},
        "comparisons": [[c.better, c.worse] for c in registry.COMPARISONS],
        "level": verdicts.LEVEL,
        "n_bootstrap": a.n_bootstrap,
        "mc_edge_se": verdicts.MC_EDGE_SE,
        "equivalence": {"margin": verdicts.EQUIVALENCE_MARGIN, "level": verdicts.EQUIVALENCE_LEVEL,
                        "authors_epochs": sorted(set(epochs) & set(AUTHORS_BY_EPOCHS["nc1_cdnv"]))},
        "n_permutations": a.n_permutations,
        "analysis_seed": a.seed,
        "min_count": a.min_count,
        "scaling": {"measures": registry.figure_measures("fig1"), "alpha": verdicts.SCALING_ALPHA},
        "names_rule": dict(verdicts.NAMES_RULE),
        "pinv_rtols": list(registry.PINV_RTOLS),
        "sensitivity": {"runs": list(profile.sensitivity.runs), "stable_share": sensitivity.STABLE_SHARE},
        "dynamics_runs": list(profile.dynamics.runs),
    }


def mismatches(doc: Any, code: Any, where: str = "") -> list[str]:
    """Every key path where ``doc`` and ``code`` differ (numbers to 1e-12 relative)."""
    if isinstance(doc, dict) and isinstance(code, dict):
        out = [f"{where}{k}: missing in the code" for k in doc.keys() - code.keys()]
        out += [f"{where}{k}: missing in the document" for k in code.keys() - doc.keys()]
        for k in doc.keys() & code.keys():
            out += mismatches(doc[k], code[k], f"{where}{k}.")
        return out
    if isinstance(doc, list) and isinstance(code, (list, tuple)):
        if len(doc) != len(code):
            return [f"{where.rstrip('.')}: document {doc} != code {list(code)}"]
        return [m for i, (d, c) in enumerate(zip(doc, code, strict=True)) for m in mismatches(d, c, f"{where}{i}.")]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (doc, code))
    same = math.isclose(doc, code, rel_tol=1e-12, abs_tol=0) if numeric else doc == code
    return [] if same else [f"{where.rstrip('.')}: document {doc!r} != code {code!r}"]


def _special(doc: dict[str, Any], profile: Profile) -> tuple[dict[str, Any], list[str]]:
    """The values that are requirements rather than constants, checked and removed from ``doc``."""
    doc = dict(doc)
    pops = dict(doc.pop("populations"))
    need = pops.pop("min_n_eff")
    doc["populations"] = pops
    out = []
    designs = [f"{ck.depth}-{ck.width}-{ck.epochs}" for ck in _grid_checkpoints(profile)]
    if kish_n_eff(designs) < need:
        out.append(f"populations.min_n_eff: the grid's n_eff {kish_n_eff(designs):.1f} < {need}")
    for m in doc.pop("uniformity_vs_etf"):
        if m not in registry.REGISTRY:
            out.append(f"uniformity_vs_etf: {m} is not a registry measure")
    return doc, out


def check(text: str, profile: Profile) -> list[str]:
    doc, out = _special(document_values(text), profile)
    return out + mismatches(doc, code_values(profile))


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_document_equals_the_code_and_the_profile(text):
    assert check(text, load_profile("cpu")) == []


def test_document_is_a_preregistration_with_its_commit_order(text):
    assert "Pre-registration" in text.splitlines()[0]
    assert "precedes the commit of the results" in text
    assert "## 8. Exploratory" in text


def test_prose_quotes_the_same_numbers(text):
    """The sentences quote the constants too (a changed constant must change them)."""
    p = load_profile("cpu")
    assert f"B = {p.analysis.n_bootstrap:,}" in text
    assert f"m = **{p.analysis.n_permutations:,}**" in text
    assert f"margin **±{verdicts.EQUIVALENCE_MARGIN:.2f}**" in text
    assert f"**{verdicts.MC_EDGE_SE:g} Monte-Carlo standard errors**" in text
    assert f"**{len(p.sensitivity.runs)}** sensitivity models" in text
    assert f"**{len({(c.depth, c.width, c.epochs) for c in _grid_checkpoints(p)})} design points**" in text
    assert "≤ 1.0e-4" in text and 1 / (p.analysis.n_permutations + 1) < 1.0e-4 + 5e-9
    cut = [f"{r:.0e}".replace("e-0", "e-") for r in registry.PINV_RTOLS]  # 1e-10, 1e-6, 1e-3
    assert f"**{', '.join(cut[:-1])} and {cut[-1]}**" in text


def test_measure_uses_the_first_cut_off():
    from linguistic_collapse.nc import measure, reference

    assert measure.PINV_RTOL == reference.PINV_RTOL == registry.PINV_RTOLS[0]


def test_a_changed_code_constant_is_caught(text, monkeypatch):
    p = load_profile("cpu")
    monkeypatch.setattr(verdicts, "EQUIVALENCE_MARGIN", 0.2)
    monkeypatch.setattr(verdicts, "MC_EDGE_SE", 3.0)
    monkeypatch.setitem(registry.BANDS, "strong", (0.7, 1.0))
    monkeypatch.setattr(registry, "PINV_RTOLS", (1e-10, 1e-6))
    monkeypatch.setattr(sensitivity, "STABLE_SHARE", 0.2)
    found = "\n".join(check(text, p))
    for key in ("equivalence.margin", "mc_edge_se", "bands.strong.0", "pinv_rtols", "sensitivity.stable_share"):
        assert key in found


def test_a_changed_profile_or_document_is_caught(text):
    d = load_profile("cpu").as_dict()
    d["analysis"]["n_bootstrap"] = 1000
    d["grid"]["widths"] = [32, 64, 128]
    d["sensitivity"]["runs"], d["dynamics"]["runs"] = [], []  # they name the removed widths
    found = "\n".join(check(text, Profile.from_dict(d)))
    assert "n_bootstrap: document 10000 != code 1000" in found and "grid.widths" in found
    assert "populations.min_n_eff" in found and "sensitivity.runs" in found  # 18 design points are not enough
    edited = text.replace("  margin: 0.10\n", "  margin: 0.15\n").replace("  min_gap: 0.3\n", "  min_gap: 0.5\n")
    found = "\n".join(check(edited, load_profile("cpu")))
    assert "equivalence.margin" in found and "plateau_rule.min_gap" in found
