"""What one eager forward shows about a model that reading its source cannot.

Source analysis (:mod:`modelexport.analysis.analyzer`) sees branches; it cannot see
which ops actually run, whether a module runs twice or never, or whether
complex numbers flow through the graph.  Those decide which exporter copes:
a TorchScript trace freezes an op whose output *shape* depends on values,
the TorchScript exporter fails on an op it has no translation for, torch.export
refuses random draws it cannot replay, and complex tensors have no ONNX type.

Two logs watch the same forward, at the two levels the exporters see:

* torch functions (``TorchFunctionMode``), the level a TorchScript trace
  records (``aten::rms_norm`` before it decomposes): each is looked up in
  the TorchScript exporter's own registry of ONNX translations;
* ATen ops after decomposition (``TorchDispatchMode``), the level
  torch.export records: counted, and classified by torch's own tags
  (``Tag.data_dependent_output``, ``dynamic_output_shape``,
  ``nondeterministic_seeded``, ``inplace``, ``pointwise``, ``reduction``)
  and schemas (a result that aliases an input is a view).

No list of op or class names is involved.  AUTO already runs one probing
forward before it exports; recording during it (``observing``) costs no
extra pass.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from modelexport.capture.export_friendly import export_friendly

_DATA_DEPENDENT = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
# The opset the TorchScript exporter is asked for by default (api.DEFAULT_OPSET).
TORCHSCRIPT_OPSET = 18


class FunctionLog(TorchFunctionMode):
    """Names of the torch functions and tensor methods a forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        self.names.add(getattr(func, "__name__", ""))
        return func(*args, **(kwargs or {}))


class OpLog(TorchDispatchMode):
    """Counts every ATen op a forward dispatches, and notes complex-valued results."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[Any] = Counter()
        self.complex_values = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        self.counts[func] += 1
        result = func(*args, **(kwargs or {}))
        if not self.complex_values:
            self.complex_values = any(isinstance(leaf, torch.Tensor) and leaf.is_complex()
                                      for leaf in pytree.tree_leaves(result))
        return result


@dataclass
class RunLog:
    """Both logs of one forward."""

    functions: FunctionLog
    ops: OpLog


@contextlib.contextmanager
def observing(model: torch.nn.Module) -> Iterator[RunLog]:
    """Record the torch functions and ATen ops of a forward of ``model`` inside the block.

    Inside, the model uses the implementations an export switches it to
    (:mod:`modelexport.capture.export_friendly`), so the evidence describes the code
    that will be captured, not an eager-only kernel.
    """
    log = RunLog(FunctionLog(), OpLog())
    with export_friendly(model), log.functions, log.ops:
        yield log


@functools.lru_cache(maxsize=1)
def torchscript_registry() -> Any:
    """The TorchScript exporter's table of ONNX translations, every opset loaded.

    A private module of torch: where it moved, None, and the evidence that
    rests on it is simply not recorded.
    """
    try:
        from torch.onnx._internal.torchscript_exporter import registration
    except ImportError:
        return None
    for version in range(7, TORCHSCRIPT_OPSET + 1):
        with contextlib.suppress(ImportError):
            importlib.import_module(
                f"torch.onnx._internal.torchscript_exporter.symbolic_opset{version}")
    return registration.registry


def without_torchscript_translation(names: set[str]) -> list[str] | None:
    """The ATen ops among ``names`` that the TorchScript exporter cannot translate.

    Operators (``__getitem__``) are lowered by the tracer itself, and in-place
    ops (``add_``) are rewritten to out-of-place ones before translation, so
    neither is judged.  None when the registry cannot be read.
    """
    registry = torchscript_registry()
    if registry is None:
        return None
    missing = []
    for name in sorted(names):
        if name.startswith("__") or (name.endswith("_") and not name.startswith("_")):
            continue
        if hasattr(torch.ops.aten, name) and \
                not registry.is_registered_op(f"aten::{name}", TORCHSCRIPT_OPSET):
            missing.append(name)
    return missing


@dataclass(frozen=True)
class ExecutionEvidence:
    """Figures of one eager forward: ops dispatched, and how modules ran."""

    op_calls: int
    distinct_ops: int
    data_dependent_ops: list[str] = field(default_factory=list)
    random_ops: list[str] = field(default_factory=list)
    inplace_op_calls: int = 0
    pointwise_share: float = 0.0  # of op calls: elementwise ops
    reduction_share: float = 0.0
    view_share: float = 0.0  # ops whose result aliases an input (view, reshape, slicing)
    untranslatable_ops: list[str] | None = None  # by TorchScript's exporter; None: unknown
    complex_values: bool = False
    modules: int = 0
    unexecuted_modules: int = 0
    repeated_modules: int = 0  # module instances whose forward ran more than once

    @classmethod
    def from_run(cls, log: RunLog, call_counts: dict[str, int]) -> ExecutionEvidence:
        """Combine the logs with the per-module call counts of the same forward."""
        counts = log.ops.counts
        total = sum(counts.values())

        def tagged(tags: tuple) -> list[str]:
            return sorted({str(op.overloadpacket.__name__) for op in counts
                           if any(t in op.tags for t in tags)})

        def share(keep: Any) -> float:
            return sum(n for op, n in counts.items() if keep(op)) / total if total else 0.0

        return cls(
            op_calls=total,
            distinct_ops=len({op.overloadpacket for op in counts}),
            data_dependent_ops=tagged(_DATA_DEPENDENT),
            random_ops=tagged((torch.Tag.nondeterministic_seeded,)),
            inplace_op_calls=sum(n for op, n in counts.items() if torch.Tag.inplace in op.tags),
            pointwise_share=share(lambda op: torch.Tag.pointwise in op.tags),
            reduction_share=share(lambda op: torch.Tag.reduction in op.tags),
            view_share=share(lambda op: any(r.alias_info is not None
                                            for r in op._schema.returns)),
            untranslatable_ops=without_torchscript_translation(log.functions.names),
            complex_values=log.ops.complex_values,
            modules=len(call_counts),
            unexecuted_modules=sum(1 for n in call_counts.values() if n == 0),
            repeated_modules=sum(1 for n in call_counts.values() if n > 1),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
