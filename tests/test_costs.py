"""linguistic_collapse.pipeline.costs.cpu_seconds: the CPU wall-time estimate of each stage, checked
against plain token / throughput arithmetic on one-run profiles of the cpu profile."""

from __future__ import annotations

import pytest
from linguistic_collapse.core.profiles import Profile, load_profile
from linguistic_collapse.pipeline import costs


def one_run(tmp_path, width: int, depth: int = 1, epochs: int = 1, **sections) -> Profile:
    d = load_profile("cpu").as_dict()
    d["out_dir"] = str(tmp_path / "none")  # no prepared corpus: the profile's token estimates
    d["grid"].update(widths=[width], depths=[depth], variants=[{"epochs": epochs, "weight_decay": 5e-4}],
                     replicas=None)
    d["sensitivity"] = sections.get("sensitivity", {"runs": []})
    d["dynamics"] = sections.get("dynamics", {"runs": []})
    return Profile.from_dict(d)


def test_fit_reproduces_the_measured_throughputs():
    t_train = costs._seconds_per_token(costs.CPU_TRAIN_TOKENS_PER_S)
    for (L, d), tps in costs.CPU_TRAIN_TOKENS_PER_S.items():  # 21 measurements, 3 parameters
        assert t_train(L, d) * tps == pytest.approx(1.0, rel=0.06)
    t_collect = costs._seconds_per_token(costs.CPU_COLLECT_TOKENS_PER_S)
    for (L, d), tps in costs.CPU_COLLECT_TOKENS_PER_S.items():  # likewise
        assert t_collect(L, d) * tps == pytest.approx(1.0, rel=0.09)
    assert t_train(2, 96) < t_train(3, 96) < t_train(3, 128)  # deeper and wider cost more


def test_stages_equal_tokens_over_throughput(tmp_path):
    run = "L1-d32-e3-wd0.0005-s0"
    p = one_run(tmp_path, 32, epochs=3,
                sensitivity={"runs": [f"{run}-ck3"], "fractions": [0.25, 0.5, 1.0], "draws": 2},
                dynamics={"runs": [run], "points_per_epoch": 4, "max_train_blocks": 100})
    train, val = p.cluster.train_tokens_estimate, p.cluster.val_tokens_estimate
    est = costs.cpu_seconds(p)
    collect = 1 / costs._seconds_per_token(costs.CPU_COLLECT_TOKENS_PER_S)(1, 32)
    train_tps = 1 / costs._seconds_per_token(costs.CPU_TRAIN_TOKENS_PER_S)(1, 32)
    assert collect == pytest.approx(costs.CPU_COLLECT_TOKENS_PER_S[1, 32], rel=0.09)  # a measured point
    assert est["collection"] == pytest.approx((train + val) / collect, rel=1e-9)
    assert est["sensitivity"] == pytest.approx(2 * 0.75 * train / collect, rel=1e-9)
    snapshots = 4 * 3 + 1
    # the grid trains the dynamics run and takes its snapshots (one validation pass each): the
    # dynamics stage only collects them
    assert est["training"] == pytest.approx((3 * (train + val / 3) + snapshots * val / 3) / train_tps,
                                            rel=1e-9)
    assert est["dynamics"] == pytest.approx(snapshots * (100 * 128 + val) / collect, rel=1e-9)


def test_dry_run_cli_prints_the_cpu_estimate(capsys):
    from linguistic_collapse.pipeline.grid import _cli_grid

    class Args:
        profile, dry_run = "cpu", True

    assert _cli_grid(Args()) == 0
    assert "2 quiet CPU cores (estimate from measured throughputs): training" in capsys.readouterr().out
