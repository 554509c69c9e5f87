"""Scoring the matrix: reference agreement, the best strategy per model, the selector.

Definitions (also in README):

* a cell is *eligible* when it exported, passed parity, covers every node and
  puts at least 95% of its parameter-consuming nodes on their owners (tags
  that misplace more are not a usable export, however fast);
* quality ranks eligible cells by anchored accuracy first (the one figure that
  checks a tag is *right*), then by exact + inherited share (how much the
  strategy knew rather than projected);
* speed ranks eligible cells by median export time;
* the best is a *set*: cells whose rank figures tie, where times within 10% or
  50 ms of the fastest count as a tie (sub-second timings on a shared machine
  are noisier than that); quality breaks speed ties, speed breaks quality ties;
* the selector is right for a model when its pick is in the best set; its
  regret is what following AUTO (the pick, then the fallback order, up to the
  first cell that exported) costs against the best: seconds for speed,
  quality points (anchored accuracy + exact/inherited share) for quality.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from modelexport.harness.cells import AUTO, OK, PARITY_FAILED, CellResult
from modelexport.selection import load_rules

SPEED_TIE, SPEED_TIE_SECONDS = 0.10, 0.05
ANCHOR_FLOOR = 0.95
REFERENCE = "dynamo"


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
    anchored = 1.0 if cell.anchored_accuracy is None else cell.anchored_accuracy
    return (round(anchored, 3), round(cell.quality or 0.0, 3))


def _fast_enough(cells: list[CellResult]) -> list[CellResult]:
    fastest = min(c.seconds for c in cells)
    limit = max(fastest * (1 + SPEED_TIE), fastest + SPEED_TIE_SECONDS)
    return [c for c in cells if c.seconds <= limit]


def _best_quality(cells: list[CellResult]) -> list[CellResult]:
    top = max(quality_key(c) for c in cells)
    return [c for c in cells if quality_key(c) == top]


def best_cells(cells: list[CellResult], prioritize_speed: bool) -> list[CellResult]:
    """The co-best eligible cells under one objective, fastest first (empty if none)."""
    candidates = [c for c in cells if eligible(c)]
    if not candidates:
        return []
    if prioritize_speed:
        best = _best_quality(_fast_enough(candidates))
    else:
        best = _fast_enough(_best_quality(candidates))
    return sorted(best, key=lambda c: c.seconds)


@dataclass
class ModelVerdict:
    model: str
    objective: str
    best: list[str]
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

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.scored_models if self.scored_models else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["accuracy"] = self.accuracy
        return data


def _auto_path(pick: str, by_strategy: dict[str, CellResult]) -> tuple[list[str], str | None]:
    order = [pick] + [s for s in load_rules()["fallback_order"] if s != pick]
    path = []
    for strategy in order:
        cell = by_strategy.get(strategy)
        if cell is None:
            continue
        path.append(strategy)
        if cell.status in (OK, PARITY_FAILED):
            return path, strategy
    return path, None


def score_selector(cells: list[CellResult], prioritize_speed: bool) -> SelectorScore:
    objective = "speed" if prioritize_speed else "quality"
    by_model: dict[str, dict[str, CellResult]] = {}
    for cell in cells:
        if cell.strategy != AUTO:  # AUTO is what is being scored, not a candidate
            by_model.setdefault(cell.model, {})[cell.strategy] = cell
    score = SelectorScore(objective=objective, scored_models=0, correct=0)
    for model, by_strategy in by_model.items():
        best = best_cells(list(by_strategy.values()), prioritize_speed)
        pick = next((c.recommendation.get(objective) for c in by_strategy.values()
                     if c.recommendation), None)
        path, landed = _auto_path(pick, by_strategy) if pick else ([], None)
        verdict = ModelVerdict(model, objective, [c.strategy for c in best], pick, path,
                               landed, None, None)
        if best and pick is not None:
            score.scored_models += 1
            verdict.correct = pick in verdict.best
            score.correct += int(verdict.correct)
            row = score.confusion.setdefault("/".join(sorted(verdict.best)), {})
            row[pick] = row.get(pick, 0) + 1
            verdict.regret = _regret(by_strategy, path, landed, best[0], prioritize_speed)
        score.verdicts.append(verdict)
    return score


def _regret(by_strategy: dict[str, CellResult], path: list[str], landed: str | None,
            best: CellResult, prioritize_speed: bool) -> float:
    if prioritize_speed:
        spent = sum(by_strategy[s].seconds or 0.0 for s in path)
        return max(0.0, spent - (best.seconds or 0.0))
    best_quality = sum(quality_key(best))
    chosen = by_strategy.get(landed) if landed else None
    if chosen is None or chosen.status != OK:
        return best_quality  # nothing usable: everything is lost
    return max(0.0, best_quality - sum(quality_key(chosen)))
