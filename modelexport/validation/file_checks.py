"""Is the file valid?  The same two questions for an export and for ``validate``.

The full ONNX checker (with shape inference), and an ONNX Runtime session
created from the saved file.  This catches files that an exporter wrote
happily and no runtime can open (type errors, bad shapes, an op with no CPU
kernel).

The checker reads the graph's *skeleton*: large initializers become typed
graph inputs, so shape inference sees every shape and small constant (a
Reshape's target) without copying the weights, and ONNX Runtime, which does
read them, external data included, checks their size against their shape.
The session is opened from the file (its C++ loader reads it, with no copy
through Python) with weight pre-packing off: a kernel-speed relayout that
says nothing about validity and was about half of bert-base's load time.

A session that only answers "does it load" is made with graph optimisation
off.  Loading still parses the file, resolves the graph (ONNX Runtime's own
type and shape inference, initializer values included) and finds a kernel
for every node; the optimisers (constant folding, fusions) would only
rewrite a graph that already passed all that, and cost bert-base's load
0.17 to 0.27 s more (0.37 against 0.54 s).  A session kept for parity is
made with the default optimisations a user's session gets, so the outputs
compared are the ones a user would see, and a folding that breaks shows up
there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from modelexport.errors import one_line
from modelexport.onnx_runtime.sessions import open_session, session_options
from modelexport.output.onnx_payload import skeleton


def checker_problem(graph: onnx.ModelProto) -> str | None:
    """None when the full checker accepts ``graph``'s skeleton, else why not, in one line."""
    try:
        onnx.checker.check_model(skeleton(graph).SerializeToString(), full_check=True)
    except Exception as exc:
        return one_line(exc, 200)
    return None


def runtime_load(path: str | Path, optimize: bool = False) -> tuple[Any, str | None]:
    """ONNX Runtime's session on the file at ``path``, or None and why it could not load.

    ``optimize`` gives the session a user's default graph optimisations (for
    a parity run on it); without, the load only checks (module doc).
    """
    level = "all" if optimize else "disable"
    try:
        return open_session(path, session_options(level=level, prepack=False)), None
    except Exception as exc:
        return None, one_line(exc, 200)


@dataclass
class FileVerdict:
    """What the checker and ONNX Runtime said about one file (None: no objection).

    ``session`` is the runtime's session on the file, kept only when asked
    (``check_file(keep_session=True)``): a parity check that follows runs on
    it instead of loading the file a second time (0.3 s and the weights'
    memory again on bert-base).
    """

    checker: str | None
    runtime: str | None
    session: Any = field(default=None, repr=False, compare=False)

    @property
    def loads(self) -> bool:
        return self.runtime is None

    def findings(self) -> list[tuple[str, str]]:
        """(check name, line) per objection; empty when the file is valid."""
        found = []
        if self.checker is not None:
            found.append(("checker", f"ONNX checker: {self.checker}"))
        if self.runtime is not None:
            found.append(("runtime-load", f"ONNX Runtime cannot load the file: {self.runtime}"))
        return found

    def problems(self) -> list[str]:
        """One line per objection (the self-check's failures); empty when the file is valid."""
        return [line for _, line in self.findings()]


def check_file(path: str | Path, graph: onnx.ModelProto | None = None,
               keep_session: bool = False) -> FileVerdict:
    """Ask the checker and ONNX Runtime about the file at ``path``.

    ``graph`` is the same model already in memory (an export has it); without
    it the file's graph is read, its external weights left on disk.
    """
    if graph is None:
        graph = onnx.load(str(path), load_external_data=False)
    session, runtime = runtime_load(path, optimize=keep_session)
    return FileVerdict(checker_problem(graph), runtime, session if keep_session else None)
