"""``modelexport validate``: every check of a saved file, from one library call.

The structural checks (``structure``) need only the file and its sidecar.
Given the PyTorch model too, the file is held to what the export's own
self-check asks (parameter readers on their owners, ``ownership``) and to
ONNX Runtime parity on a fresh input (``parity``), by the same functions;
``per_module`` also compares every module call with its ONNX region.
"""

from __future__ import annotations

import onnx
import torch

from modelexport.errors import ModelExportError
from modelexport.hierarchy import ModuleTree
from modelexport.inputs import ModelInputs, graph_input_names
from modelexport.tools.module_view import ModuleView
from modelexport.validation.file_checks import check_file
from modelexport.validation.ownership import ownership, ownership_problem
from modelexport.validation.parity import check_parity
from modelexport.validation.per_module import compare_modules, summarize
from modelexport.validation.structure import (
    ERROR,
    WARNING,
    CheckFailure,
    ValidationReport,
    validate_structure,
)


def validate_file(view: ModuleView, model: torch.nn.Module | None = None,
                  example: ModelInputs | None = None, atol: float = 1e-4, rtol: float = 1e-3,
                  per_module: bool = False) -> ValidationReport:
    """The structural checks, and with a PyTorch model the export's checks too.

    Parity compares the file with ``model`` on a fresh input like ``example``;
    ``per_module`` also compares every module call with its ONNX region.  The
    graph inputs are named from the model given, never from the file's
    sidecar: a sidecar's names bound to another model's tensors would feed
    pixels as token ids.
    """
    comparing = model is not None and example is not None
    if per_module and not comparing:
        raise ModelExportError("per-module comparison needs the PyTorch model")
    # ONNX Runtime opens the file once: the structural check's session runs parity.
    verdict = (check_file(view.path, view.model, keep_session=comparing)
               if view.path is not None else None)
    report = validate_structure(view, verdict)
    if not comparing:
        return report
    names = graph_input_names(model, example)
    report.parity = check_parity(str(view.path), model, example, names, atol=atol, rtol=rtol,
                                 session=verdict.session if verdict else None).as_dict()
    _check_ownership(report, view.model, [info.module for info in view.nodes], model, example)
    if per_module:
        report.per_module = summarize(compare_modules(view, model, example, names, atol, rtol))
    return report


def _check_ownership(report: ValidationReport, graph: onnx.ModelProto,
                     modules: list[str | None], model: torch.nn.Module,
                     example: ModelInputs) -> None:
    """Parameter readers on their owners, judged as the export judged them.

    The module tree records one forward of ``example``, because "allowed to
    read" depends on which modules ran.  Each node's module is the view's
    (its tag, or its scope name in a file written without tags).
    """
    tree = ModuleTree(model)
    with torch.no_grad(), tree.recording_calls():
        example.call(model)
    found = ownership(graph, modules, tree, model)
    report.ownership = {"anchored_nodes": found.anchored_nodes, "correct": found.correct,
                        "accuracy": found.accuracy, "misplaced": found.misplaced}
    if (problem := ownership_problem(found)) is not None:
        report.findings.append(CheckFailure("ownership", ERROR, problem))
    if found.anchored_nodes == 0 and report.parity is not None and not report.parity["passed"] \
            and any(True for _ in model.parameters()):
        report.findings.append(CheckFailure(
            "other-weights", WARNING, "parity failed and no initializer holds one of the model's "
            "tensors: the file was exported from other weights (a model rebuilt without a "
            "seed, or another checkpoint)"))
