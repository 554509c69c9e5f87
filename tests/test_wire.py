"""Reading an ONNX file's weights where they sit, and the check-only load built on it.

The self-check's ONNX Runtime load parses only the file's shell and maps
each weight from the file by offset.  That is only a check of the file if
the cut is exact: the shell must parse to the same model minus those
payloads, each offset must land on the payload's bytes, and a damaged file
must still fail.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from test_onnx_payload import _model, _run

from modelexport.output.onnx_payload import INLINE_BYTES, save_streamed
from modelexport.output.wire import WireFormatError, encode_varint, read_varint, split_payloads
from modelexport.validation.file_checks import runtime_load, runtime_load_in_place


@pytest.mark.parametrize("layout", ["protobuf", "streamed"])
def test_the_shell_is_the_model_without_its_large_payloads(tmp_path, layout):
    model = _model()
    path = tmp_path / "m.onnx"
    if layout == "protobuf":
        path.write_bytes(model.SerializeToString())
    else:  # repeated graph fields, large initializers after the small ones
        save_streamed(model, path)
    data = path.read_bytes()
    split = split_payloads(memoryview(data), INLINE_BYTES)
    shell = onnx.ModelProto.FromString(split.shell)
    back = onnx.load(str(path))
    assert len(split.payloads) == len(back.graph.initializer) == len(shell.graph.initializer)
    cut = 0
    for whole, bare, payload in zip(back.graph.initializer, shell.graph.initializer,
                                    split.payloads):
        assert bare.name == whole.name and list(bare.dims) == list(whole.dims)
        if payload is None:
            assert bare == whole
            continue
        cut += 1
        offset, length = payload
        assert not bare.HasField("raw_data") and length > INLINE_BYTES
        assert data[offset:offset + length] == whole.raw_data
    assert cut == 2  # "w" and "h" carry raw payloads; "t" is a typed field, kept whole
    assert list(shell.graph.node) == list(back.graph.node)


def test_varints_read_back_what_was_encoded():
    for value in (0, 1, 127, 128, 300, 2**31, 2**63 - 1):
        encoded = encode_varint(value)
        assert read_varint(memoryview(encoded), 0, len(encoded)) == (value, len(encoded))
    with pytest.raises(WireFormatError):
        read_varint(memoryview(b"\x80\x80"), 0, 2)


def test_the_in_place_load_runs_like_the_file_loaded_by_path(tmp_path):
    path = tmp_path / "m.onnx"
    save_streamed(_model(), path)
    x = np.random.default_rng(3).standard_normal((1, 64)).astype(np.float32)
    in_place = runtime_load_in_place(path).run(None, {"x": x})
    for mapped, read in zip(in_place, _run(str(path), x)):
        np.testing.assert_allclose(mapped, read, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "payload-short", "empty", "not-protobuf"])
def test_a_damaged_file_does_not_load_in_place(tmp_path, damage):
    model = _model()
    path = tmp_path / "m.onnx"
    if damage == "payload-short":  # well framed, but a weight's bytes do not fill its shape
        model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:-8]
    save_streamed(model, path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:-100])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-protobuf":
        path.write_bytes(b"\xff" * 64)
    session, problem = runtime_load(path)
    assert session is None and problem
    if damage == "payload-short":  # ONNX Runtime refuses it by path too
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own exception types
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if damage in ("truncated", "not-protobuf"):
        assert problem.startswith("not a well-formed ONNX file")
