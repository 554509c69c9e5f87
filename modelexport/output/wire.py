"""Finding an ONNX model's weights in its serialised bytes without parsing them.

A serialised ModelProto is mostly its initializers' ``raw_data``: 440 MB of a
bert-base file.  Protobuf's parsers copy every bytes field they read, and on
a 2-core VM the page faults of a fresh 440 MB buffer alone cost 0.05 to 0.4 s.
Walking the wire format instead finds where each large payload sits; the
rest (graph structure, small constants, a few MB) is cut out as a *shell*
that protobuf itself parses, while the payloads stay where they are, in a
mapped file or an exporter's buffer, and are read there by offset.

Only the framing is read here: field numbers, wire types and lengths.  A
file whose framing is broken (truncated, a length running past the end)
raises :class:`WireFormatError`, which is what protobuf would refuse too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx

from modelexport.errors import ModelExportError

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5

GRAPH_FIELD = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
INITIALIZER_FIELD = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
RAW_DATA_FIELD = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


class WireFormatError(ModelExportError):
    """The bytes are not a well-framed protobuf message."""


@dataclass
class SplitModel:
    """A serialised model cut in two: its shell, and where its large payloads sit.

    ``payloads`` has one entry per initializer, in the order a protobuf
    parser appends them to ``graph.initializer`` (repeated ``graph`` fields
    merge, so that is their order in the bytes): the ``(offset, length)`` of
    the ``raw_data`` left out of the shell, or None for an initializer the
    shell holds whole.
    """

    shell: bytes
    payloads: list[tuple[int, int] | None]


def read_varint(buffer: memoryview, position: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``position`` and the position after it."""
    value = shift = 0
    while position < end:
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            break
    raise WireFormatError(f"malformed or truncated varint before byte {position}")


def fields(buffer: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """``(field number, field start, value start, value end)`` for each field in a message.

    The value of a length-delimited field is its bytes; of any other, its
    encoding (varint or fixed width).  Groups, long deprecated and never
    written by ONNX, are refused.
    """
    position = start
    while position < end:
        field_start = position
        key, position = read_varint(buffer, position, end)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value_start = position
            _, position = read_varint(buffer, position, end)
        elif wire_type == _LENGTH_DELIMITED:
            length, value_start = read_varint(buffer, position, end)
            position = value_start + length
        elif wire_type in (_FIXED64, _FIXED32):
            value_start = position
            position += 8 if wire_type == _FIXED64 else 4
        else:
            raise WireFormatError(f"unsupported wire type {wire_type} at byte {field_start}")
        if number == 0 or position > end:
            raise WireFormatError(f"field at byte {field_start} runs past its message")
        yield number, field_start, value_start, position


def split_payloads(buffer: memoryview, min_bytes: int) -> SplitModel:
    """Cut every initializer ``raw_data`` longer than ``min_bytes`` out of a serialised model.

    The shell is the same model with those fields removed (every enclosing
    length rewritten); nothing else changes, so it parses to the model with
    those initializers' data left unset.
    """
    shell = bytearray()
    payloads: list[tuple[int, int] | None] = []
    for number, field_start, value_start, value_end in fields(buffer, 0, len(buffer)):
        if number != GRAPH_FIELD:
            shell += buffer[field_start:value_end]
            continue
        graph = bytearray()
        for inner, inner_start, inner_value, inner_end in fields(buffer, value_start, value_end):
            if inner != INITIALIZER_FIELD:
                graph += buffer[inner_start:inner_end]
                continue
            tensor, payload = _tensor_without_payload(buffer, inner_value, inner_end, min_bytes)
            payloads.append(payload)
            graph += field_header(INITIALIZER_FIELD, len(tensor))
            graph += tensor
        shell += field_header(GRAPH_FIELD, len(graph))
        shell += graph
    return SplitModel(bytes(shell), payloads)


def _tensor_without_payload(buffer: memoryview, start: int, end: int, min_bytes: int,
                            ) -> tuple[memoryview | bytearray, tuple[int, int] | None]:
    """A TensorProto's bytes without its ``raw_data`` when that is large, and where it was.

    A repeated bytes field keeps its last value, so only the last
    ``raw_data`` counts; every occurrence is cut with it.
    """
    raw = [(s, vs, ve) for number, s, vs, ve in fields(buffer, start, end)
           if number == RAW_DATA_FIELD]
    if not raw or raw[-1][2] - raw[-1][1] <= min_bytes:
        return buffer[start:end], None
    kept = bytearray()
    position = start
    for field_start, _, value_end in raw:
        kept += buffer[position:field_start]
        position = value_end
    kept += buffer[position:end]
    _, value_start, value_end = raw[-1]
    return kept, (value_start, value_end - value_start)


def field_header(number: int, length: int) -> bytes:
    """The key and length that open a length-delimited field of ``length`` bytes."""
    return encode_varint(number << 3 | _LENGTH_DELIMITED) + encode_varint(length)


def encode_varint(value: int) -> bytes:
    """Protobuf's base-128 varint: seven bits a byte, low first, high bit = more follow."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
