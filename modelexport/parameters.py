"""Matching graph initializers to the model's parameters and the modules that own them.

Both torch exporters keep a weight's state-dict name on its initializer when
they store it unchanged, so the name is tried first (and the values compared,
since an optimiser may rewrite a tensor under its old name): it stays
unambiguous on a fresh model whose LayerNorm weights are all ones.  An
initializer that an export pass rewrote (constant folding transposes a Linear
weight and names it ``onnx::MatMul_123``) is matched by content instead,
against only the parameters whose name no initializer kept, as is or
transposed when 2-D.

A capture that knows which tensor the exporter wrote each initializer from
(``capture.exporter_sources``) hands that over as ``sources``; an initializer
written from a view of a parameter's own memory, as is or transposed, is
matched by that layout without reading its values, and only a few values
on a grid are compared, to catch a source that was not what got written.
Sources are recorded before the exporter merges initializers of equal
value (two layers' zero biases become one); a merged initializer holds
every parameter it stands for, which only comparing values finds, so where
a recorded name did not survive, initializers of its shape and dtype are
matched by value as without sources.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
import torch
from torch.nn.parameter import is_lazy

from modelexport.hierarchy import ModuleTree
from modelexport.output.onnx_payload import (
    MemoryPayloads,
    initializer_array,
    is_external,
    tensor_elements,
)


def _same_values(init: onnx.TensorProto, tensor: torch.Tensor,
                 payloads: MemoryPayloads | None) -> bool:
    """Whether an initializer still holds the tensor its name says.

    An optimiser may keep a weight's name while rewriting it (onnxscript folds
    a BatchNorm into ``conv.weight``); such a tensor belongs to no single
    module any more and anchors nothing.
    """
    if tuple(init.dims) != tuple(tensor.shape):
        return False
    expected = tensor.detach().cpu().contiguous().numpy()
    if onnx.helper.tensor_dtype_to_np_dtype(init.data_type) != expected.dtype:
        return False
    return _equal(expected, initializer_array(init, payloads))


def named_tensors_with_owners(model: torch.nn.Module, tree: ModuleTree,
                              ) -> dict[str, tuple[torch.Tensor, list[str]]]:
    """State-dict name -> (tensor, owning modules) for parameters and buffers.

    Tied weights (a GPT-2 ``lm_head`` sharing ``wte``) have several owners;
    every name a tied tensor is reachable by is listed.
    """
    owners_by_id = tree.parameter_owners()
    named: dict[str, tuple[torch.Tensor, list[str]]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        tensors = list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False))
        for local, tensor in tensors:
            if tensor is None:
                continue
            owners = owners_by_id.get(id(tensor)) or [path]
            named[f"{path}.{local}" if path else local] = (tensor, owners)
    return named


@dataclass(frozen=True)
class Holding:
    """What one initializer holds: the modules owning it, and which tensors it matched."""

    owners: tuple[str, ...]
    tensor_ids: frozenset[int]
    # Held unchanged under a new name: an export pass folded an identity of the
    # parameter (a Gather of every row) into it, so what read the owner's
    # output now reads the parameter itself.
    folded_identity: bool = False


def match_initializers(graph: onnx.ModelProto, tree: ModuleTree, model: torch.nn.Module,
                       payloads: MemoryPayloads | None = None,
                       sources: Mapping[str, torch.Tensor] | None = None,
                       deduplicated: bool = False) -> dict[str, Holding]:
    """Initializer name -> its :class:`Holding` (see module doc).

    ``payloads`` holds the graph's in-memory weights, read in place;
    ``sources`` what the exporter wrote each initializer from, where known;
    ``deduplicated`` says the exporter was let merge parameters of equal
    content, so an initializer named after one may hold others too.

    Scalars are left out: exporters merge equal constants into one
    initializer named after whichever parameter came first, so a scalar
    parameter's name proves nothing about who reads it.
    """
    named = named_tensors_with_owners(model, tree)
    mapping: dict[str, Holding] = {}
    unmatched: list[onnx.TensorProto] = []
    kept_ids: set[int] = set()
    layouts = _layouts(named) if sources else {}
    merged = _merged_kinds(graph, sources or {})
    for init in graph.graph.initializer:
        if tensor_elements(init) < 2:
            continue
        hit = named.get(init.name)
        external = is_external(init)
        source = sources.get(init.name) if sources else None
        if source is not None and (tuple(source.shape), source.dtype) in merged:
            source = None
        held = None if source is None else _held_by_layout(init, source, layouts, payloads)
        if held is not None:
            kept = hit is not None and id(hit[0]) in held.tensor_ids
            if kept:
                kept_ids.add(id(hit[0]))
            mapping[init.name] = replace(held, folded_identity=held.folded_identity and not kept)
        elif hit is not None and (external or _same_values(init, hit[0], payloads)):
            mapping[init.name] = Holding(tuple(sorted(set(hit[1]))), frozenset({id(hit[0])}))
            kept_ids.add(id(hit[0]))
        elif not external:
            unmatched.append(init)
    if deduplicated:
        _add_merged_by_value(graph, named, mapping, payloads)
    if not unmatched:
        return mapping
    # Content matching: bucket by a cheap fingerprint, confirm by full comparison,
    # so each weight is read once rather than hashed whole (twice when 2-D).
    wanted = {tuple(init.dims) for init in unmatched}
    candidates: dict[tuple, list[tuple[np.ndarray, torch.Tensor, list[str], bool]]] = {}
    for tensor, owners in named.values():
        if id(tensor) in kept_ids or not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        for view, as_is in _orientations(tensor.detach().cpu().numpy()):
            if view.shape in wanted:
                candidates.setdefault(_fingerprint(view), []).append(
                    (view, tensor, owners, as_is))
    for init in unmatched:
        array = initializer_array(init, payloads)
        if _uniform(array):
            continue
        hits = [(tensor, owners, as_is) for view, tensor, owners, as_is in
                candidates.get(_fingerprint(array), []) if _equal(view, array)]
        if hits:
            mapping[init.name] = _holding(hits)
    return mapping


def _uniform(array: np.ndarray) -> bool:
    """Whether every element is the same: such a tensor's content names no parameter.

    A renamed initializer of zeros is as likely a fresh BatchNorm folded into
    its Conv (bias ``beta - mean * scale`` = 0) as any module's zero bias;
    claiming it for the first zero parameter found puts the Conv on the
    BatchNorm.  By name it is still matched (``match_initializers``).
    """
    flat = array.reshape(-1)
    return flat.size > 1 and bool((flat == flat[0]).all())


def merged_parameters(held: Mapping[str, Holding], model: torch.nn.Module,
                      ) -> dict[str, list[str]]:
    """Initializer -> the state-dict names of the distinct tensors it stands for, if several.

    Tied weights are one tensor and are not listed; parameters of equal
    content merged into one initializer (``dedupe_weights``) are.
    """
    names: dict[int, str] = {}
    for name, tensor in (*model.named_parameters(remove_duplicate=False),
                         *model.named_buffers(remove_duplicate=False)):
        names.setdefault(id(tensor), name)
    return {init: sorted(names[i] for i in holding.tensor_ids if i in names)
            for init, holding in held.items() if len(holding.tensor_ids) > 1}


Hit = tuple[torch.Tensor, list[str], bool]  # a parameter, its owners, held as is (or transposed)


def _add_merged_by_value(graph: onnx.ModelProto,
                         named: dict[str, tuple[torch.Tensor, list[str]]],
                         mapping: dict[str, Holding], payloads: MemoryPayloads | None) -> None:
    """Widen each holding matched so far by the parameters merged into it by value.

    A deduplicated file (``dedupe_weights``) keeps one initializer, named
    after the first parameter, for every parameter of equal content; the
    others' names are gone.  Those parameters, found in no holding, are
    compared with the initializers of their shape: an equal one holds them
    too, so a node reading it may sit on any of their owners.  Only asked of
    a deduplicated file: elsewhere a parameter is absent because it is unused
    or was folded, and an equal initializer of another module does not hold it.
    """
    represented = {i for holding in mapping.values() for i in holding.tensor_ids}
    absent: dict[tuple, list[tuple[torch.Tensor, list[str]]]] = {}
    for tensor, owners in named.values():
        if id(tensor) in represented or tensor.numel() < 2 or tensor.device.type == "meta":
            continue
        try:
            values = tensor.detach().cpu().numpy()
        except TypeError:  # a dtype numpy lacks: left to the name match alone
            continue
        entry = absent.setdefault(_fingerprint(values), [])
        if all(other is not tensor for other, _ in entry):
            entry.append((tensor, owners))
    if not absent:
        return
    shapes = {key[0] for key in absent}
    for init in graph.graph.initializer:
        holding = mapping.get(init.name)
        if holding is None or tuple(init.dims) not in shapes or is_external(init):
            continue
        array = initializer_array(init, payloads)
        merged = [(tensor, owners) for tensor, owners in absent.get(_fingerprint(array), [])
                  if _equal(tensor.detach().cpu().numpy(), array)]
        if merged:
            mapping[init.name] = replace(
                holding,
                owners=tuple(sorted({*holding.owners, *(o for _, os in merged for o in os)})),
                tensor_ids=holding.tensor_ids | {id(tensor) for tensor, _ in merged})


def _holding(hits: list[Hit]) -> Holding:
    """What an initializer holds that equals each of ``hits``."""
    return Holding(tuple(sorted({o for _, owners, _ in hits for o in owners})),
                   frozenset(id(tensor) for tensor, _, _ in hits),
                   folded_identity=all(as_is for _, _, as_is in hits))


def _orientations(values: Any) -> list[tuple[Any, bool]]:
    """A weight as stored, and transposed when 2-D (array or tensor): (view, as is)."""
    return [(values, True), (values.T, False)] if values.ndim == 2 else [(values, True)]


def storage_key(tensor: torch.Tensor) -> int | None:
    """Where a tensor's memory starts (views of one parameter share it).

    None for a tensor without plain memory of its own to point at: a lazy
    parameter not yet materialised, a meta or sparse tensor, an empty one.
    """
    if (is_lazy(tensor) or tensor.device.type == "meta" or tensor.layout != torch.strided
            or tensor.numel() == 0):
        return None
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return None


Layout = tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype]


def _layout(tensor: torch.Tensor) -> Layout | None:
    """Where and how a tensor's values lie (equal layouts hold equal values), if in memory."""
    key = storage_key(tensor)
    if key is None:
        return None
    return (key, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
            tensor.dtype)


def _layouts(named: dict[str, tuple[torch.Tensor, list[str]]]) -> dict[Layout, list[Hit]]:
    """Each parameter's layout, and its transpose's when 2-D -> the parameters lying so."""
    layouts: dict[Layout, list[Hit]] = {}
    seen: set[int] = set()
    for tensor, owners in named.values():
        if id(tensor) in seen or tensor.numel() < 2:
            continue
        seen.add(id(tensor))
        for view, as_is in _orientations(tensor):
            layout = _layout(view)
            if layout is not None:
                layouts.setdefault(layout, []).append((tensor, owners, as_is))
    return layouts


def _merged_kinds(graph: onnx.ModelProto, sources: Mapping[str, torch.Tensor],
                  ) -> set[tuple[tuple[int, ...], torch.dtype]]:
    """(shape, dtype) of the recorded initializers that a merge of equal values removed."""
    present = {init.name for init in graph.graph.initializer}
    return {(tuple(tensor.shape), tensor.dtype) for name, tensor in sources.items()
            if name not in present}


def _held_by_layout(init: onnx.TensorProto, source: torch.Tensor,
                    layouts: dict[Layout, list[Hit]],
                    payloads: MemoryPayloads | None) -> Holding | None:
    """The holding of an initializer the exporter wrote from ``source`` (module doc).

    None when ``source`` is no parameter's layout, or when the grid of values
    disagrees with the written initializer (then values are compared as
    without a source).
    """
    layout = _layout(source)
    hits = layouts.get(layout) if layout is not None else None
    if not hits or tuple(init.dims) != tuple(source.shape):
        return None
    if not is_external(init):
        try:
            values = source.detach().numpy()
        except TypeError:  # a dtype numpy lacks (bfloat16): compare values instead
            return None
        if _fingerprint(values) != _fingerprint(initializer_array(init, payloads)):
            return None
    return _holding(hits)


def _equal(view: np.ndarray, array: np.ndarray, rows: int = 64,
           chunk: int = 1 << 18) -> bool:
    """Bit-for-bit equality (a NaN equals itself, -0.0 is not 0.0), as a weight is stored.

    Compared a piece at a time, so the comparison's temporary stays small
    and reused: one the size of a weight is fresh memory whose page faults
    cost more than the comparison (0.1 s for bert-base's name-matched
    weights).  A transposed 2-D view goes a band of ``rows`` rows of its base
    at a time, keeping both reads in cache: walking it whole strides across
    memory on every element (64 rows measured fastest, 25% under 256).
    """
    if view.shape != array.shape or view.dtype != array.dtype:
        return False
    if view.dtype.itemsize in (1, 2, 4, 8) and view.dtype.kind in "fiub":
        bits = np.dtype(f"u{view.dtype.itemsize}")
        view, array = view.view(bits), array.view(bits)
    if view.flags.c_contiguous and array.flags.c_contiguous:
        flat, other = view.reshape(-1), array.reshape(-1)
        return all(np.array_equal(flat[start:start + chunk], other[start:start + chunk])
                   for start in range(0, flat.size, chunk))
    if view.ndim != 2 or not view.T.flags.c_contiguous:
        return bool(np.array_equal(view, array))
    stored = view.T
    return all(np.array_equal(stored[start:start + rows].T, array[:, start:start + rows])
               for start in range(0, stored.shape[0], rows))


def _fingerprint(array: np.ndarray, per_axis: int = 4) -> tuple:
    """Shape, dtype and a few values on a fixed grid: equal arrays share it.

    Read through index arrays, so a transposed view is sampled without being
    copied.
    """
    return (array.shape, str(array.dtype), array[_grid(array.shape, per_axis)].tobytes())


@functools.lru_cache(maxsize=1024)
def _grid(shape: tuple[int, ...], per_axis: int) -> tuple[np.ndarray, ...]:
    """The fingerprint's index arrays for one shape: a model repeats few shapes many times."""
    return np.ix_(*(np.linspace(0, n - 1, min(n, per_axis)).astype(np.intp) for n in shape))
