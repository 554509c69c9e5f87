"""Matching graph initializers to the model's parameters and the modules that own them.

Both torch exporters keep a weight's state-dict name on its initializer when
they store it unchanged, so the name is tried first (and the values compared,
since an optimiser may rewrite a tensor under its old name): it stays
unambiguous on a fresh model whose LayerNorm weights are all ones.  An
initializer that an export pass rewrote (constant folding transposes a Linear
weight and names it ``onnx::MatMul_123``) is matched by content instead,
against only the parameters whose name no initializer kept, as is or
transposed when 2-D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

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
                       payloads: MemoryPayloads | None = None) -> dict[str, Holding]:
    """Initializer name -> its :class:`Holding` (see module doc).

    ``payloads`` holds the graph's in-memory weights, read in place.

    Scalars are left out: exporters merge equal constants into one
    initializer named after whichever parameter came first, so a scalar
    parameter's name proves nothing about who reads it.
    """
    named = named_tensors_with_owners(model, tree)
    mapping: dict[str, Holding] = {}
    unmatched: list[onnx.TensorProto] = []
    kept_ids: set[int] = set()
    for init in graph.graph.initializer:
        if tensor_elements(init) < 2:
            continue
        hit = named.get(init.name)
        external = is_external(init)
        if hit is not None and (external or _same_values(init, hit[0], payloads)):
            mapping[init.name] = Holding(tuple(sorted(set(hit[1]))), frozenset({id(hit[0])}))
            kept_ids.add(id(hit[0]))
        elif not external:
            unmatched.append(init)
    if not unmatched:
        return mapping
    # Content matching: bucket by a cheap fingerprint, confirm by full comparison,
    # so each weight is read once rather than hashed whole (twice when 2-D).
    wanted = {tuple(init.dims) for init in unmatched}
    candidates: dict[tuple, list[tuple[np.ndarray, torch.Tensor, list[str], bool]]] = {}
    for tensor, owners in named.values():
        if id(tensor) in kept_ids or not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        array = tensor.detach().cpu().numpy()
        views = [(array, True), (array.T, False)] if array.ndim == 2 else [(array, True)]
        for view, as_is in views:
            if view.shape in wanted:
                candidates.setdefault(_fingerprint(view), []).append(
                    (view, tensor, owners, as_is))
    for init in unmatched:
        array = initializer_array(init, payloads)
        hits = [(tensor, owners, as_is) for view, tensor, owners, as_is in
                candidates.get(_fingerprint(array), []) if _equal(view, array)]
        if hits:
            mapping[init.name] = Holding(
                tuple(sorted({o for _, owners, _ in hits for o in owners})),
                frozenset(id(tensor) for tensor, _, _ in hits),
                folded_identity=all(as_is for _, _, as_is in hits))
    return mapping


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
    grid = np.ix_(*(np.linspace(0, n - 1, min(n, per_axis)).astype(np.intp)
                    for n in array.shape))
    return (array.shape, str(array.dtype), array[grid].tobytes())
