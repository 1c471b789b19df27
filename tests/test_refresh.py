"""linguistic_collapse.pipeline.refresh: metrics are reused only when measured from the current stats file with
the current measure definitions (``MEASURE_VERSION``)."""

from __future__ import annotations

from linguistic_collapse.core.paths import atomic_write_json, read_json
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.measure import MEASURE_VERSION, measure_stats_file
from linguistic_collapse.pipeline.refresh import is_measured, measure_if_stale
from stats_helpers import random_stats

META = {"model": "m", "vocab_size": "8", "width": "4"}


def test_metrics_of_another_measure_version_are_measured_again(tmp_path):
    stats = sf.write_stats(tmp_path / "stats.safetensors", random_stats(), META)
    metrics, calls = tmp_path / "metrics.json", []

    def measure(path):
        calls.append(path)
        return {"nc1_cdnv": 1.0}

    first = measure_if_stale(stats, metrics, measure)
    assert first["measure_version"] == MEASURE_VERSION and is_measured(metrics, stats)
    assert measure_if_stale(stats, metrics, measure) == first and len(calls) == 1  # reused
    for old in ({**first, "measure_version": MEASURE_VERSION - 1},
                {k: v for k, v in first.items() if k != "measure_version"}):
        atomic_write_json(metrics, old)
        assert not is_measured(metrics, stats)
        measure_if_stale(stats, metrics, measure)
        assert read_json(metrics)["measure_version"] == MEASURE_VERSION
    assert len(calls) == 3


def test_a_measured_stats_file_records_the_measure_version(tmp_path):
    stats = sf.write_stats(tmp_path / "stats.safetensors", random_stats(), META)
    assert measure_stats_file(stats, progress=False)[0]["measure_version"] == MEASURE_VERSION
