"""What the asv suite's one ``setup_cache`` computes: the matrix, as plain data.

Kept in the package so the suite measures exactly the code path of
``modelexport zoo run`` (each cell is the user's ``export_model`` call),
and so the benchmarks themselves only read numbers out of the cache.
"""

from __future__ import annotations

from typing import Any

# exports per cell: the timing figures are the median of these
REPEAT = 3


def matrix_figures(tier: str, models: list[str], strategies: list[str]) -> dict[str, Any]:
    """The matrix's cells and selector scores, as plain data for asv's cache."""
    from modelexport.harness.runner import run_matrix

    run = run_matrix(tier=tier, models=models, strategies=strategies, jobs=2, repeat=REPEAT)
    return {"cells": {c.key: c.to_dict() for c in run.cells}, "selector": run.selector,
            "selector_cv": run.selector_cv}
