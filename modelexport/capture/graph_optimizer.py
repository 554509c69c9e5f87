"""The DYNAMO graph's optimisation, with each parameter kept in its own initializer.

``torch.onnx.export(dynamo=True, optimize=True)`` runs onnxscript's optimizer,
which ends with a content-based initializer deduplication: on a model as
``from_config`` leaves it, every zero bias and every LayerNorm weight of ones
collapses into one initializer named after the first module that had it.
That file can no longer be quantized or edited per layer, and its
initializer names lie about ownership.  So DYNAMO exports unoptimised and
this module runs the same kinds of pass (constant folding, the default
rewrite rules, dead-node removal, constant lifting, common-subexpression
elimination), taken from onnxscript's and onnx-ir's public API.  Constants
that the graph made (shapes, scalars, folded results) are still merged by
content, as the exporter would; initializers holding a parameter or buffer
are merged only when the user asks (``dedupe_weights``).

Tied weights need no merging here: torch.export lifts a tensor reached under
two names once, so the graph has one initializer for it already.
"""

from __future__ import annotations

from collections.abc import Collection

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import optimizer, rewriter

# Constants up to this many elements are merged by content (onnx-ir's default).
MERGED_CONSTANT_ELEMENTS = 1024


def optimize_graph(model: ir.Model, parameters: Collection[str],
                   dedupe_weights: bool = False) -> None:
    """Optimise ``model`` in place; ``parameters`` (state-dict names) keep their initializers."""
    common_passes.InlinePass()(model)
    for _ in range(2):  # folding exposes rewrites, which expose folding: two rounds settle it
        folded = optimizer.fold_constants_ir(model, onnx_shape_inference=True)
        rewriter.rewrite(model)  # also drops the nodes, functions and opsets left unused
        if not folded.modified:
            break
    closing = [
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.LiftSubgraphInitializersToMainGraphPass(),
    ]
    closing.append(common_passes.DeduplicateInitializersPass() if dedupe_weights
                   else _MergeConstants(frozenset(parameters)))
    closing += [common_passes.CommonSubexpressionEliminationPass(),
                common_passes.RemoveUnusedNodesPass(),
                common_passes.OutputFixPass(),
                common_passes.NameFixPass()]
    for step in closing:
        step(model)


class _MergeConstants(ir.passes.InPlacePass):
    """Merge small initializers of equal content, except those named after a parameter."""

    def __init__(self, parameters: frozenset[str]) -> None:
        super().__init__()
        self.parameters = parameters

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph, modified = model.graph, False
        first: dict[tuple, ir.Value] = {}
        for value in tuple(graph.initializers.values()):
            tensor = value.const_value
            if (value.name in self.parameters or tensor is None or value.is_graph_input()
                    or value.is_graph_output() or tensor.size > MERGED_CONSTANT_ELEMENTS):
                continue
            key = (tensor.dtype, tuple(tensor.shape), tensor.tobytes())
            kept = first.setdefault(key, value)
            if kept is not value:
                value.replace_all_uses_with(kept)
                graph.initializers.pop(value.name)
                modified = True
        return ir.passes.PassResult(model=model, modified=modified)
