"""Module calls as they happen: which module ran, with which tensors in and out.

Forward hooks on every module record each call's tensors as numpy copies
(one per distinct tensor: a tensor seen by several calls is copied once), or
as whatever a caller's ``keep`` makes of them: USAGE_BASED keeps large ones
as sketches (``value_sketch``) and finds them among the graph's
intermediate values; the per-module comparison of the tools compares each
module's recorded outputs, exact copies, with its ONNX region's.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from modelexport.inputs import flatten_outputs


@dataclass
class ModuleCall:
    """One observed forward call: which module, and the tensors in and out."""

    path: str
    inputs: list[Any] = field(default_factory=list)  # what ``keep`` made of each tensor
    outputs: list[Any] = field(default_factory=list)


def exact_copy(array: np.ndarray) -> np.ndarray:
    """The default ``keep``: every recorded tensor as a numpy copy."""
    return array.copy()


class _Copies:
    """What ``keep`` makes of tensors, one per tensor object and version, shared between calls.

    A module's input is usually the output of the call before it, and a
    container's output is its last child's: copying each sighting copied
    bert-base's activations 3x (248 MB against 83 MB distinct) and
    ResNet-50's 3.5x (502 MB against 144 MB).  A copy is reused only while
    the very same tensor object is alive (a weak reference, so a recycled
    ``id`` cannot match) and unmodified (its version counter, which every
    in-place op bumps).  A tensor made under ``torch.inference_mode`` has no
    version counter, so it is copied at every sighting, as before.  Copies
    are read, never written, downstream.
    """

    def __init__(self, keep: Callable[[np.ndarray], Any]) -> None:
        self._keep = keep
        self._seen: dict[int, tuple[weakref.ref, int, Any]] = {}

    def __call__(self, tensor: torch.Tensor) -> Any:
        version = None if tensor.is_inference() else tensor._version
        seen = self._seen.get(id(tensor))
        if seen is not None and version is not None and seen[0]() is tensor \
                and seen[1] == version:
            return seen[2]
        array = self._keep(tensor.detach().cpu().numpy())
        if version is not None:
            self._seen[id(tensor)] = (weakref.ref(tensor), version, array)
        return array


@contextlib.contextmanager
def recording_calls(model: torch.nn.Module, keep_inputs: bool = True,
                    keep: Callable[[np.ndarray], Any] = exact_copy,
                    ) -> Iterator[list[ModuleCall]]:
    """Hooks on every module of ``model`` while active; yields the calls as they happen.

    Whatever runs the forward inside the block is recorded: a plain call
    (:func:`record_calls`) or a capture's own trace, whose forward computes
    the same values.  ``keep_inputs=False`` records outputs only, halving the
    copies held.  ``keep`` turns each tensor's numpy view into what is held.
    """
    calls: list[ModuleCall] = []
    handles = []
    copy = _Copies(keep)

    def arrays(value: object) -> list[Any]:
        return [copy(t) for t in pytree.tree_leaves(value) if isinstance(t, torch.Tensor)]

    for path, module in model.named_modules():
        def hook(_m, args, kwargs, output, path=path):
            with _untraced():
                calls.append(ModuleCall(path, arrays((args, kwargs)) if keep_inputs else [],
                                        [copy(o) for o in flatten_outputs(output)]))
        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """The JIT tracer paused, where a hook copies tensors during a trace.

    Traced, each copy's ``detach`` joins the graph (to be dropped again as
    dead code) and each ``numpy()`` raises a TracerWarning: together 0.25 ms
    a tensor, which made a tiny ResNet's USAGE_BASED export 50% slower than
    recording in a forward of its own.  Paused, the copy is plain tensor
    code, as in that forward.
    """
    state = torch._C._get_tracing_state()
    if state is None:
        yield
        return
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def record_calls(model: torch.nn.Module, run: Callable[[], object], keep_inputs: bool = True,
                 keep: Callable[[np.ndarray], Any] = exact_copy) -> list[ModuleCall]:
    """Run ``run()`` without autograd, recording every module call; return them in order."""
    with recording_calls(model, keep_inputs, keep) as calls, torch.no_grad():
        run()
    return calls
