"""Is the file valid?  The same two questions for an export and for ``validate``.

The full ONNX checker (with shape inference), and an ONNX Runtime session
created from the saved file.  This catches files that an exporter wrote
happily and no runtime can open (type errors, bad shapes, an op with no CPU
kernel).

The checker reads the graph's *skeleton*: large initializers become typed
graph inputs, so shape inference sees every shape and small constant (a
Reshape's target) without copying the weights.

A session that only answers "does it load" reads the file in place
(:func:`runtime_load_in_place`): the file is mapped, its protobuf framing
walked (:mod:`modelexport.output.wire`), its structure parsed by protobuf,
and every large weight handed to ONNX Runtime as an external-data reference
to where the file holds it, which ONNX Runtime maps instead of copying and
checks against the tensor's shape and type.  So the file's own bytes are
what loads: a truncated payload, a length that disagrees with its shape or
broken framing fails it.  What is skipped is copying 440 MB twice (protobuf
then the runtime's tensors): on bert-base the load took 0.02 s against 0.25
to 0.4 s by path.  It is made with graph optimisation and weight pre-packing
off: loading still resolves the graph (ONNX Runtime's own type and shape
inference) and finds a kernel for every node, while the optimisers and the
pre-packing only rewrite a graph that already passed all that.

A session kept for parity is opened from the file by path, with the default
optimisations a user's session gets, so the outputs compared are the ones a
user would see, and a folding that breaks shows up there.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from modelexport.errors import one_line
from modelexport.onnx_runtime.sessions import open_session, session_options
from modelexport.output.onnx_payload import INLINE_BYTES, point_at, skeleton
from modelexport.output.wire import WireFormatError, split_payloads


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
    a parity run on it), opened from the file by path; without, the load only
    checks, reading the file in place (module doc).
    """
    try:
        if optimize:
            return open_session(path, session_options(level="all", prepack=False)), None
        return runtime_load_in_place(Path(path)), None
    except Exception as exc:
        return None, one_line(exc, 200)


def runtime_load_in_place(path: Path) -> Any:
    """A check-only session on ``path`` whose large weights ONNX Runtime maps from the file.

    The file's structure is parsed from its shell; each payload the wire
    walk found becomes an external-data reference (location, offset,
    length) into the file itself, resolved against the file's folder.
    """
    with open(path, "rb") as handle:
        if not handle.seek(0, 2):
            raise ValueError("the file is empty")
        with (mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
              memoryview(mapped) as buffer):
            try:
                split = split_payloads(buffer, INLINE_BYTES)
            except WireFormatError as exc:
                raise WireFormatError(f"not a well-formed ONNX file: {exc}") from None
    model = onnx.ModelProto.FromString(split.shell)
    for tensor, payload in zip(model.graph.initializer, split.payloads):
        if payload is not None:
            point_at(tensor, path.name, *payload)
    options = session_options(level="disable", prepack=False)
    options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                     str(path.parent))
    return open_session(model.SerializeToString(), options)


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
