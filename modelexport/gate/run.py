"""The regression gate: BASE and HEAD benchmarked on one machine, in one run.

Both commits are checked out into temporary git worktrees.  Each side's
processes import that side's code (``PYTHONPATH`` points at its worktree;
the installed package is an editable *path* entry, which ``PYTHONPATH``
precedes), with one hash seed for both.

Verdicts:

* timing (``paired_timing``): per round, one fresh worker per side exports
  each cell ``repeat`` times as back-to-back pairs, in *process CPU time*
  with torch on one thread (docs/harness.md, "Timing"), files on a memory-backed
  folder; the round's figure is the median paired HEAD / BASE ratio.  A
  cell regresses when the median over rounds exceeds ``1 + threshold``
  and the rounds show HEAD slower with 95% confidence (``significance``):
  pairing divides out the machine's slow drift, the median over rounds
  sets the size of the slowdown, the bound asks the rounds' scatter whether
  it is real;
* quality (one matrix run of each side, ``modelexport zoo run``): any
  worsening fails, whatever its size: a cell that was ``ok`` and is not
  (parity error past the tolerance turns a cell ``parity-failed``), a drop
  in coverage, anchored accuracy or exact + inherited share, a rise in root
  share, and selector accuracy falling under the quality objective (the
  speed and runtime best sets are ranked by timings, whose noise on a
  shared machine would read as a quality regression).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelexport.benchmarking.worktrees import git, worktree
from modelexport.errors import ModelExportError
from modelexport.gate.paired_timing import CellTiming, time_pairs
from modelexport.gate.significance import ratio_lower_bound
from modelexport.harness.cells import CRASHED, OK, TIMEOUT, CellResult
from modelexport.harness.results import EXPECTATIONS_SCHEMA
from modelexport.harness.scoring import TIMED_OBJECTIVES
from modelexport.strategies import strategy_names

DEFAULT_MODELS = ["small_cnn", "shared_block", "bert", "gpt2", "vit", "resnet"]
_EPS = 1e-9


@dataclass
class Regression:
    kind: str  # "timing" or "quality"
    benchmark: str
    base: str
    head: str
    detail: str


@dataclass
class GateReport:
    base: str
    head: str
    rounds: int
    threshold: float
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)
    findings: list[Regression] = field(default_factory=list)
    untimed: dict[str, str] = field(default_factory=dict)  # cell -> why it has no timing
    wall_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.findings

    def table(self) -> str:
        rows = [f"gate {self.base[:10]} -> {self.head[:10]}: {self.rounds} rounds of paired "
                f"exports, timing threshold {self.threshold:.0%} on the median paired "
                f"CPU-time ratio, {self.wall_seconds:.0f}s"]
        rows.append(f"{'benchmark (CPU s)':40s} {'base':>10s} {'head':>10s} {'ratio':>7s} "
                    f"{'>=95%':>6s}  rounds")
        if self.rounds < 2:
            rows.append("(one round cannot show its own scatter: timings are shown, not judged)")
        for key, t in sorted(self.timings.items()):
            flag = " <- SLOWER" if t.get("regressed") else ""
            rounds = " ".join(f"{r:.2f}" for r in t["rounds"])
            rows.append(f"{'time_export ' + key:40s} {t['base']:>9.3f}s {t['head']:>9.3f}s "
                        f"{t['ratio']:>7.2f} {t['lower_bound']:>6.2f}  {rounds}{flag}")
        for key, why in sorted(self.untimed.items()):
            rows.append(f"{'time_export ' + key:40s} not timed (judged on quality): {why[:100]}")
        if self.findings:
            rows.append("")
            rows.append("REGRESSIONS")
            rows.append(f"{'kind':8s} {'benchmark':40s} {'base':>12s} {'head':>12s}  detail")
            for f in self.findings:
                rows.append(f"{f.kind:8s} {f.benchmark:40s} {f.base:>12s} {f.head:>12s}  "
                            f"{f.detail}")
        else:
            rows.append("no regression")
        return "\n".join(rows) + "\n"


def _measure(worktree: Path, models: list[str], strategies: list[str], out: Path,
             empty: Path) -> dict:
    """One matrix run of one side, in that side's code; returns its results.json.

    ``empty`` is an expectations file with no tiers: the gate judges, not the run.
    """
    # one hash seed for both sides: string hashing sets dict layouts, which moves
    # CPU time between processes by a few percent
    env = {**os.environ, "PYTHONPATH": str(worktree), "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-m", "modelexport.cli", "zoo", "run", "--tier", "tiny",
               "--models", *models, "--strategies", *strategies, "--out", str(out),
               "--jobs", "1", "--expectations", str(empty)]
    done = subprocess.run(command, env=env, cwd=worktree, capture_output=True, text=True,
                          check=False)
    results = out / "results.json"
    if not results.exists():
        raise ModelExportError(f"matrix run in {worktree} produced no results: "
                               f"{done.stderr.strip().splitlines()[-1:]}")
    return json.loads(results.read_text())


DEFAULT_THRESHOLD = 0.05


def run_gate(repo: Path, base: str, head: str = "HEAD", rounds: int = 6,
             threshold: float = DEFAULT_THRESHOLD, repeat: int = 10,
             models: list[str] | None = None, strategies: list[str] | None = None,
             log: Callable[[str], None] = lambda _: None) -> GateReport:
    started = time.perf_counter()
    models, strategies = models or DEFAULT_MODELS, strategies or strategy_names()
    sides = {"base": git(repo, "rev-parse", base), "head": git(repo, "rev-parse", head)}
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="modelexport-gate-") as scratch_dir, \
            worktree(repo, sides["base"], "modelexport-gate-base-") as base_tree, \
            worktree(repo, sides["head"], "modelexport-gate-head-") as head_tree:
        scratch, trees = Path(scratch_dir), {"base": base_tree, "head": head_tree}
        no_expectations = scratch / "no-expectations.json"
        no_expectations.write_text(f'{{"schema": "{EXPECTATIONS_SCHEMA}", "tiers": {{}}}}')
        for side in ("base", "head"):
            log(f"quality: matrix run of {side} ({sides[side][:10]})")
            runs[side] = _measure(trees[side], models, strategies, scratch / side,
                                  no_expectations)
        timings = time_pairs(trees, models, strategies, rounds, repeat, log,
                             skip=_stalled_cells(runs))
    report = GateReport(base=sides["base"], head=sides["head"], rounds=rounds,
                        threshold=threshold)
    _compare_timings(report, timings)
    _compare_quality(report, runs["base"], runs["head"])
    report.wall_seconds = time.perf_counter() - started
    return report


def _stalled_cells(runs: dict[str, dict]) -> dict[str, str]:
    """Cells that timed out or crashed in a side's matrix run: timing them would stall too."""
    stalled = {}
    for side, results in runs.items():
        for key, cell in _cells(results).items():
            if cell.status in (TIMEOUT, CRASHED):
                stalled.setdefault(key, f"{side}: {cell.status} in the matrix run")
    return stalled


def _cells(results: dict) -> dict[str, CellResult]:
    return {cell.key: cell for cell in map(CellResult.from_dict, results["cells"])}


def _compare_timings(report: GateReport, timings: dict[str, CellTiming]) -> None:
    """Per cell: the median over rounds of each round's paired HEAD / BASE ratio,
    and the ratio the rounds show HEAD exceeding with 95% confidence.

    Within a round the two sides' exports of a cell run back to back
    (``paired_timing``), so the machine's slow drift divides out of each
    ratio.  A regression needs both a median past the threshold (the size)
    and a lower bound above 1 (the rounds agree that HEAD is slower at all):
    on a noisy day the bound widens, and the gate asks for more evidence.
    """
    for key, timing in timings.items():
        if len(timing.ratios) != report.rounds:  # failed to export in some round
            report.untimed[key] = timing.error or "no timed pair in some round"
            continue
        ratios = timing.ratios
        ratio, bound = statistics.median(ratios), ratio_lower_bound(ratios)
        base, head = statistics.median(timing.base), statistics.median(timing.head)
        regressed = ratio > 1 + report.threshold and bound > 1
        report.timings[key] = {"base": base, "head": head, "ratio": ratio,
                               "lower_bound": bound, "rounds": list(ratios),
                               "regressed": regressed}
        if regressed:
            report.findings.append(Regression(
                "timing", f"time_export {key}", f"{base:.3f}s", f"{head:.3f}s",
                f"{ratio - 1:+.0%} slower (median of {report.rounds} rounds of paired "
                f"exports; at least {bound - 1:+.0%} with 95% confidence); "
                f"threshold {report.threshold:.0%}"))


_LOWER_IS_WORSE = ("coverage", "anchored_accuracy")


def _compare_quality(report: GateReport, base_run: dict, head_run: dict) -> None:
    base_cells, head_cells = _cells(base_run), _cells(head_run)
    for key in sorted(base_cells):
        base, head = base_cells[key], head_cells.get(key)
        if head is None:
            report.findings.append(Regression("quality", key, base.status, "missing",
                                           "cell not run by HEAD"))
            continue
        if base.status == OK and head.status != OK:
            report.findings.append(Regression("quality", key, OK, head.status, head.error[:120]))
            continue
        if base.status != OK or head.status != OK:
            continue
        for figure in _LOWER_IS_WORSE:
            before, after = getattr(base, figure), getattr(head, figure) or 0.0
            if before is not None and after < before - _EPS:
                report.findings.append(Regression("quality", f"{figure} {key}", f"{before:.4f}",
                                               f"{after:.4f}", f"{figure} dropped"))
        if (head.quality or 0.0) < (base.quality or 0.0) - _EPS:
            report.findings.append(Regression("quality", f"exact+inherited {key}",
                                           f"{base.quality or 0.0:.4f}",
                                           f"{head.quality or 0.0:.4f}",
                                           "share known by the strategy dropped"))
        if (head.root or 0.0) > (base.root or 0.0) + _EPS:
            report.findings.append(Regression("quality", f"root_share {key}", f"{base.root:.4f}",
                                           f"{head.root:.4f}", "more nodes on the root"))
    for objective, score in base_run["selector"].items():
        if objective in TIMED_OBJECTIVES:
            continue  # its best set is ranked by a timing: noise is no quality verdict
        before = score["accuracy"]
        after = head_run["selector"].get(objective, {}).get("accuracy")
        if before is not None and (after is None or after < before - _EPS):
            report.findings.append(Regression("quality", f"selector accuracy ({objective})",
                                           f"{before:.2f}", "-" if after is None else
                                           f"{after:.2f}", "selector accuracy dropped"))
