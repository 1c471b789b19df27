"""The README's section "Neural collapse of your own model": each example runs on its own, as
written, and prints what it computes."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from checkout import REPO_ROOT

SECTION = "## Neural collapse of your own model"


def _examples() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_two_examples():
    blocks = _examples()
    assert len(blocks) == 2
    assert "ClassStats(" in blocks[0] and "NeuralCollapseCallback(" in blocks[1]


def test_the_own_loop_needs_no_hand_written_hook_and_ddp_is_three_lines():
    loop = _examples()[0]
    assert "head_features(" in loop and "register_forward_pre_hook" not in loop
    body = loop.split("stats = ClassStats(", 1)[1].splitlines()
    assert len([line for line in body if line.strip()]) <= 10  # ClassStats() to the load
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split(SECTION, 1)[1]
    ddp = re.search(r"```text\n(.*?)```", text.split("\n## ", 1)[0], flags=re.S)
    assert ddp is not None and len(ddp[1].strip().splitlines()) == 3
    assert ddp[1].count("all_reduce_()") == 2


def test_the_classstats_example_runs_and_prints_the_measures(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_examples()[0], "README.md example 1", "exec"), scope)
    from linguistic_collapse.nc.registry import MEASURES

    assert list(scope["metrics"]) == MEASURES
    assert scope["stats"].measures() == scope["metrics"]  # loaded back, verified
    assert (tmp_path / "stats.safetensors").is_file()
    assert capsys.readouterr().out.strip() == str(scope["metrics"])


@pytest.mark.slow
def test_the_callback_example_runs_on_its_own(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}  # a fresh scope: nothing from the first example
    exec(compile(_examples()[1], "README.md example 2", "exec"), scope)
    assert capsys.readouterr().out.strip().splitlines()[-1] == \
        str(scope["callback"].rows[-1]["nc/nc1_cdnv"])
    table = pd.read_csv(tmp_path / "nc.csv")
    assert list(table["step"]) == [2, 4]
    logged = [h for h in scope["trainer"].state.log_history if "nc/nc4_agreement" in h]
    assert [h["step"] for h in logged] == [2, 4]
