"""The export's ``modules_as_functions`` step: chosen classes folded into ONNX functions.

It runs on the file the export is about to deliver (staged, weights
included), after the strategy's own checks, so it works the same for every
strategy; the export then validates the folded file, not the flat one.  The
sidecar's node map describes the flat graph a reader gets back by inlining
the calls (:func:`inline_module_functions`), which is what every tool here
reads.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from modelexport.errors import InputMismatchError
from modelexport.hierarchy import ROOT, ModuleTree
from modelexport.output.files import StagedOutput
from modelexport.strategies import ExportRequest
from modelexport.tags import NodeTag, read_node_tag
from modelexport.tools.module_functions import (
    FoldResult,
    class_matches,
    fold_module_functions,
    inline_module_functions,
)
from modelexport.validation.ownership import ownership, ownership_problem
from modelexport.validation.self_check import SelfCheck


def wanted_classes(tree: ModuleTree, names: Iterable[str]) -> set[str]:
    """The asked class names, each checked to name a module of the model.

    A name that matches nothing is a typo or the wrong model; saying so before the
    export runs beats a file that silently has no function."""
    wanted = {name.strip() for name in names if name.strip()}
    present = {info.class_path for path, info in tree.modules.items() if path != ROOT}
    missing = sorted(name for name in wanted
                     if not any(class_matches(cls, {name}) for cls in present))
    if missing:
        known = sorted({cls.rsplit(".", 1)[-1] for cls in present})
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        raise InputMismatchError(
            f"modules_as_functions: no module of class {', '.join(missing)} in the model "
            f"(its classes: {shown})")
    return wanted


def fold_staged(staging: StagedOutput, external: bool, tree: ModuleTree, wanted: set[str],
                parameters: set[str]) -> tuple[FoldResult, onnx.ModelProto,
                                               list[NodeTag | None]]:
    """Fold the staged file in place; what was folded, and the flat graph and its tags
    for the sidecar and the ownership check."""
    staged = staging.staged(staging.target)
    model = onnx.load(str(staged), load_external_data=external)
    classes = {path: info.class_path for path, info in tree.modules.items()}
    result = fold_module_functions(model, classes, wanted, parameters)
    staging.write_onnx(model, external)
    flat = inline_module_functions(model)
    return result, flat, [read_node_tag(node) for node in flat.graph.node]


def recheck_ownership(check: SelfCheck, flat: onnx.ModelProto, tags: list[NodeTag | None],
                      request: ExportRequest) -> None:
    """The self-check's parameter-owner test again, on the folded file's flat graph.

    Aligning instances moves shared nodes to an ancestor; should one of them read a
    parameter, its tag would no longer name the owner, and the report must say so."""
    check.ownership = ownership(flat, [t.module if t is not None else None for t in tags],
                                request.tree, request.model)
    problem = ownership_problem(check.ownership)
    if problem is not None:
        check.failures.append(f"after folding module functions: {problem}")
