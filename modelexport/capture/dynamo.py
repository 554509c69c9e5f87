"""Dynamo capture: ``torch.onnx.export(dynamo=True)``, which records name scopes.

The dynamo exporter writes ``pkg.torch.onnx.name_scopes`` on almost every
node (``attribution.name_scopes`` reads them).

The export runs with autograd off: torch.export turns a ``torch.no_grad()``
block inside a model into a higher-order op, and the name scopes of the
modules called inside it come out as the enclosing module's (a DeepSeek
sparse-attention indexer's projections all tagged on the indexer).  With
grad already off, such a block changes nothing and is traced inline.

A dynamo failure is a failure.  Some torch releases fall back to the
TorchScript exporter on error; that fallback is switched off wherever the
installed torch offers the switch, so a file reported as DYNAMO really is.
"""

from __future__ import annotations

import inspect

import torch
from torch.utils import _pytree as pytree

from modelexport.capture.base import Capture, Captured, Evidence
from modelexport.capture.graph_optimizer import optimize_graph
from modelexport.capture.request import ExportRequest, normalise_names
from modelexport.inputs import bound_arguments


def _dynamic_shapes(request: ExportRequest) -> dict | None:
    """torch.export's spec: every forward argument by name, symbolic dims where asked.

    Tensor leaves are matched to the graph input names in flattening order,
    so an argument holding a tuple of tensors gets a tuple of specs.
    """
    if not request.dynamic_axes:
        return None
    names = iter(request.input_names)

    def spec(leaf: object) -> dict[int, object] | None:
        if not isinstance(leaf, torch.Tensor):
            return None
        axes = request.dynamic_axes.get(next(names, ""))
        return {dim: torch.export.Dim.DYNAMIC for dim in axes} if axes else None

    return {name: pytree.tree_map(spec, value)
            for name, value in bound_arguments(request.traced, request.inputs).items()}


class DynamoCapture(Capture):
    """torch.export, then its ONNX translation; nodes carry name-scope metadata."""

    name = "dynamo"
    provides = frozenset({Evidence.NAME_SCOPES})

    def __call__(self, request: ExportRequest) -> Captured:
        options: dict[str, object] = {
            "dynamo": True,
            "opset_version": request.opset,
            # optimised below, keeping one initializer per parameter (graph_optimizer)
            "optimize": False,
            "verbose": False,
            "dynamic_shapes": _dynamic_shapes(request),
        }
        if "fallback" in inspect.signature(torch.onnx.export).parameters:
            options["fallback"] = False
        with torch.no_grad():
            program = torch.onnx.export(
                request.traced, request.inputs.args, kwargs=request.inputs.kwargs, **options
            )
        if program is None or not hasattr(program, "model_proto"):
            raise RuntimeError("the dynamo exporter returned no ONNX program")
        if request.optimize:
            optimize_graph(program.model, parameters=request.state_names(),
                           dedupe_weights=request.dedupe_weights)
        graph = program.model_proto
        normalise_names(graph, request, adapters=request.adapter_depth)
        return Captured(graph)
