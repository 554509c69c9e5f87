"""Test-only strategies that the harness must catch: loaded with --strategy-file.

Each is deliberately wrong in one way, so the matrix's figures and verdicts
are shown to be able to fail.
"""

from __future__ import annotations

import os
import time

import onnx
from onnx import helper

from modelexport.hierarchy import ROOT, parent_path
from modelexport.strategies import register_strategy
from modelexport.strategies.htp import HTPStrategy
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


@register_strategy
class ParentShiftStrategy(HTPStrategy):
    """HTP with every tag moved one module up: coverage stays full, tags are wrong."""

    name = "parent_shift"
    summary = "test only: tags shifted to the parent module"

    def assign(self, request, graph):
        return [None if a is None else
                Assignment(parent_path(a.module) if a.module != ROOT else ROOT, a.source)
                for a in super().assign(request, graph)]


@register_strategy
class PerturbedOutputStrategy(HTPStrategy):
    """HTP whose first graph output gets 0.5 added: a valid file with wrong numbers."""

    name = "perturbed_output"
    summary = "test only: first output shifted by 0.5"

    def capture(self, request) -> onnx.ModelProto:
        return _add_to_first_output(super().capture(request),
                                    helper.make_tensor("perturbation", 1, [], [0.5]))


@register_strategy
class CrashingStrategy(HTPStrategy):
    """Kills its own process, as a segfaulting exporter would."""

    name = "crashing"
    summary = "test only: the worker dies"

    def capture(self, request):
        os._exit(3)


@register_strategy
class HangingStrategy(HTPStrategy):
    """Never returns, as a deadlocked exporter would."""

    name = "hanging"
    summary = "test only: the worker hangs"

    def capture(self, request):
        time.sleep(3600)


@register_strategy
class UnloadableFileStrategy(HTPStrategy):
    """HTP whose file adds a float tensor to an int64 one: the exporter is happy,
    ONNX Runtime refuses the file (a type error), as real exporter bugs do."""

    name = "unloadable"
    summary = "test only: a type error ONNX Runtime rejects"

    def capture(self, request) -> onnx.ModelProto:
        return _add_to_first_output(super().capture(request),
                                    helper.make_tensor("integer", onnx.TensorProto.INT64, [], [1]))
