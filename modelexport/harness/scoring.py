"""Scoring the matrix: reference agreement, the best strategy per model, the selector.

Definitions (also in docs/strategies.md, "Selector and AUTO"):

* a cell is *eligible* when it exported, passed parity, covers every node and
  puts at least 95% of its parameter-consuming nodes on their owners (tags
  that misplace more are not a usable export, however fast);
* quality ranks eligible cells by anchored accuracy first (the one figure that
  checks a tag is *right*), then by the exact + inherited share of operator
  nodes (how much the strategy knew rather than projected; nodes that only
  hold data are left out, ``cells.operator_known_share``);
* speed ranks eligible cells by export CPU time, the least of the timed
  exports (``judged_seconds``: unlike wall time it moves little with
  co-tenant load, and noise only adds to it); runtime by the
  file's median ONNX Runtime latency (``latency.py``), pooled over the
  strategies that wrote the same graph (``pooled_latencies``);
* the best is a *set*: cells whose rank figures tie, where export times
  within 10% or 50 ms of the fastest, and latencies within 10% or 10 us,
  count as a tie (small figures on a shared machine are noisier than that);
  quality breaks speed ties and export speed breaks quality ties, while
  runtime ties stay a set: the runtime objective asks for the fastest file
  among those whose tags pass, and tags already had to pass to compete;
* the selector is right for a model when its pick is in the best set; its
  regret is what following AUTO (the pick, then the fallback order, up to the
  first cell that exported) costs against the best: seconds for speed,
  quality points (anchored accuracy + operator nodes' exact/inherited share) for quality,
  the latency's excess over the best as a share of it for runtime (1.0 when
  AUTO lands on no usable file).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from modelexport.harness.cells import AUTO, OK, PARITY_FAILED, CellResult
from modelexport.names import Objective
from modelexport.selection.selector import auto_order, load_rules

# Objectives whose best set is ranked by a timing (export seconds, ORT latency):
# on a shared machine their accuracy moves with co-tenant load, so a regression
# gate must not read a change in it as a quality verdict.
TIMED_OBJECTIVES = frozenset({Objective.SPEED.value, Objective.RUNTIME.value})
SPEED_TIE, SPEED_TIE_SECONDS = 0.10, 0.05
RUNTIME_TIE, RUNTIME_TIE_MS = 0.10, 0.01
ANCHOR_FLOOR = 0.95
REFERENCE = "dynamo"
REGRET_UNITS = {Objective.SPEED: "s", Objective.QUALITY: "quality points",
                Objective.RUNTIME: "x latency"}
# (pick, fallback order) for one model, from its name and features
Chooser = Callable[[str, dict[str, Any]], tuple[str | None, list[str]]]


def reference_agreement(cell: CellResult, reference: CellResult) -> float | None:
    """Share of nodes whose (module, op type) pair the reference export also has.

    Per module, the op-type multisets of the two exports are intersected;
    the matched count is divided by the larger export's node count.
    """
    if not cell.module_ops or not reference.module_ops:
        return None
    matched = 0
    for module, ops in cell.module_ops.items():
        theirs = Counter(reference.module_ops.get(module, {}))
        matched += sum((Counter(ops) & theirs).values())
    total = max(sum(sum(o.values()) for o in cell.module_ops.values()),
                sum(sum(o.values()) for o in reference.module_ops.values()))
    return matched / total if total else None


def eligible(cell: CellResult) -> bool:
    anchored_ok = cell.anchored_accuracy is None or cell.anchored_accuracy >= ANCHOR_FLOOR
    return cell.status == OK and cell.coverage == 1.0 and anchored_ok


def quality_key(cell: CellResult) -> tuple[float, float]:
    """Anchored accuracy, then the exact + inherited share of operator nodes.

    Results recorded before ``operator_known`` existed fall back to the share
    over all nodes.
    """
    anchored = 1.0 if cell.anchored_accuracy is None else cell.anchored_accuracy
    known = cell.operator_known if cell.operator_known is not None else cell.quality
    return (round(anchored, 3), round(known or 0.0, 3))


def _within_tie(cells: list[CellResult], figure: Callable[[CellResult], float],
                relative: float, absolute: float) -> list[CellResult]:
    fastest = min(figure(c) for c in cells)
    limit = max(fastest * (1 + relative), fastest + absolute)
    return [c for c in cells if figure(c) <= limit]


def _fast_enough(cells: list[CellResult]) -> list[CellResult]:
    return _within_tie(cells, lambda c: c.judged_seconds, SPEED_TIE, SPEED_TIE_SECONDS)


def _runs_fast_enough(cells: list[CellResult]) -> list[CellResult]:
    return _within_tie(cells, lambda c: c.ort_latency_ms, RUNTIME_TIE, RUNTIME_TIE_MS)


def _best_quality(cells: list[CellResult]) -> list[CellResult]:
    top = max(quality_key(c) for c in cells)
    return [c for c in cells if quality_key(c) == top]


def best_cells(cells: list[CellResult], objective: Objective | str) -> list[CellResult]:
    """The co-best eligible cells under one objective, fastest export first (empty if none)."""
    goal = Objective(objective)
    candidates = [c for c in cells if eligible(c)]
    if goal is Objective.RUNTIME:
        candidates = [c for c in candidates if c.ort_latency_ms is not None]
    if not candidates:
        return []
    if goal is Objective.SPEED:
        best = _best_quality(_fast_enough(candidates))
    elif goal is Objective.RUNTIME:
        best = _runs_fast_enough(candidates)
    else:
        best = _fast_enough(_best_quality(candidates))
    return sorted(best, key=lambda c: c.judged_seconds)


@dataclass
class ModelVerdict:
    model: str
    objective: str
    best: list[str]  # a set, listed by name: its order must not follow timing noise
    pick: str | None
    auto_path: list[str]
    auto_result: str | None
    correct: bool | None
    regret: float | None


@dataclass
class SelectorScore:
    objective: str
    scored_models: int
    correct: int
    verdicts: list[ModelVerdict] = field(default_factory=list)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    validation: str = "in-sample"  # or how the cross-validation held models out

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored_models if self.scored_models else None

    @property
    def regret(self) -> float:
        return sum(v.regret for v in self.verdicts if v.regret is not None)

    @property
    def constant_baseline(self) -> tuple[str | None, float | None]:
        """The best constant pick and its accuracy: what a selector must beat to earn its keep."""
        counts = Counter(s for v in self.verdicts if v.correct is not None for s in v.best)
        if not counts or not self.scored_models:
            return None, None
        strategy, right = max(sorted(counts.items()), key=lambda kv: kv[1])
        return strategy, right / self.scored_models

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accuracy"] = self.accuracy
        data["regret"] = self.regret
        data["constant_baseline"] = dict(zip(("strategy", "accuracy"),
                                             self.constant_baseline))
        data["regret_unit"] = REGRET_UNITS[Objective(self.objective)]
        return data


def shipped_rules_chooser(objective: Objective) -> Chooser:
    """The pick recorded in each cell (the shipped rules), and their fallback order."""
    order = load_rules()["objectives"][objective.value]["fallback_order"]

    def choose(_model: str, evidence: dict[str, Any]) -> tuple[str | None, list[str]]:
        return evidence.get("recommendation", {}).get(objective.value), order

    return choose


def by_model(cells: list[CellResult]) -> dict[str, dict[str, CellResult]]:
    """Candidate cells per model, by strategy: AUTO is what is scored, not a candidate.

    Latencies are pooled over equal files (``pooled_latencies``).
    """
    grouped: dict[str, list[CellResult]] = {}
    for cell in cells:
        if cell.strategy != AUTO:
            grouped.setdefault(cell.model, []).append(cell)
    return {model: {c.strategy: c for c in pooled_latencies(found)}
            for model, found in grouped.items()}


def pooled_latencies(cells: list[CellResult]) -> list[CellResult]:
    """One model's cells, each file's latency replaced by the mean over the equal files.

    Files with one ``runtime_fingerprint`` are one graph to run (``latency``
    module doc): their measured latencies are samples of one figure, so the
    runtime objective ranks them on the same number, and a best set never
    holds one copy of a graph without the other.  Cells without a fingerprint
    (older results) keep their own figure.
    """
    timed: dict[str, list[float]] = {}
    for cell in cells:
        if cell.runtime_fingerprint and cell.ort_latency_ms is not None:
            timed.setdefault(cell.runtime_fingerprint, []).append(cell.ort_latency_ms)
    pooled = []
    for cell in cells:
        samples = timed.get(cell.runtime_fingerprint or "", [])
        if len(samples) > 1 and cell.ort_latency_ms is not None:
            cell = replace(cell, ort_latency_ms=statistics.fmean(samples))
        pooled.append(cell)
    return pooled


def model_evidence(by_strategy: dict[str, CellResult]) -> dict[str, Any]:
    """What a chooser may read of a model: its recorded features and picks."""
    first = next((c for c in by_strategy.values() if c.features or c.recommendation), None)
    if first is None:
        return {}
    return {"features": first.features, "recommendation": first.recommendation}


def score_selector(cells: list[CellResult], objective: Objective | str,
                   chooser: Chooser | None = None) -> SelectorScore:
    """Accuracy, regret and confusion of ``chooser``'s picks (default: the shipped rules)."""
    goal = Objective(objective)
    choose = chooser or shipped_rules_chooser(goal)
    score = SelectorScore(objective=goal.value, scored_models=0, correct=0)
    for model, by_strategy in by_model(cells).items():
        best = best_cells(list(by_strategy.values()), goal)
        pick, order = choose(model, model_evidence(by_strategy))
        path, landed = _auto_path(pick, order, by_strategy) if pick else ([], None)
        verdict = ModelVerdict(model, goal.value, sorted(c.strategy for c in best), pick, path,
                               landed, None, None)
        if best and pick is not None:
            score.scored_models += 1
            verdict.correct = pick in verdict.best
            score.correct += int(verdict.correct)
            row = score.confusion.setdefault("/".join(sorted(verdict.best)), {})
            row[pick] = row.get(pick, 0) + 1
            verdict.regret = _regret(by_strategy, path, landed, best[0], goal)
        score.verdicts.append(verdict)
    return score


def _auto_path(pick: str, fallback_order: list[str], by_strategy: dict[str, CellResult],
               ) -> tuple[list[str], str | None]:
    path = []
    for strategy in auto_order(pick, fallback_order):
        cell = by_strategy.get(strategy)
        if cell is None:
            continue
        path.append(strategy)
        if cell.status in (OK, PARITY_FAILED):
            return path, strategy
    return path, None


def _regret(by_strategy: dict[str, CellResult], path: list[str], landed: str | None,
            best: CellResult, objective: Objective) -> float:
    if objective is Objective.SPEED:
        spent = sum(by_strategy[s].judged_seconds or 0.0 for s in path)
        return max(0.0, spent - (best.judged_seconds or 0.0))
    chosen = by_strategy.get(landed) if landed else None
    usable = chosen is not None and chosen.status == OK
    if objective is Objective.RUNTIME:
        best_ms = min(c.ort_latency_ms for c in best_cells(list(by_strategy.values()),
                                                            objective))
        if not usable or chosen.ort_latency_ms is None:
            return 1.0
        return max(0.0, chosen.ort_latency_ms / best_ms - 1.0)
    best_quality = sum(quality_key(best))
    if not usable:
        return best_quality  # nothing usable: everything is lost
    return max(0.0, best_quality - sum(quality_key(chosen)))
