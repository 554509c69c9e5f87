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

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from modelexport.hierarchy import ModuleTree


def _content_key(array: np.ndarray) -> tuple:
    contiguous = np.ascontiguousarray(array)
    return (contiguous.shape, str(contiguous.dtype), hash(contiguous.tobytes()))


def _same_values(init: onnx.TensorProto, tensor: torch.Tensor) -> bool:
    """Whether an initializer still holds the tensor its name says.

    An optimiser may keep a weight's name while rewriting it (onnxscript folds
    a BatchNorm into ``conv.weight``); such a tensor belongs to no single
    module any more and anchors nothing.
    """
    if tuple(init.dims) != tuple(tensor.shape):
        return False
    return bool(np.array_equal(numpy_helper.to_array(init), tensor.detach().cpu().numpy()))


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


def initializer_owners(graph: onnx.ModelProto, tree: ModuleTree,
                       model: torch.nn.Module) -> dict[str, list[str]]:
    """Initializer name -> the modules owning the tensor it holds (see module doc)."""
    named = named_tensors_with_owners(model, tree)
    mapping: dict[str, list[str]] = {}
    unmatched: list[onnx.TensorProto] = []
    kept_ids: set[int] = set()
    for init in graph.graph.initializer:
        hit = named.get(init.name)
        external = init.data_location == onnx.TensorProto.EXTERNAL
        if hit is not None and (external or _same_values(init, hit[0])):
            mapping[init.name] = sorted(set(hit[1]))
            kept_ids.add(id(hit[0]))
        elif not external:
            unmatched.append(init)
    if not unmatched:
        return mapping
    by_content: dict[tuple, set[str]] = {}
    for tensor, owners in named.values():
        if id(tensor) in kept_ids or not tensor.is_floating_point() or tensor.numel() < 2:
            continue
        array = tensor.detach().cpu().numpy()
        for view in ([array, array.T] if array.ndim == 2 else [array]):
            by_content.setdefault(_content_key(view), set()).update(owners)
    for init in unmatched:
        owners = by_content.get(_content_key(numpy_helper.to_array(init)))
        if owners:
            mapping[init.name] = sorted(owners)
    return mapping
