"""The TorchScript exporter's function search, run on the model's structure only.

The shortcut must give back what the exporter's own search gives: the same
bytes for a model that calls no ONNX function, and the function added for
one that does.  It must also actually be taken on the installed torch (a
torch upgrade that renames the exporter's function would silently bring the
whole-model parse back, and this is where that shows), and only inside its
block.
"""

from __future__ import annotations

import io
import threading
import warnings

import onnx
import pytest
import torch

import modelexport
from modelexport.capture.function_scan import structure_only_function_scan

OPSET = 18


class Projector(torch.nn.Module):
    """Weights larger than the shell keeps inline, so the shell leaves them out."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(16, 64)
        self.down = torch.nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.selu(self.down(torch.relu(self.up(x))))


def _export_bytes(model: torch.nn.Module, example: tuple) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, buffer, dynamo=False, opset_version=OPSET)
    return buffer.getvalue()


@pytest.fixture
def whole_model_parses(monkeypatch) -> list[int]:
    """Counts protobuf parses of a whole serialised model, as the exporter's search does."""
    sizes: list[int] = []
    original = onnx.load_model_from_string

    def counting(data, *args, **kwargs):
        sizes.append(len(data))
        return original(data, *args, **kwargs)

    monkeypatch.setattr(onnx, "load_model_from_string", counting)
    return sizes


def test_without_functions_the_export_skips_the_parse_and_gives_the_same_bytes(
        whole_model_parses):
    torch.manual_seed(0)
    model, example = Projector().eval(), (torch.randn(2, 16),)
    plain = _export_bytes(model, example)
    assert len(whole_model_parses) == 1  # the exporter's own search parses the model
    with structure_only_function_scan():
        scanned = _export_bytes(model, example)
    assert len(whole_model_parses) == 1, "the shortcut was not taken on this torch"
    assert scanned == plain


@pytest.mark.parametrize("strategy", ["htp", "usage_based"])
def test_a_torchscript_strategy_exports_without_a_whole_model_parse(strategy, tmp_path,
                                                                   whole_model_parses):
    torch.manual_seed(0)
    report = modelexport.export_model(Projector().eval(), (torch.randn(2, 16),),
                                      tmp_path / "model.onnx", strategy=strategy)
    assert report.summary.success
    assert whole_model_parses == []


def test_the_shortcut_acts_only_on_the_thread_inside_the_block(whole_model_parses):
    torch.manual_seed(0)
    model, example = Projector().eval(), (torch.randn(2, 16),)
    other: list[bytes] = []
    with structure_only_function_scan():
        worker = threading.Thread(target=lambda: other.append(_export_bytes(model, example)))
        worker.start()
        worker.join()
    assert other and len(whole_model_parses) == 1
    _export_bytes(model, example)  # after the block
    assert len(whole_model_parses) == 2


def test_a_model_calling_an_onnxscript_function_still_gets_its_definition():
    onnxscript = pytest.importorskip("onnxscript")
    from onnxscript import opset18 as op

    domain = onnxscript.values.Opset(domain="modelexport.test", version=1)

    @onnxscript.script(domain)
    def Selu(X):
        return op.Selu(X)

    def selu_symbolic(g, x):
        return g.onnxscript_op(Selu, x).setType(x.type())

    torch.onnx.register_custom_op_symbolic("aten::selu", selu_symbolic, OPSET)
    try:
        torch.manual_seed(0)
        model, example = Projector().eval(), (torch.randn(2, 16),)
        plain = onnx.load_from_string(_export_bytes(model, example))
        with structure_only_function_scan():
            scanned = onnx.load_from_string(_export_bytes(model, example))
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::selu", OPSET)
    assert [f.name for f in plain.functions] == ["Selu"]
    assert scanned == plain
