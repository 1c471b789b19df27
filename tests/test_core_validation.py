"""ClassStats pass 2 and its inputs: W of any floating dtype copied once, a changed W refused,
chunk >= 1, NC4 before pass 2 in one line, finite 16-bit features accepted."""

from __future__ import annotations

import math

import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc import ClassStats, nc4_measure
from linguistic_collapse.nc.accumulate import check_finite

V, D = 8, 4


def _filled(seed: int = 0) -> ClassStats:
    g = torch.Generator().manual_seed(seed)
    stats = ClassStats(V, D)
    for _ in range(3):
        stats.add(torch.randn(50, D, generator=g) + 1.0, torch.randint(0, V, (50,), generator=g))
    return stats


def _val(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(40, D, generator=g) + 1.0, torch.randint(0, V, (40,), generator=g)


def test_a_bf16_classifier_is_measured_as_its_float64_copy():
    W = torch.randn(V, D, generator=torch.Generator().manual_seed(3)).bfloat16()
    low, wide = _filled(), _filled()
    low.add_validation(*_val(), W)
    wide.add_validation(*_val(), W.double())
    assert low.W.dtype == torch.float64
    got, want = low.measures(), wide.measures()  # main: "stats: lm_head is bfloat16"
    assert got == want and math.isfinite(got["nc3_duality_mean"])


def test_a_classifier_changed_in_place_between_calls_is_refused():
    W = torch.randn(V, D, generator=torch.Generator().manual_seed(4))
    stats = _filled()
    stats.add_validation(*_val(1), W)
    before = stats.W.clone()
    W.add_(0.5)  # training goes on: the caller's tensor changes in place
    with pytest.raises(UserError, match=r"another classifier W.*changed in place"):
        stats.add_validation(*_val(2), W)
    assert torch.equal(stats.W, before)  # the copy measured is the one pass 2 used


@pytest.mark.parametrize("chunk", [0, -1, 2.5])
def test_chunk_must_be_at_least_one(chunk):
    stats = _filled()
    with pytest.raises(UserError, match=r"add_validation's chunk must be an integer >= 1"):
        stats.add_validation(*_val(), torch.randn(V, D), chunk=chunk)
    assert "val_counts" not in stats.tensors


def test_nc4_before_pass_2_is_one_line_naming_add_validation():
    stats = _filled()
    with pytest.raises(UserError, match=r"ClassStats\.add_validation") as err:
        nc4_measure(stats.tensors.get("val_counts"), stats.tensors.get("val_agree"))
    assert "\n" not in str(err.value)


def test_finite_fp16_features_are_not_called_nan_or_inf():
    big = torch.full((64, D), 60000.0, dtype=torch.float16)  # finite; their fp16 sum overflows
    check_finite(big)
    check_finite(big.bfloat16())
    with pytest.raises(UserError, match="NaN or inf"):
        check_finite(torch.tensor([[1.0, math.inf]], dtype=torch.float16))
    stats = ClassStats(2, D)
    stats.add(big, torch.arange(64) % 2)
    assert torch.equal(stats.means(), torch.full((2, D), 60000.0, dtype=torch.float64))


def test_error_messages_name_the_classstats_method_not_a_pipeline_stage():
    stats = _filled()
    messages = []
    for call in (lambda: stats.measures(which=["nc4_agreement"]),
                 lambda: stats.measures(which=["nc3_duality_mean"]),
                 lambda: ClassStats(V, D).add_validation(*_val(), torch.randn(V, D))):
        with pytest.raises(UserError) as err:
            call()
        messages.append(str(err.value))
    assert all("ClassStats." in m and "stages" not in m for m in messages), messages
