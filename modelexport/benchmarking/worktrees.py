"""The git calls the gate and bench-history share: run a command, check out a worktree."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelexport.errors import ModelExportError


def git(repo: Path, *args: str) -> str:
    """``git -C repo args``; its stdout, or a one-line error naming the command."""
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise ModelExportError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def worktree(repo: Path, commit: str, prefix: str) -> Iterator[Path]:
    """``commit`` checked out in a temporary worktree, removed however the block ends."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    tree = scratch / "tree"
    git(repo, "worktree", "add", "--detach", str(tree), commit)
    try:
        yield tree
    finally:
        git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(scratch, ignore_errors=True)
