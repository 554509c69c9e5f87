"""The TorchScript exporter's search for ONNX functions, run on the graph's structure only.

After serialising a model, ``torch.onnx.export(dynamo=False)`` looks for
nodes that call an onnxscript function registered as a custom symbolic, so
that it can add the function's definition to the model.  To look, it parses
the whole serialised model with protobuf (``_add_onnxscript_fn``), which
copies every weight into the parsed message, and then reads only the nodes.
On ResNet-50 (94 MB) that parse took 52 to 65 ms of a 0.9 s export; it grows
with the weights, not the graph.  Almost every model has no such node, and
the parse is then thrown away.

Inside :func:`structure_only_function_scan`, the exporter's own search runs
on the model's *shell* instead: the structure cut out of the bytes by the
wire walk (``output.wire``, about 1 ms on ResNet-50), every node there, the
large weights left out.  A model with no function to add comes back as the
same bytes it went in as, exactly as the exporter would return it.  A model
that does call one goes through the exporter's own function, unchanged.

Like ``exporter_sources``, this wraps a private exporter function once per
process and acts only inside the block, for the calling thread: a plain
``torch.onnx.export`` elsewhere in the user's process is left as it was.  On
a torch without the function nothing is wrapped and the export parses as
before (``tests/test_function_scan.py`` fails if the shortcut stops being
taken).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import onnx

from modelexport.output.onnx_payload import INLINE_BYTES
from modelexport.output.wire import split_payloads

_ACTIVE = threading.local()


@contextlib.contextmanager
def structure_only_function_scan() -> Iterator[None]:
    """Inside the block, TorchScript exports on this thread scan for functions cheaply."""
    _install()
    previous = getattr(_ACTIVE, "on", False)
    _ACTIVE.on = True
    try:
        yield
    finally:
        _ACTIVE.on = previous


@functools.cache
def _install() -> None:
    """Wrap the exporter's ``_add_onnxscript_fn`` once per process (module doc)."""
    try:
        from torch.onnx._internal.torchscript_exporter import onnx_proto_utils
    except ImportError:
        return
    original = getattr(onnx_proto_utils, "_add_onnxscript_fn", None)
    find = getattr(onnx_proto_utils, "_find_onnxscript_op", None)
    if original is None or find is None:
        return

    def add_onnxscript_functions(model_bytes: bytes, custom_opsets: Mapping[str, int],
                                 ) -> Any:
        if not getattr(_ACTIVE, "on", False) or not isinstance(model_bytes, bytes):
            return original(model_bytes, custom_opsets)
        shell = split_payloads(memoryview(model_bytes), INLINE_BYTES).shell
        functions, _ = find(onnx.ModelProto.FromString(shell).graph, set(), custom_opsets, [])
        if functions:
            return original(model_bytes, custom_opsets)
        return model_bytes

    onnx_proto_utils._add_onnxscript_fn = add_onnxscript_functions
