"""Streaming a model's weights to disk, and checking and running its skeleton.

The save path writes the protobuf by hand around each weight's payload, and
the self-check and USAGE_BASED read a copy with the weights as inputs: each
must give exactly what the whole model gives, or a file could read back
different from what was tagged and checked.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from modelexport.hierarchy import ModuleTree
from modelexport.onnx_runtime.values import intermediate_values, ort_session
from modelexport.output.onnx_payload import (
    carries_payload,
    detach_payloads,
    held_in_memory,
    initializer_array,
    materialized,
    model_bytes,
    save_streamed,
    skeleton,
    tensor_bytes,
)
from modelexport.validation.self_check import self_check


def _model() -> onnx.ModelProto:
    """x @ W (raw payload) + b (typed field, large) reshaped by a small constant."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    bias = helper.make_tensor("b", TensorProto.FLOAT, [32],
                              rng.standard_normal(32).astype(np.float32).tolist())
    big_typed = helper.make_tensor("t", TensorProto.FLOAT, [400],
                                   rng.standard_normal(400).astype(np.float32).tolist())
    shape = numpy_helper.from_array(np.array([4, 8], dtype=np.int64), "shape")
    half = numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float16), "h")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["xw"], name="mm"),
        helper.make_node("Add", ["xw", "b"], ["y"], name="add"),
        helper.make_node("Reshape", ["y", "shape"], ["z"], name="reshape"),
        helper.make_node("ReduceSum", ["t"], ["s"], name="sum", keepdims=0),
        helper.make_node("Cast", ["h"], ["hf"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["hf"], ["hs"], name="hsum", keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
         for n, shape in (("z", [4, 8]), ("s", []), ("hs", []))],
        initializer=[weight, bias, big_typed, shape, half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def _run(source: str | bytes, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_tensor_bytes_is_the_payload_size_without_reading_it():
    model = _model()
    for tensor in model.graph.initializer:
        if tensor.HasField("raw_data"):
            assert tensor_bytes(tensor) == len(tensor.raw_data)
    assert tensor_bytes(model.graph.initializer[2]) == 400 * 4  # typed field, no raw data
    assert model_bytes(model) == sum(tensor_bytes(t) for t in model.graph.initializer)


def test_a_streamed_file_reads_back_as_the_same_model(tmp_path):
    model = _model()
    save_streamed(model, tmp_path / "s.onnx")
    back = onnx.load(str(tmp_path / "s.onnx"))
    assert {t.name: t for t in back.graph.initializer} == \
        {t.name: t for t in model.graph.initializer}
    assert list(back.graph.node) == list(model.graph.node)
    assert back.graph.input == model.graph.input and back.opset_import == model.opset_import
    onnx.checker.check_model(str(tmp_path / "s.onnx"), full_check=True)
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    for streamed, whole in zip(_run(str(tmp_path / "s.onnx"), x),
                               _run(model.SerializeToString(), x)):
        np.testing.assert_array_equal(streamed, whole)


def test_the_skeleton_holds_no_payload_and_runs_like_the_model():
    model = _model()
    bones = skeleton(model)
    assert not any(carries_payload(t) for t in bones.graph.initializer)
    assert "shape" in {t.name for t in bones.graph.initializer}  # shape constants stay
    assert {"w", "h"} <= {i.name for i in bones.graph.input}
    onnx.checker.check_model(bones, full_check=True)
    x = np.random.default_rng(2).standard_normal((1, 64)).astype(np.float32)
    values = intermediate_values(model, {"x": x})
    session = ort_session(model)  # the whole model, weights inside, optimisation off
    for name, expected in zip(["z", "s", "hs"], session.run(None, {"x": x})):
        # a constant weight gets a pre-packed MatMul kernel, a fed one does not:
        # the sums are ordered differently, so the last bits may differ
        np.testing.assert_allclose(values[name], expected, rtol=1e-5, atol=1e-5)
    assert values["xw"].shape == (1, 32)  # an intermediate, exposed


@pytest.mark.parametrize("damage", ["payload", "type"])
def test_the_self_check_still_fails_a_broken_file(tmp_path, damage):
    """The checker sees only the skeleton; ONNX Runtime, reading the file, sees the rest."""
    model = _model()
    if damage == "payload":  # a weight whose bytes do not fill its shape
        model.graph.initializer[0].raw_data = model.graph.initializer[0].raw_data[:-8]
    else:  # an Add of float and half: shape inference's job, on the skeleton
        model.graph.node[1].input[1] = "h"
    save_streamed(model, tmp_path / "broken.onnx")
    check = self_check(model, tmp_path / "broken.onnx", [None] * len(model.graph.node),
                       ModuleTree(torch.nn.Identity()), torch.nn.Identity(), ["x"], held={})
    assert not check.passed and not check.loads
    if damage == "type":
        assert any(f.startswith("ONNX checker:") for f in check.failures)


def test_detached_weights_stay_in_the_buffer_and_read_back_the_same(tmp_path):
    """A TorchScript export's bytes are parsed without their weights, and nothing is lost."""
    model = _model()
    data = model.SerializeToString()
    graph, payloads = detach_payloads(data)
    held = [t.name for t in graph.graph.initializer if held_in_memory(t)]
    assert held == ["w", "h"]  # the raw payloads; "t" (typed) and "shape" (small) stay inline
    assert model_bytes(graph) == model_bytes(model)
    for detached, whole in zip(graph.graph.initializer, model.graph.initializer):
        assert not detached.HasField("raw_data") or not held_in_memory(detached)
        np.testing.assert_array_equal(initializer_array(detached, payloads),
                                      numpy_helper.to_array(whole))
    assert np.shares_memory(initializer_array(graph.graph.initializer[0], payloads),
                            np.frombuffer(data, dtype=np.uint8))  # a view, not a copy
    save_streamed(graph, tmp_path / "s.onnx", payloads)
    back = onnx.load(str(tmp_path / "s.onnx"))
    assert {t.name: t for t in back.graph.initializer} == \
        {t.name: t for t in model.graph.initializer}
    assert materialized(graph, payloads).graph.initializer[0] == model.graph.initializer[0]
    x = np.random.default_rng(4).standard_normal((1, 64)).astype(np.float32)
    np.testing.assert_allclose(intermediate_values(graph, {"x": x}, payloads=payloads)["z"],
                               intermediate_values(model, {"x": x})["z"], rtol=1e-6)


def test_a_detached_graph_without_its_buffer_is_refused(tmp_path):
    graph, _ = detach_payloads(_model().SerializeToString())
    with pytest.raises(ValueError, match="held in memory"):
        save_streamed(graph, tmp_path / "s.onnx")
