"""ClassStats at the Hugging Face boundary: -100 labels skipped, other non-class labels refused."""

from __future__ import annotations

import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc import ClassStats

V, D = 6, 3


def _data(seed: int, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=torch.float64) + 2.0, torch.randint(0, V, (n,), generator=g)


def test_ignore_index_labels_are_skipped_in_both_passes():
    (x, y), (vx, vy) = _data(0), _data(1)
    W = torch.randn(V, D, generator=torch.Generator().manual_seed(2))
    ignored, vignored = y.clone(), vy.clone()
    ignored[::4], vignored[::3] = -100, -100
    got, want = ClassStats(V, D), ClassStats(V, D)
    got.add(x, ignored)
    want.add(x[ignored != -100], y[ignored != -100])
    got.add_validation(vx, vignored, W)
    want.add_validation(vx[vignored != -100], vy[vignored != -100], W)
    for key in want.tensors:
        assert torch.equal(got.tensors[key], want.tensors[key]), key
    assert got.tokens == want.tokens


def test_another_ignore_index_can_be_chosen():
    x, y = _data(3)
    y = y.clone()
    y[:5] = -1
    stats = ClassStats(V, D, ignore_index=-1)
    stats.add(x, y)
    assert int(stats.tensors["counts"].sum()) == len(y) - 5


@pytest.mark.parametrize("labels,match", [
    (torch.tensor([0, 1, -5, 2]), r"ClassStats\.add: label -5 is negative"),
    (torch.tensor([0.7, 2.9, 1.0, 0.0]), r"ClassStats\.add: labels must be integer .*0\.7"),
    (torch.tensor([True, False, True, False]), r"ClassStats\.add: labels must be integer .*bool.*True"),
])
def test_other_labels_are_refused_in_one_line_naming_the_value(labels, match):
    stats = ClassStats(V, D)
    with pytest.raises(UserError, match=match) as err:
        stats.add(torch.randn(4, D), labels)
    assert "\n" not in str(err.value)
    assert int(stats.tensors["counts"].sum()) == 0  # nothing added


def test_validation_labels_follow_the_same_rule():
    stats = ClassStats(V, D)
    stats.add(*_data(4))
    with pytest.raises(UserError, match=r"ClassStats\.add_validation: label -2 is negative"):
        stats.add_validation(torch.randn(3, D), torch.tensor([0, -2, 1]), torch.randn(V, D))
