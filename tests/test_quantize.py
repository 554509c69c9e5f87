"""Per-module int8 quantization: the selection by module path is exact, the report
counts what the quantized file computes in integers, and its errors measure."""

from __future__ import annotations

import json

import onnx
import pytest

from modelexport.cli import main
from modelexport.tools.module_view import open_view


def _quantize(capsys, source, target, *args: str) -> tuple[int, dict, str]:
    code = main(["quantize", str(source), "-o", str(target), "--json", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def _rows(report: dict) -> dict[str, dict]:
    return {row["path"]: row for row in report["modules"]}


def _signature(node: onnx.NodeProto) -> tuple:
    return node.op_type, tuple(node.input), tuple(node.output)


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_excluded_layer_stays_float_and_the_rest_is_quantized(exported, strategy, tmp_path,
                                                               capsys):
    source = exported("bert", strategy).path
    target = tmp_path / "int8.onnx"
    code, report, _ = _quantize(capsys, source, target, "--exclude", "encoder.layer.0.*")
    rows = _rows(report)
    assert code == 0 and report["mode"] == "dynamic"
    assert rows["encoder.layer.0"]["quantized"] == 0 and rows["encoder.layer.0"]["kept_float"]
    assert rows["encoder.layer.1"]["quantized"] >= 6  # q, k, v, and the three dense layers
    assert report["bytes_after"] < report["bytes_before"]
    # exactly that layer: each of its nodes is in the quantized file as it was
    flat, quantized = open_view(source), open_view(target)
    kept = {node.name: _signature(node) for node in quantized.model.graph.node}
    for node, info in zip(flat.model.graph.node, flat.nodes):
        if info.module.startswith("encoder.layer.0."):
            assert kept.get(node.name) == _signature(node), node.name
    # every weight MatMul elsewhere is gone, replaced by integer kernels on its module
    weights = {init.name for init in flat.model.graph.initializer if len(init.dims) == 2}
    for node, info in zip(flat.model.graph.node, flat.nodes):
        if (node.op_type == "MatMul" and set(node.input) & weights
                and info.module.startswith("encoder.layer.1.")):
            assert kept.get(node.name) != _signature(node), node.name
    integer = {info.module for node, info in zip(quantized.model.graph.node, quantized.nodes)
               if node.op_type == "MatMulInteger"}
    assert "encoder.layer.1.attention.self.query" in integer
    assert not any(m.startswith("encoder.layer.0.") for m in integer)
    assert report["retag"]["coverage_after"] == 1.0
    assert main(["validate", str(target)]) == 0


def test_the_error_column_measures_where_quantization_enters(exported, tmp_path, capsys):
    """Only the pooler quantized: every module before it is exact, the pooler is not."""
    code, report, _ = _quantize(capsys, exported("bert", "htp").path, tmp_path / "p.onnx",
                                "--include", "pooler")
    rows = _rows(report)
    assert code == 0 and rows["pooler.dense"]["quantized"] == 1
    assert rows["encoder.layer.1"]["max_abs_error"] == 0.0
    assert rows["embeddings.word_embeddings"]["quantized"] == 0
    assert rows["pooler.dense"]["max_abs_error"] > 0 and report["output_max_abs_error"] > 0


def test_static_qdq_on_a_cnn_keeps_the_stem_float(exported, tmp_path, capsys):
    code, report, _ = _quantize(capsys, exported("resnet", "htp").path, tmp_path / "r.onnx",
                                "--mode", "static", "--exclude", "embedder", "--depth", "4")
    rows = _rows(report)
    assert code == 0 and report["mode"] == "static"
    assert rows["embedder.embedder.convolution"]["quantized"] == 0
    assert rows["embedder.embedder.convolution"]["kept_float"] == 1
    assert rows["embedder.embedder.convolution"]["max_abs_error"] == 0.0
    assert rows["encoder.stages.0.layers"]["quantized"] > 0
    assert rows["encoder.stages.1.layers"]["quantized"] > 0
    assert main(["validate", str(tmp_path / "r.onnx")]) == 0


def test_a_selection_without_quantizable_nodes_is_refused(exported, tmp_path, capsys):
    target = tmp_path / "none.onnx"
    code = main(["quantize", str(exported("bert", "htp").path), "-o", str(target),
                 "--include", "no.such.module"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and len(errors) == 1 and "selection holds no node" in errors[0]
    assert "Traceback" not in err and not target.exists()
