"""linguistic_collapse.nc.registry: one entry per measure that linguistic_collapse.nc.measure computes; the metadata is coherent."""

from __future__ import annotations

import sys

import pytest
from linguistic_collapse.nc import registry
from linguistic_collapse.nc.registry import COMPARISONS, MEASURES, REGISTRY


def test_registry_matches_what_lib_measure_computes():
    from linguistic_collapse.nc.measure import measure_stats

    from tests.test_measure import make_stats

    computed = set(measure_stats(make_stats(9, 4))[0]) - {"num_classes"}
    assert computed == set(MEASURES), "a measure is computed but not registered, or vice versa"


def test_registry_matches_the_reference_definitions():
    from linguistic_collapse.nc import reference

    from tests.test_measure import make_stats

    assert set(reference.measures(make_stats(6, 3))) == set(MEASURES)


def test_metadata_is_coherent():
    for m in REGISTRY.values():
        assert m.transform in ("log", "linear") and m.collapse in ("lower", "higher")
        assert m.claim in ("", "strong", "clear", "some", "negligible")
        assert set(m.figures) <= set(registry.FIGURES)
        assert m.definition, m.name
        if m.claim:
            assert m.figures and m.authors_r2 is not None, m.name
    for c in COMPARISONS:
        assert REGISTRY[c.better].authors_r2 > REGISTRY[c.worse].authors_r2
    assert registry.figure_measures("fig1") == ["nc1_cdnv", "gnc2_logkernel_var", "unc3_duality_cv",
                                                "nc4_agreement"]
    assert registry.figure_measures("fig2") == ["nc2_norm_cv", "nc2_interference_cv", "gnc2_logkernel_var"]
    assert registry.axis_label("nc1_cdnv") == "CDNV (log scale)"
    assert registry.measure_transform("val_loss") == "linear"
    with pytest.raises(ValueError, match="unknown measure"):
        registry.get("nc9")
    assert registry.markdown_table().count("\n") == len(MEASURES) + 1


def test_table_modules_do_not_import_torch():
    import subprocess

    code = ("import sys; import linguistic_collapse.tables.analysis, linguistic_collapse.tables.results, linguistic_collapse.core.names, linguistic_collapse.nc.registry, linguistic_collapse.tables.claims, "
            "linguistic_collapse.tables.tokens, linguistic_collapse.tables.authors, linguistic_collapse.nc.reference; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_readme_measures_table_is_the_registry():
    """The reference's table of measures (docs/reference.md) is ``registry.markdown_table()``
    verbatim: a measure added to the registry without regenerating it fails here."""
    from checkout import REPO_ROOT

    assert registry.markdown_table() in (REPO_ROOT / "docs" / "reference.md").read_text(encoding="utf-8")


def test_one_analysis_scale_for_every_reader():
    """log10 for the log measures with NaN where not positive; analysis drops those rows."""
    import numpy as np
    import pandas as pd
    from linguistic_collapse.nc.registry import analysis_scale
    from linguistic_collapse.tables.analysis import transformed

    values = [100.0, 0.0, -1.0, float("nan")]
    np.testing.assert_array_equal(analysis_scale(values, "nc1_cdnv"), [2.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(analysis_scale(values, "nc2_norm_cv"), values)
    table = pd.DataFrame({"nc1_cdnv": values, "val_loss": [1.0, 2.0, 3.0, 4.0]})
    x, mask, n_dropped = transformed(table, "nc1_cdnv")
    assert x.tolist() == [2.0] and mask.tolist() == [True, False, False, False] and n_dropped == 2
