"""Do the tags put parameters where they live?

Among nodes that read a parameter or buffer, the share tagged with a module
allowed to read it: an owner; the common ancestor of several owners; for an
owner whose forward never ran, the nearest ancestor that did; a module whose
own forward reads the parameter (``F.linear(x, self.proj.weight)``) or is
handed it as an argument (a weight-norm parametrisation); and, where an
export pass folded an identity of the parameter into a renamed copy (a
Gather of every row), the owner's caller, which read its output.
Initializers are matched by name, by content only where an export pass
renamed them (:mod:`modelexport.parameters`).

The export's self-check and ``validate --model`` both ask it, with the same
bar (``MIN_OWNERSHIP``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx
import torch

from modelexport.analysis.analyzer import direct_parameter_readers
from modelexport.hierarchy import ModuleTree, common_ancestor, parent_path
from modelexport.parameters import Holding, match_initializers

# The share of parameter-reading nodes that must sit on an owner.
MIN_OWNERSHIP = 0.99


@dataclass
class Ownership:
    """Parameter-consuming nodes and how many sit on the parameter's owner."""

    anchored_nodes: int = 0
    correct: int = 0
    misplaced: list[str] = field(default_factory=list)  # a few examples, for the report

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.anchored_nodes if self.anchored_nodes else None


def ownership(graph: onnx.ModelProto, modules: Sequence[str | None], tree: ModuleTree,
              model: torch.nn.Module, held: dict[str, Holding] | None = None) -> Ownership:
    """How many parameter-reading nodes carry a module allowed to read what they read.

    ``modules`` is each top-level node's module (None: untagged), in graph order.
    """
    held = held if held is not None else match_initializers(graph, tree, model)
    readers = direct_parameter_readers(model)
    result = Ownership()
    for node, module in zip(graph.graph.node, modules):
        holdings = [held[name] for name in node.input if name in held]
        if not holdings:
            continue
        result.anchored_nodes += 1
        candidates = sorted({o for h in holdings for o in h.owners})
        allowed = set(candidates) | {common_ancestor(candidates)}
        allowed |= {tree.nearest_executed(c) for c in candidates}
        allowed |= {r for h in holdings for i in h.tensor_ids
                    for r in (*readers.get(i, ()), *tree.parameter_receivers.get(i, ()))}
        allowed |= {tree.nearest_executed(parent_path(o))
                    for h in holdings if h.folded_identity for o in h.owners}
        if module is not None and module in allowed:
            result.correct += 1
        elif len(result.misplaced) < 5:
            where = "untagged" if module is None else f"on {module or '(root)'!r}"
            result.misplaced.append(f"{node.name} {where}, owner {candidates[0]!r}")
    return result


def ownership_problem(found: Ownership) -> str | None:
    """The failure line when too few parameter readers sit on an owner, else None."""
    accuracy = found.accuracy
    if accuracy is None or accuracy >= MIN_OWNERSHIP:
        return None
    return (f"only {found.correct} of {found.anchored_nodes} parameter-reading nodes sit "
            f"on the parameter's owner ({accuracy:.1%} < {MIN_OWNERSHIP:.0%}); "
            f"e.g. {found.misplaced[0]}")
