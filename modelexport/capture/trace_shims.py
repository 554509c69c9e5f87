"""Arguments the TorchScript tracer cannot record, passed in an equal form it can.

The tracer records each ATen call against an operator schema.  A Python
``bool`` given where the schema takes a ``Scalar`` (``mask.scatter(-1,
index, False)``, as transformers' top-k sparse-attention indexers write)
matches no overload in the JIT's alias analysis, and the whole trace stops
with ``INTERNAL ASSERT FAILED ... We don't have an op for aten::scatter``.
ATen converts a Scalar to the tensor's dtype either way, so ``0`` and ``1``
give the same result as ``False`` and ``True``; the export's parity check
holds every model that goes through here to that.

``BOOL_SCALAR_ARGUMENTS`` is the declared table: a torch function, and the
position and name of its Scalar argument.  The rewrite happens only while a
trace is being recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

# torch function -> (position of the Scalar argument counting ``self``, its keyword)
BOOL_SCALAR_ARGUMENTS: dict[Callable, tuple[int, str]] = {
    torch.Tensor.scatter: (3, "value"),
    torch.Tensor.scatter_: (3, "value"),
    torch.scatter: (3, "value"),
}


def _as_int(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


class _BoolScalarsAsInts(TorchFunctionMode):
    """Passes ``int(value)`` for a bool in a ``BOOL_SCALAR_ARGUMENTS`` slot while tracing."""

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        slot = BOOL_SCALAR_ARGUMENTS.get(func)
        if slot is not None and torch._C._get_tracing_state() is not None:
            position, keyword = slot
            if len(args) > position:
                args = (*args[:position], _as_int(args[position]), *args[position + 1:])
            elif keyword in kwargs:
                kwargs = {**kwargs, keyword: _as_int(kwargs[keyword])}
        return func(*args, **kwargs)


@contextlib.contextmanager
def traceable_arguments() -> Iterator[None]:
    """Inside the block, traced calls get their arguments in forms the tracer records."""
    with _BoolScalarsAsInts():
        yield
