"""The cheap check every export runs on itself before it may say "ok".

Three questions, answered from the saved file and the graph in memory:

1. Is the file valid?  The full ONNX checker (with shape inference) and an
   ONNX Runtime session created from the saved file with the default
   options a user gets (its graph optimisations evaluate shapes that
   loading alone does not).  This catches files that an exporter wrote
   happily and no runtime can open (type errors, bad shapes).  The checker
   reads the graph's *skeleton*: large initializers become typed graph
   inputs, so shape inference sees every shape and small constant (a
   Reshape's target) without copying the weights, and ONNX Runtime, which
   does read them, checks their size against their shape.  The session is
   opened from the file (its C++ loader reads it, with no copy through
   Python) with weight pre-packing off: a kernel-speed relayout that says
   nothing about validity and was about half of bert-base's load time.
2. Can a user feed it by name?  Every graph input must be named after one of
   the example's inputs.
3. Do the tags put parameters where they live?  Among nodes that read a
   parameter or buffer, the share tagged with a module allowed to read it:
   an owner; the common ancestor of several owners; for an owner whose
   forward never ran, the nearest ancestor that did; a module whose own
   forward reads the parameter (``F.linear(x, self.proj.weight)``) or is
   handed it as an argument (a weight-norm parametrisation); and, where an
   export pass folded an identity of the parameter into a renamed copy (a
   Gather of every row), the owner's caller, which read its output.
   Initializers are matched by name, by content only where an export pass
   renamed them (:mod:`modelexport.parameters`).

AUTO treats a strategy whose check fails as failed and moves on; an
explicitly chosen strategy keeps its file and the report says what failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import torch

from modelexport.analysis import direct_parameter_readers
from modelexport.errors import one_line
from modelexport.hierarchy import ModuleTree, common_ancestor, parent_path
from modelexport.onnx_payload import skeleton
from modelexport.parameters import Holding, match_initializers
from modelexport.runtime import open_session, session_options
from modelexport.tags import NodeTag

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


@dataclass
class SelfCheck:
    """What the check found; ``failures`` is empty when the export may say "ok"."""

    loads: bool = False
    failures: list[str] = field(default_factory=list)
    ownership: Ownership = field(default_factory=Ownership)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed,
                "ownership_accuracy": self.ownership.accuracy}


def ownership(graph: onnx.ModelProto, tags: Sequence[NodeTag | None], tree: ModuleTree,
              model: torch.nn.Module, held: dict[str, Holding] | None = None) -> Ownership:
    """How many parameter-reading nodes carry a module allowed to read what they read."""
    held = held if held is not None else match_initializers(graph, tree, model)
    readers = direct_parameter_readers(model)
    result = Ownership()
    for node, tag in zip(graph.graph.node, tags):
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
        if tag is not None and tag.module in allowed:
            result.correct += 1
        elif len(result.misplaced) < 5:
            where = "untagged" if tag is None else f"on {tag.module or '(root)'!r}"
            result.misplaced.append(f"{node.name} {where}, owner {candidates[0]!r}")
    return result


def runtime_load_error(path: str | Path) -> str | None:
    """None when ONNX Runtime can create a session from the file at ``path``."""
    try:
        open_session(path, session_options(prepack=False))
    except Exception as exc:
        return one_line(exc, 200)
    return None


def _record_file_checks(check: SelfCheck, graph: onnx.ModelProto, path: Path) -> None:
    try:
        onnx.checker.check_model(skeleton(graph).SerializeToString(), full_check=True)
    except Exception as exc:
        check.failures.append(f"ONNX checker: {one_line(exc, 200)}")
    error = runtime_load_error(path)
    check.loads = error is None
    if error is not None:
        check.failures.append(f"ONNX Runtime cannot load the file: {error}")


def self_check(graph: onnx.ModelProto, path: Path, tags: Sequence[NodeTag | None],
               tree: ModuleTree, model: torch.nn.Module, input_names: Sequence[str],
               held: dict[str, Holding] | None = None) -> SelfCheck:
    """Run the three checks of the module doc on ``graph``, saved (tags written) at ``path``."""
    check = SelfCheck()
    _record_file_checks(check, graph, path)
    known = set(input_names)
    stray = [i.name for i in graph.graph.input if i.name not in known]
    if stray:
        check.failures.append(f"graph inputs {stray} match no example input name "
                              f"({', '.join(input_names)})")
    check.ownership = ownership(graph, tags, tree, model, held)
    accuracy = check.ownership.accuracy
    if accuracy is not None and accuracy < MIN_OWNERSHIP:
        check.failures.append(
            f"only {check.ownership.correct} of {check.ownership.anchored_nodes} "
            f"parameter-reading nodes sit on the parameter's owner ({accuracy:.1%} < "
            f"{MIN_OWNERSHIP:.0%}); e.g. {check.ownership.misplaced[0]}")
    return check
