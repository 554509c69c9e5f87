"""Proof the gate works: planted regressions in a temporary clone must fail it.

Each test clones this repository, commits one change on top, and runs the
gate with BASE = the commit before it, on a small subset of the matrix.
The proofs under load (marker ``load``, ``make test-load``) run the same gate
beside a process that keeps one core busy, as a shared CI runner would.  They
are not in CI: measured, they do not hold every time yet (docs/harness.md, "The gate").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelexport.gate.run import run_gate

REPO = Path(__file__).resolve().parents[1]
HTP = "modelexport/attribution/scope_names.py"  # the attribution only HTP uses
API = "modelexport/api.py"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    git(tmp_path, "clone", "--quiet", str(REPO), str(target))
    git(target, "config", "user.email", "gate@test")
    git(target, "config", "user.name", "gate test")
    return target


def commit_change(repo: Path, path: str, old: str, new: str, message: str) -> None:
    file = repo / path
    text = file.read_text()
    assert old in text, f"anchor for the planted change not found in {path}"
    file.write_text(text.replace(old, new, 1))
    git(repo, "commit", "--quiet", "-am", message)


EXPORT = "            return self._export(model, example, staging, monitor, started, part)\n"


def planted_slowdown(share: float) -> str:
    """``share`` more process CPU time on every export that HTP writes, and on no other."""
    return (
        "            cpu_start = time.process_time()\n"
        "            report = self._export(model, example, staging, monitor, started, part)\n"
        "            if report.summary.final_strategy == \"htp\":  # planted\n"
        "                spent = time.process_time() - cpu_start\n"
        "                spent -= report.cpu_timings.get(\"validate\", 0.0)\n"
        f"                until = time.process_time() + {share} * spent\n"
        "                while time.process_time() < until:\n"
        "                    pass\n"
        "            return report\n")


# In CI the proof plants 20%: with 10%, twice the threshold, the gate read +6%
# here and +3% in one CI run (a miss); see docs/harness.md, "The gate".
PLANTED_SLOWDOWN = planted_slowdown(0.20)
PLANTED_UNDER_LOAD = planted_slowdown(0.10)
LOAD_MODELS = ["bert", "small_cnn", "shared_block"]


@pytest.mark.parametrize(("path", "anchor"), [(API, "EXPORT"), (HTP, "RESOLVE")])
def test_the_planted_changes_still_find_their_lines(path, anchor):
    """The slow proofs plant their regressions by replacing a line: a refactor that
    moves the line should fail here, in seconds, not in the slow run."""
    assert globals()[anchor] in (REPO / path).read_text()


@pytest.fixture
def cpu_hog():
    """Another CPU-bound process on the machine for the whole test."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield hog
    hog.kill()
    hog.wait()


def assert_flags_exactly_htp(report, models: list[str]) -> None:
    timing = sorted(f.benchmark for f in report.findings if f.kind == "timing")
    assert timing == sorted(f"time_export {m}/htp" for m in models), report.table()
    assert not [f for f in report.findings if f.kind == "quality"], report.table()


@pytest.mark.slow
def test_planted_slowdown_fails_the_gate_and_is_named(clone):
    commit_change(clone, API, EXPORT, PLANTED_SLOWDOWN, "plant a 20% slowdown in HTP")
    report = run_gate(clone, "HEAD~1", models=["bert"], strategies=["htp", "usage_based"])
    assert_flags_exactly_htp(report, ["bert"])
    assert "time_export bert/htp" in report.table()


@pytest.mark.load
def test_planted_slowdown_under_load_fails_exactly_the_cells_it_touches(clone, cpu_hog):
    commit_change(clone, API, EXPORT, PLANTED_UNDER_LOAD, "plant a 10% slowdown in HTP")
    report = run_gate(clone, "HEAD~1", models=LOAD_MODELS, strategies=["htp", "usage_based"])
    assert_flags_exactly_htp(report, LOAD_MODELS)


@pytest.mark.load
def test_no_op_commit_passes_under_load(clone, cpu_hog):
    commit_change(clone, "README.md", "# modelexport", "# modelexport\n", "no-op")
    report = run_gate(clone, "HEAD~1", models=LOAD_MODELS, strategies=["htp", "usage_based"])
    assert report.passed, report.table()


RESOLVE = "            module, complete = resolve_scope(segments, request.tree)\n"


@pytest.mark.slow
def test_tags_dropped_to_the_root_fail_on_quality(clone):
    commit_change(clone, HTP, RESOLVE,
                  RESOLVE +
                  "            if type(request.model).__name__ == \"SmallCNN\":  # planted\n"
                  "                module, complete = \"\", False\n",
                  "plant a tagging regression for one zoo cell")
    report = run_gate(clone, "HEAD~1", models=["small_cnn", "shared_block"],
                      strategies=["htp"], rounds=1)
    quality = {f.benchmark for f in report.findings if f.kind == "quality"}
    # The export's own self-check now refuses the misplaced parameters, so the
    # cell's verdict drops from ok to check-failed: caught as a status regression.
    assert "small_cnn/htp" in quality, report.table()
    assert "check-failed" in report.table()
    assert not any("shared_block" in q for q in quality)


@pytest.mark.slow
def test_no_op_commit_passes(clone):
    commit_change(clone, "README.md", "# modelexport", "# modelexport\n", "no-op")
    report = run_gate(clone, "HEAD~1", models=["bert", "small_cnn"], strategies=["htp", "fx"])
    assert report.passed, report.table()


def _timings(ratios: list[float]) -> dict:
    """One cell's rounds: BASE at 1 s, HEAD at the given paired ratio."""
    from modelexport.gate.paired_timing import CellTiming

    return {"m/s": CellTiming(base=[1.0] * len(ratios), head=list(ratios), ratios=list(ratios))}


@pytest.mark.parametrize(("ratios", "regressed"), [
    ([1.12, 1.09, 1.11, 1.03, 1.15, 1.10], True),   # slower in every round
    ([1.12, 1.09, 1.11, 0.97, 1.15, 1.10], True),   # one unlucky round
    ([1.20, 1.25, 1.23, 1.21, 1.16, 1.22], True),   # the planted 20%, as measured here
    ([1.08, 1.07, 0.95, 1.06, 0.97, 1.09], False),  # median past 5%, rounds disagree
    ([1.04, 1.03, 1.02, 1.04, 1.01, 1.03], False),  # significant but under the threshold
    ([1.20, 1.20, 1.20, 1.20, 0.98, 0.99], True),   # 20% with two unlucky rounds: the
                                                    # old rule (5 of 6 slower) missed it
])
def test_a_timing_regression_needs_the_median_and_a_significant_slowdown(ratios, regressed):
    from modelexport.gate.run import GateReport, _compare_timings

    report = GateReport("base", "head", rounds=len(ratios), threshold=0.05)
    _compare_timings(report, _timings(ratios))
    assert report.timings["m/s"]["regressed"] is regressed
    assert bool(report.findings) is regressed
    assert report.timings["m/s"]["rounds"] == ratios
    assert " ".join(f"{r:.2f}" for r in ratios) in report.table()


def test_the_bound_widens_with_the_scatter_of_the_rounds():
    from modelexport.gate.significance import ratio_lower_bound

    quiet = ratio_lower_bound([1.10, 1.11, 1.09, 1.10, 1.12, 1.08])
    noisy = ratio_lower_bound([1.30, 0.92, 1.10, 1.25, 0.95, 1.08])
    assert 1.07 < quiet < 1.10  # about the same mean, little scatter: HEAD is slower
    assert noisy < 1.0 < quiet  # about the same mean, much scatter: not shown
    assert ratio_lower_bound([1.5]) == 0.0  # one round cannot show its scatter


def test_one_round_shows_timings_without_judging_them():
    from modelexport.gate.run import GateReport, _compare_timings

    report = GateReport("base", "head", rounds=1, threshold=0.05)
    _compare_timings(report, _timings([1.5]))
    assert report.passed
    assert "shown, not judged" in report.table()


def test_a_cell_that_fails_to_export_is_listed_as_untimed_with_the_reason():
    from modelexport.gate.paired_timing import CellTiming
    from modelexport.gate.run import GateReport, _compare_timings

    report = GateReport("base", "head", rounds=2, threshold=0.05)
    _compare_timings(report, {"bert/fx": CellTiming(error="base: FxTraceError: cannot trace")})
    assert report.passed and not report.timings
    assert "bert/fx" in report.untimed
    assert "not timed (judged on quality): base: FxTraceError" in report.table()


def test_a_round_ratio_is_the_paired_median_not_fooled_by_one_lucky_export():
    from modelexport.gate.paired_timing import _round_ratio

    # contention stretched two of five HEAD exports: the median ignores them
    disturbed = [{"base": 0.020, "head": h} for h in (0.020, 0.026, 0.020, 0.025, 0.020)]
    assert _round_ratio(disturbed) == pytest.approx(1.0)
    # 20% slower, but BASE caught one fast spell of the machine: still 20%
    slower = [{"base": b, "head": 0.024} for b in (0.020, 0.020, 0.016, 0.020, 0.020)]
    assert _round_ratio(slower) == pytest.approx(1.2)


def test_a_silent_timing_worker_is_killed_with_a_line_naming_the_cell(tmp_path):
    from modelexport.errors import ModelExportError
    from modelexport.gate.paired_timing import _Worker

    worker = _Worker.__new__(_Worker)
    worker.tree, worker._log = tmp_path, open(tmp_path / "log", "w")  # noqa: SIM115
    worker._process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                       stdout=subprocess.PIPE, text=True)
    with pytest.raises(ModelExportError, match="gave no answer for bert/htp within 1 s"):
        worker.read("bert/htp", timeout=1)
    assert worker._process.poll() is not None  # killed, not left running
    worker._log.close()


def test_cells_that_stalled_in_the_matrix_run_are_not_timed():
    from modelexport.gate.paired_timing import time_pairs
    from modelexport.gate.run import _stalled_cells

    runs = {"base": {"cells": [{"model": "m", "strategy": "hanging", "status": "timeout"},
                               {"model": "m", "strategy": "htp", "status": "ok"}]},
            "head": {"cells": [{"model": "m", "strategy": "crashing", "status": "crashed"}]}}
    stalled = _stalled_cells(runs)
    assert stalled == {"m/hanging": "base: timeout in the matrix run",
                       "m/crashing": "head: crashed in the matrix run"}
    timings = time_pairs({}, ["m"], ["hanging", "crashing"], rounds=6, repeat=10, skip=stalled)
    assert {k: t.error for k, t in timings.items()} == stalled
    assert not any(t.ratios for t in timings.values())
