"""Sample-size sensitivity tables (lib.tables.sensitivity) from files laid out as the pipeline writes
them; the collection itself is tested end to end in tests/test_pipeline.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file

from lib.core.errors import UserError
from lib.core.paths import Layout, atomic_write_json
from lib.lm.runs import RunName
from lib.nc.registry import MEASURES
from lib.tables.sensitivity import sensitivity_figure, sensitivity_table, stability

FRACTIONS = (0.25, 0.5, 1.0)


def _profile(tmp_path, cks):
    sens = SimpleNamespace(checkpoints=lambda: cks, fractions=FRACTIONS)
    return SimpleNamespace(out_path=tmp_path, sensitivity=sens)


def _write(tmp_path, ck, fraction, counts, value):
    layout = Layout(tmp_path)
    stats = layout.stats(ck, fraction)
    stats.parent.mkdir(parents=True, exist_ok=True)
    save_file({"counts": counts}, str(stats), metadata={"pass1_tokens": str(int(counts.sum()))})
    atomic_write_json(layout.metrics(ck, fraction), {m: value for m in MEASURES})


def test_table_counts_and_stability(tmp_path):
    ck = RunName.parse("L1-d32-e1-wd0.0005-s0-ck1")
    rng = np.random.default_rng(0)
    values = {0.25: 2.0, 0.5: 1.05, 1.0: 1.0}  # halving moves every measure by 5 %
    all_counts = {}
    for f in FRACTIONS:
        counts = rng.integers(0, 4, 50).astype(np.int64)  # (50,) some classes unseen
        all_counts[f] = counts
        _write(tmp_path, ck, f, counts, values[f])
    table = sensitivity_table(_profile(tmp_path, [ck]))
    assert list(table["fraction"]) == list(FRACTIONS)
    for row in table.to_dict("records"):
        seen = all_counts[row["fraction"]][all_counts[row["fraction"]] > 0]
        assert row["num_classes"] == len(seen)
        assert row["median_class_count"] == np.median(seen)
        assert row["frac_singletons"] == pytest.approx(np.mean(seen == 1))
        assert row["train_tokens"] == seen.sum()
    # fraction 1 is the main statistics, not a second collection
    assert Layout(tmp_path).stats(ck, 1.0) == Layout(tmp_path).stats(ck)
    summary = stability(table).set_index("measure")
    assert summary.loc["nc1_cdnv", "max_change_smallest"] == pytest.approx(1.0)
    assert summary.loc["nc1_cdnv", "max_change_half"] == pytest.approx(0.05)
    assert summary["stable"].all() and (summary["models"] == 1).all()
    _write(tmp_path, ck, 1.0, all_counts[1.0], 0.0)  # a measure that is 0 on all (NC4 of a tiny model)
    zero = stability(sensitivity_table(_profile(tmp_path, [ck]))).set_index("measure")
    assert zero.loc["nc4_agreement", "models"] == 0 and not zero.loc["nc4_agreement", "stable"]
    sensitivity_figure(table, MEASURES[:2], ncols=2)


def test_missing_files_name_the_fix(tmp_path):
    ck = RunName.parse("L1-d32-e1-wd0.0005-s0-ck1")
    with pytest.raises(UserError, match="sensitivity_all"):
        sensitivity_table(_profile(tmp_path, [ck]))
