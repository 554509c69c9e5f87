"""The one model resolver serves the Python API as it serves the CLI."""

from __future__ import annotations

import pytest
import torch

import modelexport
from modelexport.errors import ModelLoadError


def test_python_api_loads_a_zoo_spec_with_its_inputs_and_exports_it(tmp_path):
    loaded = modelexport.load_model("zoo:small_cnn")
    assert isinstance(loaded.model, torch.nn.Module)
    assert isinstance(loaded.inputs, torch.Tensor)
    report = modelexport.export_model(loaded.model, loaded.inputs, tmp_path / "m.onnx")
    assert report.check_passed


def test_factory_spec_from_python(tmp_path):
    factory = tmp_path / "make.py"
    factory.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(3, 2)\n")
    loaded = modelexport.load_model(f"{factory}:build")
    assert isinstance(loaded.model, torch.nn.Linear)
    assert loaded.inputs is None


def test_unknown_zoo_name_is_one_short_line_with_the_nearest_names():
    with pytest.raises(ModelLoadError) as caught:
        modelexport.load_model("zoo:bertt")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200, message
    assert "did you mean" in message and "bert" in message


def test_unknown_zoo_tier_is_a_load_error_naming_the_tiers_there_are():
    with pytest.raises(ModelLoadError, match=r"no 'enormous' tier \(it has: tiny, full\)"):
        modelexport.load_model("zoo:small_cnn:enormous")


def test_a_wide_tier_entry_resolves_without_naming_its_tier():
    """``zoo:hf-gpt2`` exists only in the generated wide tier; it used to ask for "tiny"."""
    loaded = modelexport.load_model("zoo:hf-gpt2")
    assert type(loaded.model).__name__ == "GPT2Model" and loaded.inputs is not None
