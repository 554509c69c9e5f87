"""Module calls as they happen: which module ran, with which tensors in and out.

Forward hooks on every module record each call's tensors as numpy copies.
USAGE_BASED attributes graph nodes by finding those tensors among the
graph's intermediate values; the per-module comparison of the tools compares
each module's recorded outputs with its ONNX region's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils import _pytree as pytree

from modelexport.inputs import flatten_outputs


@dataclass
class ModuleCall:
    """One observed forward call: which module, and the tensors in and out."""

    path: str
    inputs: list[np.ndarray] = field(default_factory=list)
    outputs: list[np.ndarray] = field(default_factory=list)


def record_calls(model: torch.nn.Module, run: Callable[[], object], keep_inputs: bool = True,
                 ) -> list[ModuleCall]:
    """Run ``run()`` with hooks on every module; return the calls in order.

    ``keep_inputs=False`` records outputs only, halving the copies held.
    """
    calls: list[ModuleCall] = []
    handles = []

    def arrays(value: object) -> list[np.ndarray]:
        return [t.detach().cpu().numpy().copy() for t in pytree.tree_leaves(value)
                if isinstance(t, torch.Tensor)]

    for path, module in model.named_modules():
        def hook(_m, args, kwargs, output, path=path):
            calls.append(ModuleCall(path, arrays((args, kwargs)) if keep_inputs else [],
                                    [o.detach().cpu().numpy().copy()
                                     for o in flatten_outputs(output)]))
        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return calls
