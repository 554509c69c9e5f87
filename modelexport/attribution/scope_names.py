"""Scope-name attribution (HTP's): TorchScript node scopes resolved on the module tree.

A TorchScript capture names nodes after the module scopes the tracer saw:
``/encoder/layer.0/attention/self/query/MatMul``.  Each scope is resolved
step by step against the real module tree (``scopes.resolve_scope``): a
segment is accepted only if it names an existing module inside the current
one.  Scope-less nodes (added by export passes) are left to the shared
projection pass.
"""

from __future__ import annotations

from modelexport.attribution.base import Attribution
from modelexport.attribution.scopes import resolve_scope, scope_segments
from modelexport.capture.base import Captured, Evidence
from modelexport.capture.request import ExportRequest
from modelexport.tagging import Assignment
from modelexport.tags import TagSource


class ScopeNameAttribution(Attribution):
    """Node-name scopes, each segment checked against the module tree."""

    name = "scope_names"
    requires = frozenset({Evidence.SCOPE_NAMES})

    def __call__(self, request: ExportRequest, captured: Captured) -> list[Assignment | None]:
        assignments: list[Assignment | None] = []
        for node in captured.graph.graph.node:
            segments = scope_segments(node.name, adapters=1 + request.adapter_depth)
            if segments is None:
                assignments.append(None)
                continue
            module, complete = resolve_scope(segments, request.tree)
            source = TagSource.EXACT if complete else TagSource.INHERITED
            assignments.append(Assignment(module, source))
        return assignments
