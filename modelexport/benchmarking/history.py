"""Record the asv suite for the last N commits of a branch, in this environment.

``asv run RANGE`` would build a virtualenv per commit and install torch and
transformers into each.  Here every commit is checked out into a temporary
git worktree instead and benchmarked with ``asv run --python=same
--set-commit-hash``, its code put first on the path through
``ASV_PYTHONPATH`` (asv drops ``PYTHONPATH`` but passes that one on, and the
matrix's worker processes inherit it).  The benchmark definitions are this
checkout's, so every commit is measured by the same suite; a figure an old
commit did not record yet shows as a gap.

    python -m modelexport.benchmarking.history [--count 10] [--branch main] [-- ASV_RUN_ARGS...]

Arguments after ``--`` go to each ``asv run`` (``--bench TaggingPass
--quick``, ``--config other.json``).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from modelexport.benchmarking.worktrees import git, worktree
from modelexport.errors import ModelExportError


def commits(repo: Path, branch: str, count: int) -> list[str]:
    """The last ``count`` first-parent commits of ``branch``, oldest first."""
    listed = git(repo, "rev-list", "--first-parent", f"--max-count={count}", branch)
    return list(reversed(listed.split()))


def record(repo: Path, commit: str, machine: str, asv: str, asv_args: list[str]) -> float:
    """One commit benchmarked in a temporary worktree; returns the seconds it took."""
    started = time.perf_counter()
    with worktree(repo, commit, "modelexport-history-") as tree:
        env = {**os.environ, "ASV_PYTHONPATH": str(tree)}
        done = subprocess.run([asv, "run", "--python=same", f"--set-commit-hash={commit}",
                               "--machine", machine, *asv_args], cwd=repo, env=env,
                              check=False)
        if done.returncode != 0:
            raise ModelExportError(f"asv run for {commit[:10]} exited {done.returncode}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="how many commits (default 10)")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--repo", default=".")
    parser.add_argument("--machine", default=socket.gethostname())
    parser.add_argument("--asv", default=str(Path(sys.executable).parent / "asv"))
    parser.add_argument("asv_args", nargs=argparse.REMAINDER,
                        help="after --: passed to every asv run")
    args = parser.parse_args(argv)
    asv_args = args.asv_args[1:] if args.asv_args[:1] == ["--"] else args.asv_args
    repo = Path(args.repo).resolve()
    try:
        chosen = commits(repo, args.branch, args.count)
        total = 0.0
        for index, commit in enumerate(chosen, start=1):
            print(f"[{index}/{len(chosen)}] {commit[:10]} "
                  f"{git(repo, 'log', '-1', '--format=%s', commit)[:70]}", flush=True)
            seconds = record(repo, commit, args.machine, args.asv, asv_args)
            total += seconds
            print(f"[{index}/{len(chosen)}] {commit[:10]} recorded in {seconds:.0f}s",
                  flush=True)
    except ModelExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {len(chosen)} commits in {total / 60:.1f} minutes; `make publish` "
          "draws them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
