"""Handling an ONNX model's weights without copying them more than once.

A bert-base export holds 440 MB of initializers.  Protobuf's own
``SerializeToString`` copies them at well under memory speed (0.55 s for a
bert-base on the reference machine) into one more 440 MB buffer, and every
tool that only needs the graph's *structure* (the checker's shape
inference) pays the same to read them.  Three helpers avoid it:

* :func:`shell` copies a model without its large initializers: the
  structure, for checks that need no weight values;
* :func:`skeleton` declares those initializers as graph inputs instead, so
  shape inference and ONNX Runtime can take the graph with the weights fed
  as arrays (:func:`left_out_weights`);
* :func:`save_streamed` writes a model as the shell followed by each large
  initializer's payload, straight from its bytes.  The protobuf wire format
  allows it: a parser merges repeated occurrences of an embedded message
  field (``ModelProto.graph``) and appends repeated fields
  (``GraphProto.initializer``), so the file reads back as the same model,
  with the large initializers listed after the small ones.

A TorchScript export arrives as one serialised buffer.  Parsed whole, its
weights are copied into the message, and every later read of ``raw_data``
(matching weights to parameters, saving) copies them again.
:func:`detach_payloads` parses only the buffer's shell instead and leaves
each large weight where it is: the initializer says it is held in memory
(external data at :data:`MEMORY_LOCATION`, offset and length into the
buffer), and :class:`MemoryPayloads`, which keeps the buffer, hands out
views of it.  The helpers here read such a weight through it, and
:func:`save_streamed` writes it straight from the buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import numpy_helper
from onnx.external_data_helper import ExternalDataInfo

from modelexport.output.wire import (
    GRAPH_FIELD,
    INITIALIZER_FIELD,
    RAW_DATA_FIELD,
    field_header,
    split_payloads,
)

# Initializers up to this many bytes stay in a shell: shape constants (a
# Reshape's target), whose values shape inference propagates.
INLINE_BYTES = 1024

# The external-data location of a weight left in the exporter's buffer: not a
# file name, so a reader that does not know it fails instead of reading a file.
MEMORY_LOCATION = "modelexport:in-memory"


@dataclass(frozen=True)
class MemoryPayloads:
    """The buffer that a graph's in-memory initializers point into (module doc).

    Kept beside the graph for as long as the graph is used; a view of it is
    valid only while the initializer's entry is unchanged.
    """

    buffer: bytes

    def view(self, tensor: onnx.TensorProto) -> memoryview:
        """The payload bytes of an in-memory initializer, not copied."""
        offset, length = _span(tensor)
        if offset + length > len(self.buffer):
            raise ValueError(f"initializer {tensor.name!r} points past its buffer")
        return memoryview(self.buffer)[offset:offset + length]

    def array(self, tensor: onnx.TensorProto) -> np.ndarray:
        """An in-memory initializer's values, a read-only array over the buffer."""
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).newbyteorder("<")
        return np.frombuffer(self.view(tensor), dtype=dtype).reshape(tuple(tensor.dims))


def detach_payloads(data: bytes) -> tuple[onnx.ModelProto, MemoryPayloads]:
    """Parse a serialised model with its large weights left in ``data`` (module doc)."""
    split = split_payloads(memoryview(data), INLINE_BYTES)
    model = onnx.ModelProto.FromString(split.shell)
    for tensor, payload in zip(model.graph.initializer, split.payloads):
        if payload is not None:
            point_at(tensor, MEMORY_LOCATION, *payload)
    return model, MemoryPayloads(data)


def held_in_memory(tensor: onnx.TensorProto) -> bool:
    """Whether the tensor's data sits in a :class:`MemoryPayloads` buffer."""
    return (tensor.data_location == onnx.TensorProto.EXTERNAL
            and any(e.key == "location" and e.value == MEMORY_LOCATION
                    for e in tensor.external_data))


def initializer_array(tensor: onnx.TensorProto, payloads: MemoryPayloads | None = None,
                      ) -> np.ndarray:
    """An initializer's values, read in place where they are raw bytes.

    ``numpy_helper.to_array`` copies the payload once more than reading
    ``raw_data`` (itself a copy) does; an in-memory weight is not copied at all.
    """
    if held_in_memory(tensor):
        return _holder(tensor, payloads).array(tensor)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    if tensor.HasField("raw_data") and dtype.kind in "fiub":
        return np.frombuffer(tensor.raw_data, dtype=dtype.newbyteorder("<")).reshape(
            tuple(tensor.dims))
    return numpy_helper.to_array(tensor)


def materialized(model: onnx.ModelProto, payloads: MemoryPayloads | None) -> onnx.ModelProto:
    """``model`` itself, or a copy with every in-memory weight put back into ``raw_data``.

    For writers that only know protobuf (``onnx.save_model`` with external
    data): they would read an in-memory weight as empty.
    """
    if payloads is None or not any(held_in_memory(t) for t in model.graph.initializer):
        return model
    result = onnx.ModelProto()
    result.CopyFrom(model)
    for tensor in result.graph.initializer:
        if held_in_memory(tensor):
            tensor.raw_data = bytes(payloads.view(tensor))
            del tensor.external_data[:]
            tensor.ClearField("data_location")
    return result


def point_at(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Make ``tensor`` read its data from ``length`` bytes at ``offset`` of ``location``.

    ONNX's external-data entries: a file name for a reader with a folder,
    or :data:`MEMORY_LOCATION`.
    """
    tensor.data_location = onnx.TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)),
                       ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _span(tensor: onnx.TensorProto) -> tuple[int, int]:
    info = ExternalDataInfo(tensor)
    return info.offset or 0, info.length


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """The bytes an inline tensor holds, from its shape and type (0 when stored externally).

    Computed, not measured: reading ``raw_data`` copies the whole payload into
    a Python bytes object.
    """
    if is_external(tensor):
        return 0
    try:  # sub-byte types report a byte each: an upper bound
        item = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except KeyError:  # UNDEFINED, or a type newer than this onnx
        item = 1
    return tensor_elements(tensor) * item


def tensor_elements(tensor: onnx.TensorProto) -> int:
    """How many values the tensor's shape holds (1 for a scalar)."""
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def model_bytes(model: onnx.ModelProto) -> int:
    """Size of the initializers' payload, the part that can break the 2 GB limit."""
    return sum(tensor_bytes(t) for t in model.graph.initializer)


def carries_payload(tensor: onnx.TensorProto) -> bool:
    """A large tensor held in ``raw_data`` or in memory: what :func:`shell` leaves out."""
    return held_in_memory(tensor) or (
        tensor.HasField("raw_data") and tensor_bytes(tensor) > INLINE_BYTES)


def shell(model: onnx.ModelProto, keep_external: bool = True) -> onnx.ModelProto:
    """``model`` without the initializers that carry a payload (everything else copied).

    ``keep_external=False`` leaves out initializers stored as external data
    too, for a reader that has no folder to find their file in.
    """
    result = onnx.ModelProto()
    _copy_fields(model, result, skip="graph")
    _copy_fields(model.graph, result.graph, skip="initializer")
    result.graph.initializer.extend(
        t for t in model.graph.initializer
        if not carries_payload(t) and (keep_external or not is_external(t)))
    return result


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The shell, with every initializer it left out declared as a typed graph input.

    What shape inference and the checker need (every name, type and shape),
    and what ONNX Runtime can run when the weights are fed as inputs
    (:func:`left_out_weights`), all without copying a payload into a message.
    """
    result = shell(model, keep_external=False)
    # an old-style graph lists its initializers among its inputs already
    declared = {t.name for t in result.graph.initializer} | {i.name for i in model.graph.input}
    result.graph.input.extend(
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in model.graph.initializer if t.name not in declared)
    return result


def left_out_weights(model: onnx.ModelProto, skeleton_model: onnx.ModelProto,
                     payloads: MemoryPayloads | None = None) -> dict[str, np.ndarray]:
    """The initializers of ``model`` that ``skeleton_model`` takes as inputs, as arrays.

    In-memory weights come as views of ``payloads``' buffer, not copies.
    """
    kept = {t.name for t in skeleton_model.graph.initializer}
    return {t.name: initializer_array(t, payloads)
            for t in model.graph.initializer if t.name not in kept}


def is_external(tensor: onnx.TensorProto) -> bool:
    """Stored in a file beside the model (an in-memory weight is not)."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL and not held_in_memory(tensor)


def _copy_fields(source: Message, target: Message, skip: str) -> None:
    """Every set field of ``source`` but ``skip`` into ``target``.

    Walks the descriptor rather than ``ListFields``, which would hand out
    the skipped field too: for a tensor, a copy of its whole payload.
    """
    for descriptor in source.DESCRIPTOR.fields:
        name = descriptor.name
        if name == skip:
            continue
        if descriptor.is_repeated:
            values = getattr(source, name)
            if len(values):
                getattr(target, name).extend(values)
        elif source.HasField(name):
            if descriptor.message_type is not None:
                getattr(target, name).CopyFrom(getattr(source, name))
            else:
                setattr(target, name, getattr(source, name))


def save_streamed(model: onnx.ModelProto, path: str | Path,
                  payloads: MemoryPayloads | None = None) -> None:
    """Write ``model`` to ``path``: its shell, then each large initializer (module doc).

    Peak memory grows by one initializer's payload, not by the whole model;
    an in-memory weight is written straight from ``payloads``' buffer.
    """
    with open(path, "wb") as handle:
        handle.write(shell(model).SerializeToString())
        for chunk in _large_initializer_chunks(model, payloads):
            handle.write(chunk)


def _large_initializer_chunks(model: onnx.ModelProto, payloads: MemoryPayloads | None,
                              ) -> Iterator[bytes | memoryview]:
    """Per large initializer: ``ModelProto{graph{initializer{tensor}}}`` as wire bytes."""
    for tensor in model.graph.initializer:
        if not carries_payload(tensor):
            continue
        header = onnx.TensorProto()
        if held_in_memory(tensor):
            _copy_fields(tensor, header, skip="external_data")
            header.ClearField("data_location")
            payload: bytes | memoryview = _holder(tensor, payloads).view(tensor)
        else:
            _copy_fields(tensor, header, skip="raw_data")
            payload = tensor.raw_data  # the one copy: protobuf hands out bytes, not a view
        described = header.SerializeToString()
        raw_tag = field_header(RAW_DATA_FIELD, len(payload))
        tensor_size = len(described) + len(raw_tag) + len(payload)
        in_graph = field_header(INITIALIZER_FIELD, tensor_size)
        graph_size = len(in_graph) + tensor_size
        yield field_header(GRAPH_FIELD, graph_size) + in_graph + described + raw_tag
        yield payload


def _holder(tensor: onnx.TensorProto, payloads: MemoryPayloads | None) -> MemoryPayloads:
    """The buffer an in-memory ``tensor`` needs; a caller that dropped it is a bug."""
    if payloads is None:
        raise ValueError(f"initializer {tensor.name!r} is held in memory; "
                         "its MemoryPayloads were not passed")
    return payloads
