"""The weight-decay power and unigram-plateau checks of 01_train, on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.tables import training_checks as tc
from linguistic_collapse.tables.results import LOSS


def test_lr_schedule_matches_transformers_linear_schedule():
    torch = pytest.importorskip("torch")
    from transformers import get_linear_schedule_with_warmup

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = get_linear_schedule_with_warmup(opt, 3, 20)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(tc.lr_schedule(1e-3, 20, 3), seen, rtol=1e-12, atol=0)


def test_decay_shrink_is_the_product_and_matches_adamw():
    torch = pytest.importorskip("torch")
    lrs = tc.lr_schedule(1e-2, 50)
    expected = math.prod(1 - lr * 0.3 for lr in lrs)
    assert tc.decay_shrink(lrs, 0.3) == pytest.approx(expected, rel=1e-12)
    # AdamW with zero gradients moves a weight by decay alone
    p = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.0, (50 - t) / 50))
    for _ in range(50):
        p.grad = torch.zeros_like(p)
        opt.step()
        sched.step()
    assert p.item() == pytest.approx(expected, rel=1e-12)
    assert tc.decay_shrink(tc.lr_schedule(1e-3, 10, kind="constant"), 0.1) == pytest.approx(
        (1 - 1e-4) ** 10, rel=1e-12)


def test_unigram_cross_entropy_of_a_known_distribution():
    # targets (all but the first token of each block): 0, 0, 1, 2 -> p = (1/2, 1/4, 1/4)
    blocks = np.array([[9, 0, 0], [9, 1, 2]])
    assert tc.unigram_cross_entropy(blocks) == pytest.approx(1.5 * math.log(2), rel=1e-12)
    assert tc.unigram_cross_entropy(np.array([[5, 3, 3, 3]])) == 0.0
    with pytest.raises(ValueError, match="targets"):
        tc.unigram_cross_entropy(np.zeros((2, 1), dtype=int))


def _models(losses, wds):
    n = len(losses)
    return pd.DataFrame({"run": [f"r{i}" for i in range(n)], "depth": 1, "width": 32,
                         "epochs": 1, "seed": 0, "checkpoint": 1, "weight_decay": wds,
                         LOSS: losses})


def test_weight_decay_pairs_match_on_everything_but_decay():
    t = _models([3.0, 3.1, 4.0], [0.0005, 0.1, 0.1])
    t.loc[2, "width"] = 64  # no partner at low decay
    pairs = tc.weight_decay_pairs(t, 0.0005, 0.1)
    assert len(pairs) == 1 and pairs["delta"].iloc[0] == pytest.approx(0.1)
    assert tc.weight_decay_pairs(t, 0.1, 0.1).empty  # one decay: no pairs, not self-pairs
    assert "1 of 1 pairs" in tc.describe_pairs(pairs, 0.0005, 0.1)


def test_plateau_summary_beside_the_unigram_entropy():
    losses = [3.0, 3.1, 3.2, 3.05, 3.15, 3.12, 5.8, 5.9]
    s = tc.plateau_summary(_models(losses, 0.1), unigram=6.0)
    assert s["plateau_models"] == 2 and s["plateau_threshold"] == 5.8
    assert s["plateau_max"] == 5.9 and s["best_other"] == 3.0
    rows = tc.plateau_against_unigram(_models(losses, 0.1), unigram=6.0)
    assert rows["plateau"].sum() == 2
    assert rows["above_unigram"].iloc[-1] == pytest.approx(-0.1)


def test_record_findings_writes_the_numbers_01_train_reports(tmp_path):
    from linguistic_collapse.tables.findings import Findings, values

    losses = [3.0, 3.1, 3.2, 3.05, 3.15, 3.12, 5.8, 5.9]
    models = pd.concat([_models(losses, 0.0005), _models([x + 0.004 for x in losses], 0.1)],
                       ignore_index=True).assign(run=lambda t: t.index.astype(str))
    models["width"] = [32, 64, 128, 256, 512, 1024, 2048, 4096] * 2  # twins share the spec
    pairs = tc.weight_decay_pairs(models, 0.0005, 0.1)
    shrink = pd.DataFrame({"epochs": [1], "weight_decay": [0.1], "shrink_percent": [1.08]})
    f = Findings(tmp_path / "findings.md", "01_train")
    tc.record_findings(f, 6.0, tc.plateau_summary(models, 6.0), shrink, pairs, 0.1)
    f.save()
    found = values(tmp_path / "findings.md")
    assert {"6.000", "1.1", "8", "0.004"} <= found  # unigram, shrink, pairs (8 of 8), largest gap
    assert len(pairs) == 8 and (pairs["delta"] > 0).all()
