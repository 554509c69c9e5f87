"""``modelexport zoo run``: the matrix, its scores, its files, and its verdict.

Importable by the CLI and by benchmarks alike: ``run_matrix`` returns a
``MatrixRun`` with every cell and score, and ``write_outputs`` puts
``results.json`` and ``scoreboard.md`` in the output folder.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelexport.errors import ModelExportError
from modelexport.harness.cells import AUTO, CellResult, ModelSpec
from modelexport.harness.results import environment, read_results_or_fail, write_results
from modelexport.harness.scoreboard import family_pass_rates, render, summary
from modelexport.harness.scoring import REFERENCE, reference_agreement, score_selector
from modelexport.harness.selector_fit import cross_validate
from modelexport.harness.sharding import Shard, merge_results, shard_models
from modelexport.harness.workers import import_plugin, run_cells
from modelexport.names import Objective


@dataclass
class MatrixRun:
    tier: str
    models: list[str]
    strategies: list[str]
    repeat: int
    cells: list[CellResult] = field(default_factory=list)
    # per objective: the shipped rules on this run's models (in-sample: they were
    # fitted on the zoo), and rules refitted leaving each family out (cross-validated)
    selector: dict[str, Any] = field(default_factory=dict)
    selector_cv: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    shard: dict[str, Any] | None = None  # index, count, and the tier's models before the split
    # read when the run starts: a commit made while a long run works is not its code
    environment: dict[str, Any] = field(default_factory=environment)

    def accuracy(self) -> dict[str, float | None]:
        """Cross-validated selector accuracy per objective: what the CI floors apply to."""
        return {objective: score["accuracy"] for objective, score in self.selector_cv.items()}

    def payload(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "settings": {"tier": self.tier, "models": self.models,
                         "strategies": self.strategies, "repeat": self.repeat,
                         "shard": self.shard},
            "wall_seconds": self.wall_seconds,
            "cells": [c.to_dict() for c in self.cells],
            "summary": summary(self.cells, self.strategies),
            "family_pass_rates": family_pass_rates(self.cells, self.strategies),
            "selector": self.selector,
            "selector_cv": self.selector_cv,
        }


# ``zoo run --weights``: one weight mode, or both (each model twice, native beside seeded).
BOTH_WEIGHTS = "both"


def select_models(tier: str, names: list[str] | None, plugins: list[str],
                  weights: str = BOTH_WEIGHTS) -> list[str]:
    """The matrix's model names: the tier's entries (or ``names``) under ``weights``.

    A name may carry its mode already (``bert-tiny@native``); a plain name
    is expanded to the modes ``weights`` asks for.
    """
    from model_zoo import entries
    from model_zoo.registry import WEIGHT_MODES, split_weights, with_weights

    for plugin in plugins:
        import_plugin(plugin)
    available = [e.name for e in entries(tier)]
    if weights != BOTH_WEIGHTS and weights not in WEIGHT_MODES:
        raise ModelExportError(f"unknown weight mode {weights!r} "
                               f"(known: {', '.join(WEIGHT_MODES)}, {BOTH_WEIGHTS})")
    modes = WEIGHT_MODES if weights == BOTH_WEIGHTS else (weights,)
    chosen: list[str] = []
    for name in names or available:
        try:
            base, mode = split_weights(name)
        except KeyError as exc:
            raise ModelExportError(str(exc).strip("'\"")) from None
        if base not in available:
            raise ModelExportError(f"no {tier!r} zoo entry named {base} "
                                   f"(known: {', '.join(available)})")
        named_mode = name != base
        chosen += [with_weights(base, m) for m in ((mode,) if named_mode else modes)]
    return chosen


def default_strategies(tier: str) -> list[str]:
    """Every registered strategy, plus AUTO (the user's default call) as its own column."""
    from modelexport.strategies import strategy_names

    return [*strategy_names(), AUTO]


def run_matrix(tier: str = "tiny", models: list[str] | None = None,
               strategies: list[str] | None = None, jobs: int = 2, repeat: int = 1,
               timeout: float = 300.0, plugins: list[str] | None = None,
               keep_dir: str | None = None,
               progress: Callable[[int, int, CellResult], None] | None = None,
               shard: Shard | None = None, costs: dict[str, float] | None = None,
               scheduler: str | None = None, weights: str = "seeded") -> MatrixRun:
    """Run (one shard of) the matrix and score it.

    ``scheduler`` is a Dask scheduler address: cells then run on that
    cluster's workers instead of local worker processes.  ``weights`` is a
    weight mode, or ``both`` (:func:`select_models`).
    """
    from modelexport.strategies import strategy_names

    plugins = [str(Path(p).resolve()) for p in plugins or []]
    chosen = select_models(tier, models, plugins, weights)
    known = [*strategy_names(), AUTO]
    strategies = strategies or default_strategies(tier)
    unknown = [s for s in strategies if s not in known]
    if unknown:
        raise ModelExportError(f"unknown strategy {', '.join(unknown)} "
                               f"(known: {', '.join(known)})")
    shard_info = None
    if shard is not None:
        shard_info = {"index": shard.index, "count": shard.count, "tier_models": chosen}
        chosen = shard_models(chosen, costs or {}, shard)
    specs = [ModelSpec(m, tuple(strategies), tier, repeat, keep_dir) for m in chosen]
    total = len(specs) * len(strategies)
    run = MatrixRun(tier=tier, models=chosen, strategies=strategies, repeat=repeat,
                    shard=shard_info)
    started = time.perf_counter()
    done: list[CellResult] = []
    for result in _cells_runner(scheduler)(specs, jobs=jobs, timeout=timeout, plugins=plugins):
        done.append(result)
        if progress is not None:
            progress(len(done), total, result)
    order = {f"{m}/{s}": i for i, (m, s) in enumerate(
        (m, s) for m in chosen for s in strategies)}
    run.cells = sorted(done, key=lambda c: order[c.key])
    run.wall_seconds = time.perf_counter() - started
    score(run)
    return run


def _cells_runner(scheduler: str | None) -> Callable[..., Iterator[CellResult]]:
    if scheduler is None:
        return run_cells
    from modelexport.harness.distributed import cells_on_cluster

    return functools.partial(cells_on_cluster, scheduler)


def score(run: MatrixRun) -> None:
    """Reference agreement per cell, and the selector's scores per objective."""
    _add_reference_agreement(run.cells)
    run.selector = {o.value: score_selector(run.cells, o).to_dict() for o in Objective}
    run.selector_cv = {o.value: cross_validate(run.cells, o).to_dict() for o in Objective}


def merge_runs(paths: list[Path]) -> MatrixRun:
    """The shards' results as one run: the same cells and scores a single run gives.

    Wall time is the shards' sum: the work done, not the time waited.
    """
    results = [read_results_or_fail(path) for path in paths]
    settings = merge_results(results, [str(p) for p in paths])
    cells = {}
    for result in results:
        cells.update({c.key: c for c in map(CellResult.from_dict, result["cells"])})
    order = {m: i for i, m in enumerate(settings["models"])}
    ranked = {s: i for i, s in enumerate(settings["strategies"])}
    run = MatrixRun(tier=settings["tier"], models=settings["models"],
                    strategies=settings["strategies"], repeat=settings["repeat"],
                    environment=results[0]["environment"])
    run.cells = sorted(cells.values(), key=lambda c: (order.get(c.model, len(order)),
                                                      ranked[c.strategy]))
    run.wall_seconds = sum(r["wall_seconds"] for r in results)
    score(run)
    return run


def _add_reference_agreement(cells: list[CellResult]) -> None:
    references = {c.model: c for c in cells if c.strategy == REFERENCE and c.module_ops}
    for cell in cells:
        reference = references.get(cell.model)
        if reference is not None and cell.module_ops:
            cell.reference_agreement = reference_agreement(cell, reference)


def write_outputs(run: MatrixRun, out: Path) -> tuple[Path, Path]:
    results, board = out / "results.json", out / "scoreboard.md"
    write_results(results, run.payload())
    board.write_text(f"# Zoo scoreboard ({run.tier} tier)\n\n"
                     + render(run.cells, run.strategies, run.selector, run.wall_seconds,
                              markdown=True, selector_cv=run.selector_cv))
    return results, board


def terminal_progress(stream: Any = sys.stderr) -> Callable[[int, int, CellResult], None]:
    """A progress bar on a terminal, one line per cell otherwise (CI logs)."""
    interactive = stream.isatty()

    def show(done: int, total: int, cell: CellResult) -> None:
        width = 30
        filled = width * done // total
        seconds = "" if cell.seconds is None else f" {cell.seconds:.2f}s"
        text = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {cell.key} " \
               f"{cell.status}{seconds}"
        if interactive:
            stream.write("\r\x1b[2K" + text + ("\n" if done == total else ""))
        else:
            stream.write(text + "\n")
        stream.flush()

    return show
