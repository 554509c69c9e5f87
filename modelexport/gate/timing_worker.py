"""One side of the gate's timing: a process that runs inside that side's worktree.

The gate runs this file by path (``runpy.run_path``) with the side's worktree
as the working directory and on ``PYTHONPATH``, so ``modelexport`` and
``model_zoo`` below are the side's code, not the gate's.  That is also why
nothing here imports from this package at module level, and why it uses only
the surface every commit has: ``export_model`` and the zoo registry.

The gate keeps one worker per side alive and asks the two, turn about, to
export the same cell, so the two exports of a pair run a fraction of a second
apart on the same machine (docs/harness.md, "The gate").  Protocol: one JSON request
per line on stdin (``{"model": ..., "strategy": ...}``), one JSON answer per
line on the stdout the process started with (``{"cpu": s, "wall": s}`` or
``{"error": "..."}``); everything the libraries print goes to stderr, so it
cannot corrupt the channel.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Any

TIER = "tiny"
SEED = 0


def _answer(request: dict[str, Any], loaded: dict[str, tuple[Any, Any]], scratch: str) -> dict:
    from model_zoo.registry import get_entry
    from modelexport import export_model

    name, strategy = request["model"], request["strategy"]
    if name not in loaded:
        entry = get_entry(name)
        model = entry.build(TIER, seed=SEED)
        loaded[name] = (model, entry.inputs(model, TIER, SEED))
    model, inputs = loaded[name]
    path = os.path.join(scratch, f"{name}-{strategy}.onnx")
    gc.collect()  # no earlier export's garbage collected on this one's clock
    wall, cpu = time.perf_counter(), time.process_time()
    export_model(model, inputs, path, strategy=strategy, validate=False)
    return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}


def _memory_folder() -> str | None:
    """A memory-backed folder for the exported files, where the machine has one.

    Written to disk, a small export's CPU time varied by up to 20% from one
    export to the next (the kernel's time in the write is process time);
    on ``/dev/shm`` by about 3%, which is what lets the gate see 10% on a 20 ms cell.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # prints from any library land in stderr, never in the answers
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    torch.set_num_threads(1)  # as the zoo's workers: CPU time a co-tenant does not stretch
    import model_zoo  # noqa: F401  (registers the built-in entries)

    scratch = tempfile.mkdtemp(prefix="modelexport-gate-worker-", dir=_memory_folder())
    loaded: dict[str, tuple[Any, Any]] = {}
    channel.write(json.dumps({"ready": True}) + "\n")
    try:
        for line in sys.stdin:
            try:
                answer = _answer(json.loads(line), loaded, scratch)
            except Exception as exc:  # the cell fails on this side; the gate judges it on quality
                answer = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
            channel.write(json.dumps(answer) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
