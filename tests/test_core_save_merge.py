"""ClassStats.save writes only a new file or a stats file (the CLI's --out rule); merge refuses
statistics of another model."""

from __future__ import annotations

import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc import ClassStats
from safetensors.torch import save_file

V, D = 6, 3


def _filled(seed: int) -> ClassStats:
    g = torch.Generator().manual_seed(seed)
    stats = ClassStats(V, D)
    stats.add(torch.randn(40, D, generator=g), torch.randint(0, V, (40,), generator=g))
    return stats


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_save_leaves_a_models_files_alone(tmp_path, name):
    target = tmp_path / name
    if name.endswith(".safetensors"):
        save_file({"w": torch.ones(2)}, str(target))  # a model's weights, no stats metadata
    else:
        target.write_text("{}")
    before = target.read_bytes()
    with pytest.raises(UserError, match=r"ClassStats\.save path"):
        _filled(0).save(target, model="m")
    assert target.read_bytes() == before


def test_save_writes_a_new_file_and_over_its_own(tmp_path):
    path = _filled(0).save(tmp_path / "stats.safetensors", model="m")
    again = _filled(1).save(path, model="m")
    assert ClassStats.load(again).tensors["counts"].sum() == 40


def test_merge_refuses_statistics_of_another_model(tmp_path):
    a, b = _filled(0), _filled(1)
    a.W, b.W = torch.zeros(V, D, dtype=torch.float64), torch.ones(V, D, dtype=torch.float64)
    with pytest.raises(UserError, match=r"ClassStats\.merge: .*different classifiers W"):
        a.merge(b)
    c = ClassStats.load(_filled(0).save(tmp_path / "a.safetensors", model="model-a"))
    d = ClassStats.load(_filled(1).save(tmp_path / "b.safetensors", model="model-b"))
    with pytest.raises(UserError, match=r"ClassStats\.merge: .*another model"):
        c.merge(d)
    same = ClassStats.load(_filled(2).save(tmp_path / "c.safetensors", model="model-a"))
    assert int(c.merge(same).tensors["counts"].sum()) == 80
