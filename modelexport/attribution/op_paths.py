"""Op-path attribution (FX's): a node's own scope looked up in the capture's op table.

The FX capture wraps every traced op in a uniquely named leaf (``fxop_12``)
and records the module path FX saw it run in.  The TorchScript export names
each ONNX node after that leaf's scope, so the first scope segment maps
straight back to the path; a path the tree does not know is inherited by its
deepest known ancestor.
"""

from __future__ import annotations

from modelexport.attribution.base import Attribution
from modelexport.attribution.scopes import scope_segments
from modelexport.capture.base import Captured, Evidence
from modelexport.capture.request import ExportRequest
from modelexport.tagging import Assignment
from modelexport.tags import TagSource


class OpPathAttribution(Attribution):
    """Each node's leaf scope, looked up in ``Captured.op_paths``."""

    name = "op_paths"
    requires = frozenset({Evidence.SCOPE_NAMES, Evidence.OP_PATHS})

    def __call__(self, request: ExportRequest, captured: Captured) -> list[Assignment | None]:
        assignments: list[Assignment | None] = []
        for node in captured.graph.graph.node:
            segments = scope_segments(node.name) or []
            path = captured.op_paths.get(segments[0]) if segments else None
            if path is None:
                assignments.append(None)
            elif path in request.tree:
                assignments.append(Assignment(path, TagSource.EXACT))
            else:
                assignments.append(
                    Assignment(request.tree.deepest_known(path), TagSource.INHERITED)
                )
        return assignments
