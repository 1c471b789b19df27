"""Probe set, security: nothing from a data folder is executed, nothing is written outside the
repository's output folders. Each case failed before the behaviour it names was built (docs/checks.md,
"The probe set")."""

from __future__ import annotations

import datetime
import json
import re

import pytest
import torch
from checkout import REPO_ROOT
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.profiles import Profile, load_profile
from linguistic_collapse.lm.loading import load_causal_lm
from linguistic_collapse.pipeline.pretrained import load_model_tokenizer


@pytest.mark.parametrize("name", ["../../../elsewhere", "a/b", "..", "smoke ", ""])
def test_profile_name_cannot_leave_the_output_folders(name):
    data = load_profile("smoke").as_dict()
    data["name"] = name
    with pytest.raises(UserError, match="may hold only letters, digits"):
        Profile.from_dict(data)


@pytest.fixture
def no_prompt(monkeypatch):
    """Fail the test if anything asks on stdin (transformers' "run this folder's code?")."""
    def prompt(*args, **kwargs):
        raise AssertionError(f"prompted: {args}")

    monkeypatch.setattr("builtins.input", prompt)


def _custom_code_folder(tmp_path, config_name: str = "config.json"):
    folder = tmp_path / "custom"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    code = f"open({str(marker)!r}, 'w').write('ran')\n"
    for module in ("configuration_probe", "modeling_probe", "tokenization_probe"):
        (folder / f"{module}.py").write_text(code)
    auto_map = {"AutoConfig": "configuration_probe.ProbeConfig",
                "AutoModelForCausalLM": "modeling_probe.ProbeModel",
                "AutoTokenizer": ["tokenization_probe.ProbeTokenizer", None]}
    (folder / config_name).write_text(json.dumps({"model_type": "probe_custom", "auto_map": auto_map}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder, marker


def test_model_folder_needing_its_own_code_is_refused(tmp_path, no_prompt):
    folder, marker = _custom_code_folder(tmp_path)
    with pytest.raises(UserError, match=r"config\.json names custom code \(auto_map\)"):
        load_causal_lm(folder)
    assert not marker.exists()


def test_tokenizer_folder_needing_its_own_code_is_refused(tmp_path, no_prompt):
    folder, marker = _custom_code_folder(tmp_path, "tokenizer_config.json")
    with pytest.raises(UserError, match=r"tokenizer_config\.json names custom code"):
        load_model_tokenizer(folder)
    assert not marker.exists()


def test_pickle_weights_are_refused_with_one_line(tmp_path):
    import transformers

    folder = tmp_path / "pickled"
    transformers.GPT2Config(n_positions=8, n_embd=8, n_layer=1, n_head=2,
                            vocab_size=10).save_pretrained(folder)
    torch.save({"transformer.wte.weight": datetime.date(2024, 1, 1)}, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match="pickle weights.*convert them to safetensors") as err:
        load_causal_lm(folder)
    assert "\n" not in str(err.value) and "weights_only=False" not in str(err.value)


def test_every_from_pretrained_refuses_remote_code():
    calls = []
    for path in sorted((REPO_ROOT / "lib").rglob("*.py")):
        text = path.read_text()
        for m in re.finditer(r"\.from_pretrained\b(?!``)", text):  # not in docstrings
            end = text.find("\n\n", m.end())
            statement = text[m.end():end if end > 0 else None].split(")\n")[0]
            calls.append((path.name, text.count("\n", 0, m.start()) + 1,
                          "trust_remote_code=False" in statement))
    assert calls, "no from_pretrained call found"
    assert [c for c in calls if not c[2]] == []
