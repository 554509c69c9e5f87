"""Proof the gate works: planted regressions in a temporary clone must fail it.

Each test clones this repository, commits one change on top, and runs the
gate with BASE = the commit before it, on a small subset of the matrix.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from modelexport.harness.gate import run_gate

REPO = Path(__file__).resolve().parents[1]
HTP = "modelexport/strategies/htp.py"


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


CAPTURE = "        return torchscript_export(request.traced, request, \"htp\")\n"


def test_planted_slowdown_fails_the_gate_and_is_named(clone):
    commit_change(clone, HTP, CAPTURE,
                  "        import time\n"
                  "        started = time.perf_counter()\n"
                  "        graph = torchscript_export(request.traced, request, \"htp\")\n"
                  "        time.sleep(0.4 * (time.perf_counter() - started))  # planted\n"
                  "        return graph\n",
                  "plant a slowdown in HTP")
    report = run_gate(clone, "HEAD~1", models=["bert"], strategies=["htp", "fx"], rounds=3)
    timing = [f for f in report.findings if f.kind == "timing"]
    assert [f.benchmark for f in timing] == ["time_export bert/htp"], report.table()
    assert not [f for f in report.findings if f.kind == "quality"]
    assert "time_export bert/htp" in report.table()


RESOLVE = "            module, complete = resolve_scope(segments, request.tree)\n"


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


def test_no_op_commit_passes(clone):
    commit_change(clone, "README.md", "# modelexport", "# modelexport\n", "no-op")
    report = run_gate(clone, "HEAD~1", models=["bert", "small_cnn"], strategies=["htp", "fx"],
                      rounds=3)
    assert report.passed, report.table()
