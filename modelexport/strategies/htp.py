"""HTP (hierarchical trace-and-project): TorchScript capture, scopes resolved on the tree.

The capture (``capture.torchscript``) names nodes after the module scopes the
tracer saw: ``/encoder/layer.0/attention/self/query/MatMul``.  Each scope is
resolved step by step against the real module tree
(``attribution.scopes.resolve_scope``): a segment is accepted only if it
names an existing module inside the current one.  Scope-less nodes (added by
export passes) are left to the shared projection pass.
"""

from __future__ import annotations

import onnx

from modelexport.attribution.scopes import resolve_scope, scope_segments
from modelexport.capture.request import ExportRequest
from modelexport.capture.torchscript import torchscript_export
from modelexport.strategies.base import Strategy, register_strategy
from modelexport.tagging import Assignment
from modelexport.tags import TagSource


@register_strategy
class HTPStrategy(Strategy):
    name = "htp"
    freezes_control_flow = True
    summary = "TorchScript trace; node scopes resolved against the module tree, rest projected"

    def capture(self, request: ExportRequest) -> onnx.ModelProto:
        return torchscript_export(request.traced, request, "htp")

    def assign(
        self, request: ExportRequest, graph: onnx.ModelProto
    ) -> list[Assignment | None]:
        assignments: list[Assignment | None] = []
        for node in graph.graph.node:
            segments = scope_segments(node.name, adapters=1 + request.adapter_depth)
            if segments is None:
                assignments.append(None)
                continue
            module, complete = resolve_scope(segments, request.tree)
            source = TagSource.EXACT if complete else TagSource.INHERITED
            assignments.append(Assignment(module, source))
        return assignments
