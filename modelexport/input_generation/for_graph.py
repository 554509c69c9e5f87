"""Inputs for an ONNX graph made from its signature alone, for profile and extract.

No PyTorch model is at hand, so values are chosen to be safe rather than
realistic: floats are standard normal; an integer input that indexes a
``Gather`` over a weight (token ids, positions) stays below that table's
first dimension; other integer inputs (masks) are ones; booleans are true.
Symbolic dimensions take ``dims[name]`` when given, else 1 on the first axis
(batch) and 16 elsewhere (sequence).
"""

from __future__ import annotations

import numpy as np
import onnx

from modelexport.errors import InputMismatchError

DEFAULT_BATCH, DEFAULT_OTHER = 1, 16


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old opsets list both)."""
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def _index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Input name -> rows of the smallest weight table it indexes through Gather."""
    rows = {init.name: init.dims[0] for init in model.graph.initializer if init.dims}
    bounds: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) >= 2 and node.input[0] in rows:
            index = node.input[1]
            bounds[index] = min(bounds.get(index, rows[node.input[0]]), rows[node.input[0]])
    return bounds


def input_shape(value: onnx.ValueInfoProto, dims: dict[str, int]) -> list[int]:
    shape = []
    for axis, dim in enumerate(value.type.tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            shape.append(dim.dim_value)
        elif dim.dim_param in dims:
            shape.append(dims[dim.dim_param])
        else:
            shape.append(DEFAULT_BATCH if axis == 0 else DEFAULT_OTHER)
    return shape


def generated_feeds(model: onnx.ModelProto, dims: dict[str, int] | None = None,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """One array per graph input, seeded, shaped from the signature and ``dims``."""
    rng = np.random.default_rng(seed)
    bounds = _index_bounds(model)
    feeds: dict[str, np.ndarray] = {}
    for value in graph_inputs(model):
        if not value.type.HasField("tensor_type"):
            raise InputMismatchError(f"input {value.name!r} is not a tensor; cannot generate it")
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        shape = input_shape(value, dims or {})
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[value.name] = np.ones(shape, dtype=dtype)
        elif value.name in bounds:
            feeds[value.name] = rng.integers(0, bounds[value.name], shape).astype(dtype)
        else:
            feeds[value.name] = np.ones(shape, dtype=dtype)
    return feeds


def parse_dims(pairs: list[str] | None) -> dict[str, int]:
    """``["batch=2", "sequence=32"]`` -> ``{"batch": 2, "sequence": 32}``."""
    dims: dict[str, int] = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        if not name or not value.isdigit() or int(value) < 1:
            raise InputMismatchError(f"--dim expects NAME=POSITIVE_INT, got {pair!r}")
        dims[name] = int(value)
    return dims
