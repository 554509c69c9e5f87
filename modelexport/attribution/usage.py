"""Usage attribution (USAGE_BASED's): what each module used and produced, not names.

Forward hooks record, for every module call, the tensors it received and
returned (during the TorchScript trace's own forward, which computes the
same values, so no second forward runs); parameters record who owns
them.  The captured graph (from any capture: node names and metadata are
ignored) is then run once in ONNX Runtime on the same input with every
intermediate tensor exposed, and:

1. each module call's outputs and inputs are found among the graph's tensors
   by value (same shape, close values; a large float tensor is recorded as a
   sketch, ``value_sketch``, and matched on what closeness implies for it);
2. the call's *region* is every node on a path from its inputs to its
   outputs: backward-reachable from the outputs and forward-reachable from
   the inputs;
3. a node belongs to the deepest module whose region contains it;
4. a node that consumes a parameter belongs to that parameter's owner,
   whatever the regions say.

Nodes outside every region are left to the shared projection pass.  The
method requires no evidence from the capture, which makes it a check on
scope-based attributions as much as an alternative to them.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from modelexport.attribution.base import Attribution
from modelexport.attribution.module_calls import record_calls
from modelexport.attribution.value_sketch import (
    SUM_ROUNDING,
    ValueSketch,
    block_sums,
    sketch_or_copy,
)
from modelexport.capture.base import Captured
from modelexport.capture.request import ExportRequest
from modelexport.hierarchy import ROOT
from modelexport.onnx_runtime.values import intermediate_values
from modelexport.tagging import Assignment, graph_edges
from modelexport.tags import TagSource

_ATOL, _RTOL = 1e-5, 1e-4

Recorded = np.ndarray | ValueSketch  # what the hooks keep of a call's tensor


class ValueIndex:
    """Graph tensors bucketed by shape and sorted by sum, for fast value lookup.

    Lookups are remembered per array object: module calls share their
    arrays (a call's input is the output of the call before it, and a
    container's output is its last child's, see ``module_calls``), so
    ResNet-50's 725 lookups are of a few hundred distinct tensors, and each
    full comparison is made once.

    A float tensor is summed by blocks (``block_sums``), once:
    the blocks' total sorts it, and the blocks themselves are what a
    sketch's test compares, so a candidate is read once, not twice.  A
    tensor whose sum is not finite (an infinity, a NaN) cannot be sorted;
    such tensors are kept apart and compared only with recorded tensors
    whose sum is not finite either, the only ones they can be close to.
    """

    def __init__(self, values: dict[str, np.ndarray]) -> None:
        self._values = values
        self._found: dict[int, tuple[np.ndarray, list[str]]] = {}
        self._unsorted: dict[tuple, list[str]] = {}
        for name, value in values.items():
            if value.size:
                self._unsorted.setdefault((value.shape, value.dtype.kind), []).append(name)
        self._buckets: dict[tuple, _Bucket] = {}
        self._block_sums: dict[str, np.ndarray] = {}

    def _bucket(self, key: tuple) -> _Bucket | None:
        """The tensors of one shape and kind, sorted by sum, summed on the first lookup.

        A tensor whose shape no module call has is never summed: on
        bert-base, 199 of its ONNX Runtime run's 687 tensors.
        """
        if key not in self._buckets:
            names = self._unsorted.pop(key, None)
            if names is None:
                return None
            bucket, finite = _Bucket(), []
            for name in names:
                total = self._total(name)
                if math.isfinite(total):
                    finite.append((total, name))
                else:
                    bucket.not_finite.append(name)
            for total, name in sorted(finite):
                bucket.sums.append(total)
                bucket.names.append(name)
            self._buckets[key] = bucket
        return self._buckets[key]

    def _total(self, name: str) -> float:
        value = self._values[name]
        if value.dtype.kind != "f":  # masks, indices: summed exactly
            return float(np.sum(value, dtype=np.float64))
        with np.errstate(invalid="ignore", over="ignore"):
            sums = block_sums(value.reshape(-1))
        self._block_sums[name] = sums
        return float(sums.sum())

    def matches(self, array: Recorded) -> list[str]:
        """Names of the graph tensors whose values are close to ``array``."""
        found = self._found.get(id(array))
        if found is None or found[0] is not array:
            found = (array, self._search(array))  # the array is held, so its id stays its own
            self._found[id(array)] = found
        return found[1]

    def _search(self, array: Recorded) -> list[str]:
        bucket = self._bucket((tuple(array.shape), array.dtype.kind))
        if bucket is None or array.size == 0:
            return []
        if isinstance(array, ValueSketch):
            total, abs_total = array.total, array.abs_total
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                total = float(np.sum(array, dtype=np.float64))
                abs_total = float(np.sum(np.abs(array), dtype=np.float64))
        if not math.isfinite(total) or not math.isfinite(abs_total):
            candidates = bucket.not_finite
        else:
            # both sides' block sums round by at most SUM_ROUNDING of their absolute
            # sums, and a close tensor's is at most abs_total's plus atol per value
            slack = (_ATOL * array.size + _RTOL * abs_total
                     + SUM_ROUNDING * (2 * abs_total + _ATOL * array.size))
            low = bisect.bisect_left(bucket.sums, total - slack)
            high = bisect.bisect_right(bucket.sums, total + slack)
            candidates = bucket.names[low:high]
        return [name for name in candidates
                if _close(self._values[name], array, self._block_sums.get(name))]


@dataclass
class _Bucket:
    """One shape's graph tensors: the finite-sum ones sorted by sum, the others apart."""

    sums: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    not_finite: list[str] = field(default_factory=list)


def _close(found: np.ndarray, recorded: Recorded, found_sums: np.ndarray | None) -> bool:
    """``np.allclose(found, recorded)``, or what it implies where only a sketch was kept."""
    if isinstance(recorded, ValueSketch):
        return recorded.admits(found, _ATOL, _RTOL, found_sums)
    return all_close(found, recorded)


def _varies(array: Recorded) -> bool:
    return array.varies if isinstance(array, ValueSketch) else bool(np.ptp(array) > 0)


def all_close(found: np.ndarray, wanted: np.ndarray, chunk: int = 1 << 16) -> bool:
    """``np.allclose(found, wanted)`` at this module's tolerances, a piece at a time.

    The fast test is ``isclose``'s formula made strict,
    ``|found - wanted| < atol + rtol * |wanted|``, without its handling of
    infinities and broadcasting, whose temporaries made it half of
    ResNet-50's matching.  Strict, it can only pass where every value is
    finite (an infinite ``wanted`` makes both sides infinite), and there it
    implies ``isclose``; a piece that fails it is asked of ``np.allclose``
    itself, so the answer is always numpy's.
    """
    if found.shape != wanted.shape:
        return False
    if found.dtype.kind != "f" or wanted.dtype.kind != "f":  # masks, indices: numpy's own
        return bool(np.allclose(found, wanted, atol=_ATOL, rtol=_RTOL))
    flat_found, flat_wanted = found.reshape(-1), wanted.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: the fallback's case
        for start in range(0, flat_found.size, chunk):
            piece, target = flat_found[start:start + chunk], flat_wanted[start:start + chunk]
            if not (np.abs(piece - target) < _ATOL + _RTOL * np.abs(target)).all() and \
                    not np.allclose(piece, target, atol=_ATOL, rtol=_RTOL):
                return False
    return True


def call_region(call_outputs: list[str], call_inputs: set[str], producer: dict[str, int],
                consumers: dict[str, list[int]], nodes: list[onnx.NodeProto]) -> set[int]:
    """Nodes on a path from a call's matched inputs to its matched outputs.

    Backward-reachable from the outputs *and* forward-reachable from the
    inputs: side computations (a mask built at the root from a graph input,
    constants) are excluded, and a call whose inputs were not found in the
    graph (a BatchNorm folded into its Conv) claims nothing.
    """
    ends = [producer[n] for n in call_outputs if n in producer]
    if not ends or not call_inputs:
        return set()
    last = max(ends)
    reachable: set[int] = set()
    frontier = [c for name in call_inputs for c in consumers.get(name, ()) if c <= last]
    while frontier:
        index = frontier.pop()
        if index in reachable:
            continue
        reachable.add(index)
        for name in nodes[index].output:
            frontier.extend(c for c in consumers.get(name, ()) if c <= last)
    region: set[int] = set()
    stack = [e for e in ends if e in reachable]
    while stack:
        index = stack.pop()
        if index in region:
            continue
        region.add(index)
        for name in nodes[index].input:
            if name in producer and name not in call_inputs and producer[name] in reachable:
                stack.append(producer[name])
    return region


class UsageAttribution(Attribution):
    """Module calls recorded by hooks, matched onto the graph's tensors by value."""

    name = "usage"
    reads_calls = True
    keeps_calls_as = staticmethod(sketch_or_copy)

    def __call__(self, request: ExportRequest, captured: Captured) -> list[Assignment | None]:
        graph = captured.graph
        nodes = list(graph.graph.node)
        calls = (captured.calls if captured.calls is not None
                 else record_calls(request.model, request.call, keep=sketch_or_copy))
        feeds = {name: tensor.detach().cpu().numpy()
                 for name, tensor in zip(request.input_names, request.inputs.tensors())}
        graph_inputs = {i.name for i in graph.graph.input}
        feeds = {k: v for k, v in feeds.items() if k in graph_inputs}
        index = ValueIndex(intermediate_values(graph, feeds, payloads=captured.payloads))
        producer, consumers = graph_edges(nodes)

        owner_depth: list[int] = [-1] * len(nodes)
        assignments: list[Assignment | None] = [None] * len(nodes)
        for call in calls:
            depth = call.path.count(".") + 1 if call.path != ROOT else 0
            outputs = []
            for array in call.outputs:
                found = [n for n in index.matches(array) if n in producer]
                if found and _varies(array):  # constant tensors match too much
                    outputs.append(max(found, key=producer.__getitem__))
            inputs = {name for array in call.inputs for name in index.matches(array)}
            for node_index in call_region(outputs, inputs, producer, consumers, nodes):
                if depth > owner_depth[node_index]:
                    owner_depth[node_index] = depth
                    assignments[node_index] = Assignment(call.path, TagSource.EXACT)

        held = request.holdings(graph, captured.payloads, captured.sources)
        for i, node in enumerate(nodes):
            candidates = sorted({o for name in node.input if name in held
                                 for o in held[name].owners})
            if candidates and (assignments[i] is None
                               or assignments[i].module not in candidates):
                assignments[i] = Assignment(candidates[0], TagSource.EXACT)
        return assignments
