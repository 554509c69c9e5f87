"""What the suite measures, learned without importing torch or transformers.

asv imports this module to list every benchmark's parameters, in its
discovery step and again in each benchmark process; importing the package
(which imports torch) there is what made a tiny-tier record take 44 minutes.
The tier's cells are read from ``model_zoo/costs.json`` instead, the record
of what each cell cost in a matrix run (``modelexport zoo costs``).

``MODELEXPORT_BENCH_TIER`` picks the zoo tier (``tiny`` by default, ``full``
for real sizes); ``MODELEXPORT_BENCH_MODELS`` / ``MODELEXPORT_BENCH_STRATEGIES``
(comma-separated) narrow the matrix, e.g. for a quick dashboard check.
"""

from __future__ import annotations

import importlib
import json
import math
import os
from pathlib import Path
from types import ModuleType

COSTS = Path(__file__).resolve().parents[1] / "model_zoo" / "costs.json"


def tier() -> str:
    return os.environ.get("MODELEXPORT_BENCH_TIER", "tiny")


def _listed(variable: str) -> list[str] | None:
    value = os.environ.get(variable, "").strip()
    return [v for v in value.split(",") if v] or None


def _recorded() -> dict[str, dict[str, float]]:
    return json.loads(COSTS.read_text())["tiers"].get(tier(), {})


def models() -> list[str]:
    return _listed("MODELEXPORT_BENCH_MODELS") or list(_recorded())


def strategies() -> list[str]:
    recorded = dict.fromkeys(s for cells in _recorded().values() for s in cells)
    return _listed("MODELEXPORT_BENCH_STRATEGIES") or list(recorded)


def commit_module(*names: str) -> ModuleType:
    """The first of ``names`` the benchmarked commit has.

    ``make bench-history`` measures older commits with this suite, and the
    benchmark support moved from ``modelexport.harness`` to
    ``modelexport.benchmarking``; each import lists the new path, then the old.
    """
    for name in names[:-1]:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    return importlib.import_module(names[-1])


class MatrixCache:
    """One matrix run per record, shared by every class that derives from this one.

    asv keys ``setup_cache`` by where the function is defined, so the
    classes below all receive the result of a single run.
    """

    timeout = 3600

    def setup_cache(self):
        matrix = commit_module("modelexport.benchmarking.asv_matrix", "modelexport.harness.bench")
        return matrix.matrix_figures(tier(), models(), strategies())


def cell_figure(cache: dict, model: str, strategy: str, figure: str) -> float:
    """One figure of one cell; NaN (shown as a gap) where the cell did not pass."""
    cell = cache["cells"].get(f"{model}/{strategy}")
    if cell is None or cell["status"] != "ok" or cell.get(figure) is None:
        return math.nan
    return float(cell[figure])


def _selector_score(cache: dict, objective: str, validation: str) -> dict:
    """``validation``: ``in-sample`` (the shipped rules) or ``cross-validated``."""
    return cache["selector" if validation == "in-sample" else "selector_cv"][objective]


def selector_accuracy(cache: dict, objective: str, validation: str) -> float:
    value = _selector_score(cache, objective, validation)["accuracy"]
    return math.nan if value is None else float(value)


def selector_regret(cache: dict, objective: str, validation: str) -> float:
    return float(_selector_score(cache, objective, validation)["regret"])
