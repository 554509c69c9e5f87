"""What the asv suite calls: one export as a timed case, and matrix figures.

Kept in the package so the benchmarks stay one-liners and so the gate and
the suite measure exactly the same code path as a user's ``export_model``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelexport.api import export_model
from modelexport.errors import ModelExportError


@dataclass
class ExportCase:
    """A zoo model, its inputs and a scratch path, ready to export repeatedly."""

    model: torch.nn.Module
    inputs: Any
    strategy: str
    scratch: Path

    @classmethod
    def prepare(cls, model: str, strategy: str, tier: str) -> ExportCase:
        """Build the case and export once; a cell that cannot export is skipped.

        asv treats ``NotImplementedError`` from ``setup`` as "skip", which is
        what a strategy that does not apply to a model deserves.
        """
        from model_zoo import get_entry

        entry = get_entry(model)
        built = entry.build(tier)
        case = cls(built, entry.inputs(built, tier), strategy,
                   Path(tempfile.mkdtemp(prefix="bench-")))
        try:
            case.run()
        except ModelExportError as exc:
            case.close()
            raise NotImplementedError(f"{model}/{strategy} does not export: {exc}") from None
        return case

    def run(self) -> None:
        export_model(self.model, self.inputs, self.scratch / "model.onnx",
                     strategy=self.strategy)

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def matrix_figures(tier: str, models: list[str], strategies: list[str]) -> dict[str, Any]:
    """The matrix's cells and selector scores, as plain data for asv's cache."""
    from modelexport.harness.runner import run_matrix

    run = run_matrix(tier=tier, models=models, strategies=strategies, jobs=1)
    return {"cells": {c.key: c.to_dict() for c in run.cells}, "selector": run.selector,
            "selector_cv": run.selector_cv}


def cell_figure(cache: dict[str, Any], model: str, strategy: str, figure: str) -> float:
    """One figure of one cell; NaN (shown as a gap) where the cell did not pass."""
    cell = cache["cells"].get(f"{model}/{strategy}")
    if cell is None or cell["status"] != "ok" or cell[figure] is None:
        return math.nan
    return float(cell[figure])


def _selector_score(cache: dict[str, Any], objective: str, validation: str) -> dict[str, Any]:
    """``validation``: ``in-sample`` (the shipped rules) or ``cross-validated``."""
    return cache["selector" if validation == "in-sample" else "selector_cv"][objective]


def selector_accuracy(cache: dict[str, Any], objective: str, validation: str) -> float:
    value = _selector_score(cache, objective, validation)["accuracy"]
    return math.nan if value is None else float(value)


def selector_regret(cache: dict[str, Any], objective: str, validation: str) -> float:
    return float(_selector_score(cache, objective, validation)["regret"])
