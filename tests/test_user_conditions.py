"""What a user means by ok: fresh weights, dynamic shapes, a file that runs.

Each test builds a model the way a user does (``from_config``, or
``save_pretrained`` and the CLI) and judges the file with ONNX Runtime
directly, not with the exporter's own checks alone.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers as hf

import model_zoo
import modelexport
from modelexport.cli.commands import main
from modelexport.input_generation.second_shape import at_second_shape
from modelexport.inputs import ModelInputs
from modelexport.validation.parity import check_parity


def fresh_bert() -> torch.nn.Module:
    """A tiny BERT as ``from_config`` leaves it: zero biases, LayerNorm weights of ones."""
    config = hf.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=37,
                           max_position_embeddings=64)
    torch.manual_seed(0)
    return hf.BertModel(config).eval()


def text_inputs(batch: int, sequence: int) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 100, (batch, sequence)),
            "attention_mask": torch.ones(batch, sequence, dtype=torch.long)}


def run_file(path, feed: dict[str, torch.Tensor]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in feed.items()})[0]


@pytest.mark.parametrize("strategy", ["dynamo", "htp", "usage_based"])
def test_a_fresh_bert_exports_with_one_initializer_per_parameter(tmp_path, strategy):
    model = fresh_bert()
    path = tmp_path / "bert.onnx"
    report = modelexport.export_model(model, text_inputs(1, 16), path, strategy=strategy)
    assert report.check_passed, report.check["failures"]
    assert report.parity["passed"], report.parity
    assert report.settings["merged_weights"] == {}
    names = {init.name for init in onnx.load(str(path)).graph.initializer}
    biases = [n for n, _ in model.named_parameters() if n.endswith(".bias")]
    # every zero bias keeps an initializer of its own, under its state-dict name,
    # save the ones an optimiser folded into a neighbour (pooler: Gemm)
    kept = [n for n in biases if n in names]
    assert len(kept) >= len(biases) - 2, sorted(set(biases) - names)


def test_dedupe_weights_merges_equal_parameters_and_says_so(tmp_path):
    report = modelexport.export_model(fresh_bert(), text_inputs(1, 16), tmp_path / "b.onnx",
                                      strategy="dynamo", dedupe_weights=True)
    merged = report.settings["merged_weights"]
    assert merged and all(len(names) >= 2 for names in merged.values())
    assert report.check_passed, report.check["failures"]  # ownership reads the merge right
    assert any("dedupe_weights" in w for w in report.warnings)


@pytest.mark.parametrize("strategy", ["dynamo", "htp", "usage_based"])
def test_a_default_export_runs_at_another_batch_and_sequence(tmp_path, strategy):
    model = fresh_bert()
    path = tmp_path / "bert.onnx"
    report = modelexport.export_model(model, text_inputs(1, 16), path, strategy=strategy)
    inputs = {i.name: i.shape for i in
              ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()}
    assert inputs == {"input_ids": ["batch", "sequence"],
                      "attention_mask": ["batch", "sequence"]}
    assert report.parity["second_shape"]["passed"]
    feed = text_inputs(3, 17)
    with torch.no_grad():
        expected = model(**feed).last_hidden_state.numpy()
    assert np.abs(run_file(path, feed) - expected).max() < 1e-4


def test_static_keeps_the_example_shape_and_the_report_says_what_was_checked(tmp_path):
    report = modelexport.export_model(fresh_bert(), text_inputs(1, 16), tmp_path / "b.onnx",
                                      strategy="htp", static=True)
    assert report.settings["open_axes"] == {}
    assert report.parity["second_shape"] is None
    assert any("example's shape only" in w for w in report.warnings)


def test_no_validate_is_stated_in_the_report(tmp_path):
    report = modelexport.export_model(fresh_bert(), text_inputs(1, 16), tmp_path / "b.onnx",
                                      strategy="htp", validate=False)
    assert report.parity is None and report.settings["validated"] is False
    assert any("not validated" in w for w in report.warnings)


class BakesItsBatch(torch.nn.Module):
    """Multiplies by its batch size read as a Python int: a trace freezes the number."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * int(x.shape[0])


def test_a_size_baked_into_the_graph_fails_at_the_second_shape(tmp_path):
    report = modelexport.export_model(BakesItsBatch(), torch.randn(1, 4), tmp_path / "m.onnx",
                                      strategy="htp", dynamic_batch=True)
    second = report.parity["second_shape"]
    assert second is not None and not second["passed"]
    assert not report.parity["passed"] and "batch=3" in report.parity["detail"]


def test_by_default_a_baked_batch_closes_and_the_report_says_so(tmp_path):
    report = modelexport.export_model(BakesItsBatch(), torch.randn(1, 4), tmp_path / "m.onnx",
                                      strategy="htp")
    assert report.parity["passed"] and report.settings["open_axes"] == {}
    assert report.settings["closed_axes"] == {"x": ["batch"]}
    assert [a.axes for a in report.summary.attempts] == ["batch open", "static"]


def test_a_file_that_loads_but_cannot_run_fails_parity(tmp_path):
    """A Reshape to an impossible size loads in ONNX Runtime and fails on its first run."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([-1, 7], dtype=np.int64), "shape")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # it loads
    result = check_parity(path, torch.nn.Identity(), ModelInputs(args=(torch.randn(1, 4),)),
                          ["x"])
    assert not result.passed and result.detail.startswith("ONNX Runtime failed")


class _BranchesOnAnEmptyPast(torch.nn.Module):
    """Sums its inputs, but adds one when the past is empty: the branch a trace bakes."""

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        extra = 1.0 if past.shape[1] == 0 else 0.0
        return x.sum(-1) + past.sum(-1) + extra


def test_a_with_past_file_wrong_for_an_empty_past_fails_parity(tmp_path):
    """The file (sums, no branch) matches at the example's and the second shape, and
    fails only where the past is empty, as on a prompt."""
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axis"], ["sx"], keepdims=0),
         helper.make_node("ReduceSum", ["past", "axis"], ["sp"], keepdims=0),
         helper.make_node("Add", ["sx", "sp"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "sequence"]),
         helper.make_tensor_value_info("past", onnx.TensorProto.FLOAT,
                                       ["batch", "past_sequence"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch"])],
        [onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis")])
    path = tmp_path / "step.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    example = ModelInputs(args=(torch.randn(1, 2), torch.randn(1, 5)))
    result = check_parity(path, _BranchesOnAnEmptyPast(), example, ["x", "past"])
    assert result.second_shape.passed and result.second_shape.sizes["past_sequence"] == 4
    assert not result.passed and result.empty_past.sizes["past_sequence"] == 0
    assert "past_sequence=0" in result.detail


def test_the_second_shape_follows_the_files_symbols():
    example = ModelInputs(kwargs=text_inputs(1, 16))
    resized, sizes = at_second_shape(
        example, ["input_ids", "attention_mask"],
        {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}})
    assert sizes == {"batch": 3, "sequence": 15}
    assert resized.kwargs["input_ids"].shape == resized.kwargs["attention_mask"].shape == (3, 15)
    assert bool((resized.kwargs["attention_mask"] == 1).all())  # an all-ones mask stays so
    assert at_second_shape(example, ["input_ids", "attention_mask"], {}) is None


def test_zoo_native_weights_are_the_models_own_initialisation():
    native = model_zoo.get_entry("bert@native").build()
    seeded = model_zoo.get_entry("bert").build()
    norm = "embeddings.LayerNorm.weight"
    assert bool((dict(native.named_parameters())[norm] == 1).all())
    assert not bool((dict(seeded.named_parameters())[norm] == 1).all())
    with pytest.raises(KeyError, match="unknown weight mode"):
        model_zoo.get_entry("bert@warm")


def test_the_cli_exports_a_saved_folder_that_runs_at_a_new_shape(tmp_path, capsys):
    fresh_bert().save_pretrained(tmp_path / "bert")
    out = tmp_path / "bert.onnx"
    assert main(["export", "--model", str(tmp_path / "bert"), "--output", str(out),
                 "--strategy", "dynamo"]) == 0
    feed = text_inputs(3, 17)
    with torch.no_grad():
        expected = hf.BertModel.from_pretrained(tmp_path / "bert").eval()(**feed)
    got = run_file(out, {**feed, "token_type_ids": torch.zeros(3, 17, dtype=torch.long)}
                   if "token_type_ids" in {i.name for i in onnx.load(str(out)).graph.input}
                   else feed)
    assert np.abs(got - expected.last_hidden_state.numpy()).max() < 1e-4


def test_a_fresh_batchnorm_folded_into_its_conv_keeps_the_conv_on_its_owner(tmp_path):
    """Fresh BatchNorm statistics fold into a zero bias, whose content names no parameter."""
    entry = model_zoo.get_entry("resnet@native")
    model = entry.build("tiny")
    report = modelexport.export_model(model, entry.inputs(model, "tiny"), tmp_path / "r.onnx",
                                      strategy="htp")
    assert report.check_passed, report.check["failures"]
    # a folded Conv reads a new tensor that no parameter equals: it anchors
    # nothing (as with seeded weights) rather than anchoring on the BatchNorm
    assert report.anchored["accuracy"] in (None, 1.0)


class DrawsNoise(torch.nn.Module):
    """Adds fresh random numbers in eval mode, as a random-masking pretraining head does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand_like(x)


def test_a_model_that_disagrees_with_itself_is_named_as_such(tmp_path):
    report = modelexport.export_model(DrawsNoise(), torch.randn(2, 8), tmp_path / "m.onnx",
                                      strategy="htp")
    assert not report.parity["passed"]
    assert "PyTorch gives other values on a second run" in report.parity["detail"]


def test_a_deterministic_mismatch_is_not_blamed_on_pytorch(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Neg", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4])])
    path = tmp_path / "neg.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]),
              path)
    result = check_parity(path, torch.nn.Identity(), ModelInputs(args=(torch.randn(1, 4),)),
                          ["x"])
    assert not result.passed and result.detail == "output 0 exceeds tolerance"
