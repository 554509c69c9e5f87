"""Name-scope attribution: the dynamo exporter's own record of each node's module.

``pkg.torch.onnx.name_scopes`` holds the cumulative qualified module names
from the root, the last entry being the FX node's own name.  That is an
exact record of the module, so this attribution only checks it against the
module tree: a path the tree knows is exact, one it does not is inherited
by its deepest known ancestor.
"""

from __future__ import annotations

import ast

from modelexport.attribution.base import Attribution
from modelexport.attribution.scopes import NAME_SCOPES_KEY, scope_module
from modelexport.capture.base import Captured, Evidence
from modelexport.capture.request import ExportRequest, strip_adapter_prefix
from modelexport.tagging import Assignment
from modelexport.tags import TagSource


class NameScopeAttribution(Attribution):
    """Each node's ``name_scopes`` metadata, resolved on the module tree."""

    name = "name_scopes"
    requires = frozenset({Evidence.NAME_SCOPES})

    def __call__(self, request: ExportRequest, captured: Captured) -> list[Assignment | None]:
        tree = request.tree
        assignments: list[Assignment | None] = []
        for node in captured.graph.graph.node:
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
