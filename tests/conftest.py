"""Shared fixtures: zoo models exported once per session per strategy."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
import torch

import model_zoo
import modelexport
from modelexport.report import ExportReport
from modelexport.strategies.builtin import BUILTIN_STRATEGIES

TEST_MODELS = ["bert", "gpt2", "llama", "resnet", "vit", "small_cnn", "shared_block"]
# every built-in strategy, as declared (plug-ins a test loads stay out of the list,
# however late this module is imported)
STRATEGIES = [strategy.name for strategy in BUILTIN_STRATEGIES]
# FX's honest domain is plain PyTorch; the Hugging Face models fail it (tested).
FX_MODELS = ["small_cnn", "shared_block", "nested_calls"]

warnings.filterwarnings("ignore")
logging.getLogger("torch").setLevel(logging.ERROR)


@dataclass
class Exported:
    name: str
    strategy: str
    model: torch.nn.Module
    inputs: object
    path: Path
    report: ExportReport

    def load(self) -> onnx.ModelProto:
        return onnx.load(str(self.path))


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


_CACHE: dict[tuple[str, str], Exported] = {}


@pytest.fixture(scope="session")
def exported(export_dir: Path):
    """``exported(name, strategy)``: the zoo model exported with validation, cached."""

    def get(name: str, strategy: str) -> Exported:
        key = (name, strategy)
        if key not in _CACHE:
            entry = model_zoo.get_entry(name)
            model = entry.build("tiny")
            inputs = entry.inputs(model, "tiny")
            path = export_dir / f"{name}-{strategy}.onnx"
            report = modelexport.export_model(
                model, inputs, path, strategy=strategy, validate=True,
                atol=entry.atol, rtol=entry.rtol,
            )
            _CACHE[key] = Exported(name, strategy, model, inputs, path, report)
        return _CACHE[key]

    return get
