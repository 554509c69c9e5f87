"""What the suite measures: the zoo tier and strategies, from the environment.

``MODELEXPORT_BENCH_TIER`` picks the zoo tier (``tiny`` by default, ``full``
for real sizes); ``MODELEXPORT_BENCH_MODELS`` / ``MODELEXPORT_BENCH_STRATEGIES``
(comma-separated) narrow the matrix, e.g. for a quick dashboard check.
"""

from __future__ import annotations

import os


def tier() -> str:
    return os.environ.get("MODELEXPORT_BENCH_TIER", "tiny")


def _listed(variable: str) -> list[str] | None:
    value = os.environ.get(variable, "").strip()
    return [v for v in value.split(",") if v] or None


def models() -> list[str]:
    from model_zoo import entries

    return _listed("MODELEXPORT_BENCH_MODELS") or [e.name for e in entries(tier())]


def strategies() -> list[str]:
    from modelexport.strategies import strategy_names

    return _listed("MODELEXPORT_BENCH_STRATEGIES") or strategy_names()
