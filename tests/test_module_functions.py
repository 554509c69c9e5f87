"""Modules as ONNX functions: one definition per structure, one call per instance.

Judged the way a user judges it: the file runs in ONNX Runtime with the flat
export's results, each chosen instance is a call of a shared function, and a
reader gets every node back with its full module path.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import transformers
from torch import nn

import model_zoo
import modelexport
from modelexport.cli import main
from modelexport.errors import InputMismatchError
from modelexport.tags import KEY_MODULE, node_props
from modelexport.tools.module_functions import FUNCTION_DOMAIN, inline_module_functions
from modelexport.tools.module_view import open_view


def _functions(model: onnx.ModelProto) -> dict[str, onnx.FunctionProto]:
    """The module functions by class name (a function is named by its class path)."""
    return {f.name.rsplit(".", 1)[-1]: f for f in model.functions
            if f.domain == FUNCTION_DOMAIN}


def _calls(nodes) -> list[onnx.NodeProto]:
    return [n for n in nodes if n.domain == FUNCTION_DOMAIN]


def _run(path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _bert_feeds(batch: int, sequence: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"input_ids": rng.integers(0, 100, (batch, sequence), dtype=np.int64),
            "attention_mask": np.ones((batch, sequence), dtype=np.int64),
            "token_type_ids": np.zeros((batch, sequence), dtype=np.int64)}


_FOLDED: dict[str, tuple] = {}


@pytest.fixture
def folded_bert(exported, tmp_path_factory):
    """``folded_bert(strategy)``: the zoo's tiny BERT exported with BertLayer as a
    function (path, report), once per strategy for the module's tests."""

    def get(strategy: str) -> tuple:
        if strategy not in _FOLDED:
            flat = exported("bert", strategy)
            path = tmp_path_factory.mktemp("folded") / f"bert-{strategy}.onnx"
            report = modelexport.export_model(flat.model, flat.inputs, path,
                                              strategy=strategy,
                                              modules_as_functions=["BertLayer"])
            _FOLDED[strategy] = path, report
        return _FOLDED[strategy]

    return get


@pytest.mark.parametrize("strategy", ["htp", "dynamo", "usage_based"])
def test_each_bert_layer_is_a_call_of_one_function(exported, folded_bert, strategy):
    flat = exported("bert", strategy)
    path, report = folded_bert(strategy)
    model = onnx.load(str(path))
    functions = _functions(model)
    calls = _calls(model.graph.node)
    assert report.summary.success and report.parity["passed"]
    assert report.parity["second_shape"]["passed"]  # dynamic axes survive the folding
    assert list(functions) == ["BertLayer"]
    assert sorted(node_props(c)[KEY_MODULE] for c in calls) == ["encoder.layer.0",
                                                                 "encoder.layer.1"]
    assert report.settings["functions"]["functions"][0]["instances"] == [
        "encoder.layer.0", "encoder.layer.1"]
    # the folded file computes what the flat one does, at a shape of neither export
    wanted = {i.name for i in model.graph.input}
    feeds = {k: v for k, v in _bert_feeds(2, 11).items() if k in wanted}
    for ours, theirs in zip(_run(path, feeds), _run(flat.path, feeds)):
        assert np.abs(ours - theirs).max() <= 1e-5
    # inlined, every node is back with its full path, as many per layer as before
    expanded = inline_module_functions(model)
    modules = [node_props(n).get(KEY_MODULE) for n in expanded.graph.node]
    flat_modules = [node_props(n).get(KEY_MODULE) for n in flat.load().graph.node]
    assert None not in modules and not _calls(expanded.graph.node)
    for layer in ("encoder.layer.0.attention.self.query", "encoder.layer.1.output.dense"):
        assert modules.count(layer) == flat_modules.count(layer) > 0


def test_nested_classes_become_calls_inside_the_outer_body(exported, tmp_path):
    flat = exported("bert", "dynamo")
    path = tmp_path / "nested.onnx"
    report = modelexport.export_model(flat.model, flat.inputs, path, strategy="dynamo",
                                      modules_as_functions=["BertLayer", "BertSelfAttention"])
    functions = _functions(onnx.load(str(path)))
    assert report.summary.success and set(functions) == {"BertLayer", "BertSelfAttention"}
    inner = _calls(functions["BertLayer"].node)
    assert [c.op_type for c in inner] == [
        "transformers.models.bert.modeling_bert.BertSelfAttention"]
    view = open_view(path)
    assert view.inlined and "encoder.layer.1.attention.self.key" in {
        info.module for info in view.nodes}


def test_instances_that_differ_get_a_function_each(tmp_path):
    """T5's first block computes the relative position bias the others reuse: two
    structures, so two functions; the bias table's node stays on its owner."""
    config = transformers.T5Config(num_layers=3, d_model=32, d_ff=64, num_heads=2, d_kv=16,
                                   vocab_size=100)
    model = transformers.T5EncoderModel(config).eval()  # native weights, as from_config
    inputs = {"input_ids": torch.randint(0, 100, (1, 9)),
              "attention_mask": torch.ones(1, 9, dtype=torch.long)}
    path = tmp_path / "t5.onnx"
    report = modelexport.export_model(model, inputs, path, strategy="dynamo",
                                      modules_as_functions=["T5Block"])
    instances = {f["name"].rsplit(".", 1)[-1]: f["instances"]
                 for f in report.settings["functions"]["functions"]}
    view = open_view(path)
    assert report.summary.success and report.check["ownership_accuracy"] == 1.0
    assert instances == {"T5Block": ["encoder.block.0"],
                         "T5Block_2": ["encoder.block.1", "encoder.block.2"]}
    bias = [info.module for node, info in zip(view.model.graph.node, view.nodes)
            if any("relative_attention_bias" in name for name in node.input)]
    assert bias == ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias"]


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.relu(self.linear(x)) + x)


class _Stack(nn.Module):
    """Three blocks in a row, and one block called twice around outside work."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block() for _ in range(3))
        self.shared = _Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.shared(self.shared(x) * 2.0)


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_a_user_module_folds_and_a_module_called_twice_stays_inline(strategy, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "stack.onnx"
    report = modelexport.export_model(_Stack().eval(), torch.randn(2, 5, 8), path,
                                      strategy=strategy, modules_as_functions=["_Block"])
    folded = report.settings["functions"]
    assert report.summary.success and report.parity["passed"]
    assert [(f["name"].rsplit(".", 1)[-1], f["instances"]) for f in folded["functions"]] == [
        ("_Block", ["blocks.0", "blocks.1", "blocks.2"])]
    # the shared block's two calls, with the scaling between them, are not one region
    assert "not one region" in folded["skipped"]["shared"]
    assert any("shared stays inline" in note for note in report.warnings)


def test_profile_reads_a_folded_file_by_module(tmp_path, folded_bert):
    path, _ = folded_bert("dynamo")
    out = tmp_path / "profile.json"
    code = main(["profile", str(path), "--repeats", "2", "--format", "json", "-o", str(out)])
    result = json.loads(out.read_text())
    rules = result["retag"]["rules"]
    kernels = {m["path"]: m["kernels"] for m in result["modules"]}
    assert code == 0 and rules.get("by-name", 0) >= 0.9 * result["retag"]["nodes"]
    assert kernels["encoder.layer.1.attention.self.query"] > 0


def test_unknown_class_is_refused_before_any_work(exported, tmp_path, capsys):
    flat = exported("bert", "htp")
    with pytest.raises(InputMismatchError, match="no module of class NoSuchLayer"):
        modelexport.export_model(flat.model, flat.inputs, tmp_path / "x.onnx",
                                 modules_as_functions=["NoSuchLayer"])
    with pytest.raises(InputMismatchError, match="clean"):
        modelexport.UnifiedExporter(clean=True, modules_as_functions=["BertLayer"])
    assert not list(tmp_path.iterdir())


def test_cli_functions_flag(tmp_path, capsys):
    folder = tmp_path / "bert"
    model_zoo.get_entry("bert").build("tiny").save_pretrained(folder)
    out = tmp_path / "bert.onnx"
    code = main(["export", "--model", str(folder), "-o", str(out), "--functions",
                 "BertLayer"])
    printed = capsys.readouterr().out
    assert code == 0 and "function BertLayer" in printed and "called by 2 instances" in printed
    assert list(_functions(onnx.load(str(out)))) == ["BertLayer"]
    code = main(["export", "--model", str(folder), "-o", str(tmp_path / "no.onnx"),
                 "--functions", "NoSuchLayer"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code != 0 and "Traceback" not in err and len(errors) == 1
    assert "no module of class NoSuchLayer" in errors[0]
    assert not (tmp_path / "no.onnx").exists()


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_resnet_conv_layers_share_functions_by_structure(exported, strategy, tmp_path):
    """A CNN's conv layers differ in stride, kernel and activation: one function per
    distinct structure, each instance a call of the one that matches it."""
    flat = exported("resnet", strategy)
    path = tmp_path / "resnet.onnx"
    report = modelexport.export_model(flat.model, flat.inputs, path, strategy=strategy,
                                      modules_as_functions=["ResNetConvLayer"])
    folded = report.settings["functions"]
    layers = [name for name, module in flat.model.named_modules()
              if type(module).__name__ == "ResNetConvLayer"]
    called = sorted(i for f in folded["functions"] for i in f["instances"])
    assert report.summary.success and report.parity["passed"] and not folded["skipped"]
    assert called == sorted(layers)
    assert len(folded["functions"]) < len(layers)  # some structures are shared
    model = onnx.load(str(path))
    assert len(_calls(model.graph.node)) == len(layers)
    feeds = {"pixel_values": np.random.default_rng(2).standard_normal(
        (2, 3, 32, 32)).astype(np.float32)}
    for ours, theirs in zip(_run(path, feeds), _run(flat.path, feeds)):
        assert np.abs(ours - theirs).max() <= 1e-5


def test_quantize_reads_a_folded_file_by_module(tmp_path, folded_bert, capsys):
    path, _ = folded_bert("dynamo")
    target = tmp_path / "int8.onnx"
    code = main(["quantize", str(path), "-o", str(target), "--exclude", "encoder.layer.0.*",
                 "--json"])
    rows = {row["path"]: row for row in json.loads(capsys.readouterr().out)["modules"]}
    assert code == 0 and rows["encoder.layer.0"]["quantized"] == 0
    assert rows["encoder.layer.1"]["quantized"] >= 6
