"""Test-only strategies that the harness must catch: loaded with --strategy-file.

Each is HTP's capture or attribution made wrong in one way, so the matrix's
figures and verdicts are shown to be able to fail.  They are built the way a
user's own strategy would be: a capture or an attribution, paired with a
built-in one and registered as data.
"""

from __future__ import annotations

import os
import time

import onnx
from onnx import helper

from modelexport.attribution.scope_names import ScopeNameAttribution
from modelexport.capture.base import Captured
from modelexport.capture.torchscript import TorchScriptCapture
from modelexport.hierarchy import ROOT, parent_path
from modelexport.strategies import Strategy, register_strategy
from modelexport.tagging import Assignment


def _add_to_first_output(graph: onnx.ModelProto, constant: onnx.TensorProto) -> onnx.ModelProto:
    """Route the first graph output through ``Add(output, constant)``."""
    output = graph.graph.output[0]
    raw = output.name + "_before_add"
    for node in graph.graph.node:
        node.output[:] = [raw if name == output.name else name for name in node.output]
        node.input[:] = [raw if name == output.name else name for name in node.input]
    graph.graph.initializer.append(constant)
    graph.graph.node.append(helper.make_node("Add", [raw, constant.name], [output.name],
                                             name="/wrapped/Add" + constant.name))
    return graph


class ParentShiftAttribution(ScopeNameAttribution):
    """HTP's tags moved one module up: coverage stays full, tags are wrong."""

    name = "parent_shift"

    def __call__(self, request, captured):
        return [None if a is None else
                Assignment(parent_path(a.module) if a.module != ROOT else ROOT, a.source)
                for a in super().__call__(request, captured)]


class AddedConstantCapture(TorchScriptCapture):
    """A TorchScript capture whose first output gets a constant added."""

    def __init__(self, constant: onnx.TensorProto) -> None:
        self.constant = constant

    def __call__(self, request) -> Captured:
        captured = super().__call__(request)
        _add_to_first_output(captured.graph, self.constant)
        return captured


class CrashingCapture(TorchScriptCapture):
    """Kills its own process, as a segfaulting exporter would."""

    def __call__(self, request):
        os._exit(3)


class HangingCapture(TorchScriptCapture):
    """Never returns, as a deadlocked exporter would."""

    def __call__(self, request):
        time.sleep(3600)


register_strategy(Strategy("parent_shift", "test only: tags shifted to the parent module",
                           TorchScriptCapture(), ParentShiftAttribution()))
# A valid file with wrong numbers.
register_strategy(Strategy("perturbed_output", "test only: first output shifted by 0.5",
                           AddedConstantCapture(helper.make_tensor("perturbation", 1, [], [0.5])),
                           ScopeNameAttribution()))
register_strategy(Strategy("crashing", "test only: the worker dies",
                           CrashingCapture(), ScopeNameAttribution()))
register_strategy(Strategy("hanging", "test only: the worker hangs",
                           HangingCapture(), ScopeNameAttribution()))
# A float tensor added to an int64 one: the exporter is happy, ONNX Runtime
# refuses the file (a type error), as real exporter bugs do.
register_strategy(Strategy("unloadable", "test only: a type error ONNX Runtime rejects",
                           AddedConstantCapture(
                               helper.make_tensor("integer", onnx.TensorProto.INT64, [], [1])),
                           ScopeNameAttribution()))
