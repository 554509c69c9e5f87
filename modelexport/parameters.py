"""Matching graph initializers to the model's parameters by content.

Exporters rename, transpose and deduplicate weights, so names prove nothing;
the tensor's bytes do, as long as every parameter's content is unique (see
``verify.randomize_parameters``).
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


def initializer_owners(graph: onnx.ModelProto, tree: ModuleTree,
                       model: torch.nn.Module) -> dict[str, list[str]]:
    """Map initializer names to the modules owning a parameter with that content.

    Exporters rename and transpose weights, so matching is by tensor content
    (the parameter as is, or transposed when 2-D), never by name.
    """
    owners_by_id = tree.parameter_owners()
    by_content: dict[tuple, list[str]] = {}
    seen: set[int] = set()
    for param in model.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        array = param.detach().cpu().numpy()
        owners = owners_by_id.get(id(param), [])
        views = [array, array.T] if array.ndim == 2 else [array]
        for view in views:
            by_content.setdefault(_content_key(view), []).extend(owners)
    mapping: dict[str, list[str]] = {}
    for init in graph.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            continue
        owners = by_content.get(_content_key(numpy_helper.to_array(init)))
        if owners:
            mapping[init.name] = sorted(set(owners))
    return mapping
