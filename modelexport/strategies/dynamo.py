"""DYNAMO: ``torch.onnx.export(dynamo=True)`` with the exporter's own scope records.

The dynamo exporter writes ``pkg.torch.onnx.name_scopes`` on almost every
node: the cumulative qualified module names from the root, the last entry
being the FX node's own name.  That is an exact record of the module, so this
strategy only checks it against the module tree.

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

import ast
import inspect

import onnx
import torch
from torch.utils import _pytree as pytree

from modelexport.attribution.scopes import NAME_SCOPES_KEY, scope_module
from modelexport.capture.request import ExportRequest, normalise_names, strip_adapter_prefix
from modelexport.inputs import bound_arguments
from modelexport.strategies.base import Strategy, register_strategy
from modelexport.tagging import Assignment
from modelexport.tags import TagSource


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


@register_strategy
class DynamoStrategy(Strategy):
    name = "dynamo"
    summary = "torch.onnx dynamo exporter; tags from its own name_scopes metadata"

    def capture(self, request: ExportRequest) -> onnx.ModelProto:
        options: dict[str, object] = {
            "dynamo": True,
            "opset_version": request.opset,
            "optimize": request.optimize,
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
        graph = program.model_proto
        normalise_names(graph, request, adapters=request.adapter_depth)
        return graph

    def assign(
        self, request: ExportRequest, graph: onnx.ModelProto
    ) -> list[Assignment | None]:
        tree = request.tree
        assignments: list[Assignment | None] = []
        for node in graph.graph.node:
            raw = next(
                (p.value for p in node.metadata_props if p.key == NAME_SCOPES_KEY), None
            )
            if raw is None:
                assignments.append(None)
                continue
            module = strip_adapter_prefix(scope_module(ast.literal_eval(raw)),
                                          request.adapter_depth)
            resolved = tree.resolve(module)
            if resolved is not None:
                assignments.append(Assignment(resolved, TagSource.EXACT))
            else:
                assignments.append(
                    Assignment(tree.deepest_known(module), TagSource.INHERITED)
                )
        return assignments
