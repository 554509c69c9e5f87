"""Which model tensor each TorchScript initializer was written from, as the exporter held it.

The TorchScript exporter keeps, until it serialises, a dict from initializer
name to the tensor it will write.  A weight written unchanged is a view of
the parameter's own storage, and so is one that constant folding transposed
(``onnx::MatMul_356`` is ``query.weight.t()``, the same memory): the
exporter never copied it.  Reading that dict tells which parameter an
initializer holds, and how, at no cost.  Without it the only way to know is
to compare values: on bert-base that reads 340 MB of transposed weights,
0.2 s of an export whose whole overhead budget is 0.5 s (issue 13).

Only tensors that share storage with the traced model's parameters and
buffers are kept: a folded result (a Conv with its BatchNorm fused in) is
fresh memory, and holding it would add its size to the export's footprint;
those are left to content matching (``parameters.match_initializers``).

The dict is read by wrapping the exporter's private ``_model_to_graph``, the
function that returns it.  The wrapper is installed once and records only
inside :func:`recording_sources`, for the calling thread, so concurrent
exports in threads do not see each other's.  On a torch without that
function nothing is recorded, and matching falls back to comparing values:
slower, never wrong (``tests/test_exporter_sources.py`` fails if the
installed torch stops recording).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from typing import Any

import torch

from modelexport.parameters import storage_key

_RECORDING = threading.local()


@contextlib.contextmanager
def recording_sources(model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that a TorchScript export inside the block fills (module doc).

    Initializer name (the exporter's, before any renaming) -> the tensor it
    was written from, for the tensors that are views of ``model``'s own
    parameters and buffers.  Empty when the exporter could not be read.
    """
    _install()
    sources: dict[str, torch.Tensor] = {}
    owned = {storage_key(t) for t in (*model.parameters(), *model.buffers())} - {None}
    previous = getattr(_RECORDING, "target", None)
    _RECORDING.target = (owned, sources)
    try:
        yield sources
    finally:
        _RECORDING.target = previous


@functools.cache
def _install() -> None:
    """Wrap the exporter's ``_model_to_graph`` once per process (module doc)."""
    try:
        from torch.onnx._internal.torchscript_exporter import utils
    except ImportError:
        return
    original = getattr(utils, "_model_to_graph", None)
    if original is None:
        return

    def model_to_graph(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        target = getattr(_RECORDING, "target", None)
        if target is not None and isinstance(result, tuple) and len(result) == 3:
            owned, sources = target
            for name, tensor in result[1].items():
                if isinstance(tensor, torch.Tensor) and storage_key(tensor) in owned:
                    sources[name] = tensor
        return result

    utils._model_to_graph = model_to_graph
