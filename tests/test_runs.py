"""linguistic_collapse.core.names: run names parse back, and impossible checkpoints are refused."""

from __future__ import annotations

import pytest
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName, largest


def test_round_trip():
    for name in ("L2-d64-e10-wd0.0005-s0-ck6", "L1-d32-e1-wd0.1-s3"):
        assert str(ModelName.parse(name)) == name


@pytest.mark.parametrize("name", ["L1-d32-e3-wd0.1-s0-ck4", "L1-d32-e3-wd0.1-s0-ck0"])
def test_checkpoint_outside_the_run_is_refused(name):
    with pytest.raises(UserError, match=r"checkpoints are 1\.\.3"):
        ModelName.parse(name)


def test_largest_is_the_widest_deepest_last_checkpoint():
    names = [ModelName.parse(n) for n in ("L1-d64-e3-wd0.1-s0-ck3", "L2-d64-e3-wd0.1-s0-ck2",
                                        "L2-d64-e3-wd0.1-s1-ck3", "L2-d64-e3-wd0.1-s0-ck3")]
    assert str(largest(names)) == "L2-d64-e3-wd0.1-s0-ck3"
