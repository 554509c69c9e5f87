"""The axis ladder: a model whose code fixes an axis gets a file that runs, and says so."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import modelexport
from modelexport.axis_ladder import (
    SECOND_SHAPE_FAILED,
    AxisChoice,
    axes_label,
    axis_ladder,
    closed_axes,
    shape_bound,
)


class StepByStep(torch.nn.Module):
    """A recurrence written as a Python loop over the sequence, as reference scans are.

    A trace unrolls the loop for the example's length: the file is right at
    that length and wrong (or refused) at any other.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.cell = torch.nn.Linear(8, 8)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(input_ids)
        state = torch.zeros_like(tokens[:, 0])
        for step in range(tokens.shape[1]):
            state = torch.tanh(self.cell(state) + tokens[:, step])
        return state


def _ids(batch: int, sequence: int) -> torch.Tensor:
    return torch.randint(0, 50, (batch, sequence), generator=torch.Generator().manual_seed(3))


def test_a_default_export_closes_the_sequence_the_loop_fixes_and_keeps_batch_open(tmp_path):
    torch.manual_seed(0)
    model = StepByStep().eval()
    report = modelexport.export_model(model, {"input_ids": _ids(1, 6)}, tmp_path / "m.onnx",
                                      strategy="htp")
    first, last = report.summary.attempts[0], report.summary.attempts[-1]
    assert first.error_type == SECOND_SHAPE_FAILED and first.axes == "batch, sequence open"
    assert last.success and last.axes == "batch open"
    assert report.parity["passed"] and report.summary.success
    assert report.settings["closed_axes"] == {"input_ids": ["sequence"]}
    assert any("axis sequence" in w and "failed on the open axes" in w for w in report.warnings)
    # the file the user gets runs at another batch, at the example's length
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    ids = _ids(3, 6)
    got = session.run(None, {"input_ids": ids.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(ids).numpy(), atol=1e-5)


def test_an_axis_asked_for_by_name_is_not_closed(tmp_path):
    torch.manual_seed(0)
    report = modelexport.export_model(StepByStep().eval(), {"input_ids": _ids(1, 6)},
                                      tmp_path / "m.onnx", strategy="htp",
                                      dynamic_sequence=True)
    attempts = report.summary.attempts
    # batch, left to its default, may close; the sequence stays open throughout
    assert [a.axes for a in attempts] == ["batch, sequence open", "sequence open"]
    assert all(a.error_type == SECOND_SHAPE_FAILED for a in attempts)
    assert not report.parity["passed"] and not report.summary.success
    assert "sequence" not in report.settings["closed_axes"].get("input_ids", [])


def test_the_ladder_closes_only_defaulted_axes_widest_first():
    both = axis_ladder(True, True, batch_chosen=False, sequence_chosen=False)
    assert both == [AxisChoice(True, True), AxisChoice(True, False), AxisChoice(False, False)]
    assert axis_ladder(True, True, batch_chosen=True, sequence_chosen=False) == [
        AxisChoice(True, True), AxisChoice(True, False)]
    assert axis_ladder(True, True, batch_chosen=False, sequence_chosen=False,
                       with_past=True) == [AxisChoice(True, True)]
    assert axis_ladder(False, False, batch_chosen=False, sequence_chosen=False) == [
        AxisChoice(False, False)]
    assert axes_label({"ids": {0: "batch", 1: "sequence"}, "mask": {0: "batch"}}) == (
        "batch, sequence open")
    assert axes_label({}) == "static"


def test_only_shape_evidence_moves_down_a_rung():
    assert shape_bound([SECOND_SHAPE_FAILED], ["at batch=3: ..."])
    assert shape_bound(["TorchExportError"], [
        "Failed to export <- ValueError: Found the following conflicts between "
        "user-specified ranges and inferred ranges from model tracing:"])
    assert not shape_bound(["UnsupportedOperatorError", "ParityFailed"],
                           ["Exporting the operator 'aten::polar'", "output 0 exceeds"])


def test_closed_axes_names_what_the_file_fixes():
    asked = {"input_ids": {0: "batch", 1: "sequence"}, "mask": {0: "batch"}}
    assert closed_axes(asked, {"input_ids": {0: "batch"}, "mask": {0: "batch"}}) == {
        "input_ids": ["sequence"]}
    assert closed_axes(asked, {}) == {"input_ids": ["batch", "sequence"], "mask": ["batch"]}
