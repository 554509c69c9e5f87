"""One representative per class of failure found on models nobody here wrote.

Each test names the class it guards: a root container tagged on the root, a
KV cache nobody asked for, a file ONNX Runtime cannot load, graph inputs
bound by position, a silently changed opset, a frozen branch, torch's own
dumps on stdout, parameters used by a module whose own forward never runs,
one submodule under two parents, and an op TorchScript cannot lower.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers as hf

import model_zoo
import modelexport
from modelexport.errors import InputMismatchError
from modelexport.harness.workers import import_plugin
from tests.conftest import STRATEGIES

FAULTY = str(Path(__file__).parent / "plugins" / "faulty_strategies.py")
PLAIN_STRATEGIES = STRATEGIES


def idiom(name: str) -> tuple[torch.nn.Module, object]:
    entry = model_zoo.get_entry(name)
    model = entry.build("idioms")
    return model, entry.inputs(model, "idioms")


@pytest.mark.parametrize("strategy", PLAIN_STRATEGIES)
def test_root_sequential_puts_every_parameter_node_on_its_layer(strategy, tmp_path):
    model, x = idiom("root_sequential")
    report = modelexport.export_model(model, x, tmp_path / "s.onnx", strategy=strategy)
    assert report.check_passed
    assert report.anchored["anchored_nodes"] == 3
    assert report.anchored["accuracy"] == 1.0
    assert report.coverage["root"] == 0.0


def test_decoder_given_a_plain_tokenizer_dict_drops_the_cache_and_says_so(tmp_path):
    config = hf.Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    model = hf.Qwen2Model(config).eval()
    ids = torch.randint(0, 64, (1, 7))
    report = modelexport.export_model(model, {"input_ids": ids,
                                              "attention_mask": torch.ones_like(ids)},
                                      tmp_path / "q.onnx", validate=True)
    assert report.parity_passed and report.check_passed
    assert report.settings["use_cache_dropped"] is True
    assert any("use_cache=False" in w for w in report.warnings)
    session = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == 1  # the hidden states; no past key/values


def test_an_encoder_that_returns_no_cache_gets_no_warning(tmp_path):
    model = model_zoo.get_entry("bert").build()
    ids = torch.randint(0, 128, (1, 6))
    report = modelexport.export_model(model, {"input_ids": ids}, tmp_path / "b.onnx")
    assert report.settings["use_cache_dropped"] is False and report.warnings == []


def test_a_file_onnx_runtime_cannot_load_never_reports_ok(tmp_path):
    import_plugin(FAULTY)
    model, x = idiom("root_sequential")
    report = modelexport.export_model(model, x, tmp_path / "u.onnx", strategy="unloadable")
    assert (tmp_path / "u.onnx").exists()  # an explicit strategy keeps its file ...
    assert not report.check_passed  # ... and the report says what failed
    assert report.check["loads"] is False
    assert any("ONNX Runtime cannot load" in w for w in report.warnings)


def test_auto_moves_on_from_a_file_that_fails_its_self_check(tmp_path, monkeypatch):
    import_plugin(FAULTY)
    import modelexport.api as api
    from modelexport.selection.selector import Recommendation, recommend_strategy

    def first_unloadable(model, prioritize_speed=True, characteristics=None, **options):
        pick = recommend_strategy(model, prioritize_speed, characteristics, **options)
        return Recommendation(**{**pick.__dict__, "strategy": "unloadable",
                                 "fallback_order": ["unloadable", "htp"]})

    monkeypatch.setattr(api, "recommend_strategy", first_unloadable)
    model, x = idiom("root_sequential")
    report = modelexport.export_model(model, x, tmp_path / "a.onnx")
    attempts = report.summary.attempts
    assert [a.strategy for a in attempts] == ["unloadable", "htp"]
    assert attempts[0].error_type == "SelfCheckFailed" and "cannot load" in attempts[0].error
    assert report.summary.final_strategy == "htp" and report.check_passed


def test_cli_exits_1_with_one_error_line_when_the_self_check_fails(tmp_path):
    code = ("import sys; from modelexport.harness.workers import import_plugin; "
            f"import_plugin({FAULTY!r}); from modelexport.cli.commands import main; "
            "sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", code, "export", "--model", "zoo:small_cnn",
                          "--strategy", "unloadable", "-o", str(tmp_path / "c.onnx")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "self-check failed" in errors[0]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("strategy", ["htp", "usage_based", "dynamo"])
def test_tokenizer_ordered_dict_binds_every_graph_input_by_name(strategy, tmp_path):
    model = model_zoo.get_entry("bert").build()
    ids = torch.randint(0, 128, (1, 8))
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    types = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    tokenizer_order = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}
    path = tmp_path / "b.onnx"
    report = modelexport.export_model(model, tokenizer_order, path, strategy=strategy,
                                      validate=True)
    assert report.parity_passed
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: tokenizer_order[i.name].numpy() for i in session.get_inputs()}
    got = session.run(None, feed)[0]
    with torch.no_grad():
        expected = model(**tokenizer_order).last_hidden_state.numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_reversed_input_specs_bind_by_name(tmp_path):
    specs = {"attention_mask": {"shape": [1, 8], "dtype": "int64", "low": 1, "high": 2},
             "input_ids": {"shape": [1, 8], "dtype": "int64", "low": 0, "high": 100}}
    folder = tmp_path / "bert"
    model_zoo.get_entry("bert").build().save_pretrained(folder)
    (tmp_path / "specs.json").write_text(json.dumps(specs))
    from modelexport.cli.commands import main

    code = main(["export", "--model", str(folder), "--input-specs",
                 str(tmp_path / "specs.json"), "-o", str(tmp_path / "r.onnx"), "--validate",
                 "--strategy", "htp"])
    assert code == 0
    session = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize("opset", [99, 0])
def test_an_opset_no_exporter_can_write_is_refused(opset, tmp_path):
    model, x = idiom("root_sequential")
    with pytest.raises(InputMismatchError, match=f"opset {opset} is not available"):
        modelexport.export_model(model, x, tmp_path / "o.onnx", opset=opset)
    assert not (tmp_path / "o.onnx").exists()


def test_an_opset_the_exporter_does_not_honour_is_a_warning(tmp_path):
    model, x = idiom("root_sequential")
    report = modelexport.export_model(model, x, tmp_path / "o.onnx", strategy="dynamo",
                                      opset=11)
    assert any("opset 11 was requested; dynamo wrote opset 18" in w for w in report.warnings)


def test_a_frozen_branch_is_a_warning(tmp_path):
    entry = model_zoo.get_entry("mean_gate")
    model = entry.build()
    report = modelexport.export_model(model, entry.inputs(model, "tiny"), tmp_path / "m.onnx",
                                      strategy="htp")
    assert any("data-dependent branch" in w and "MeanGate.forward" in w
               for w in report.warnings)


def test_json_output_stays_json_when_the_torchscript_exporter_dumps_its_graph(tmp_path):
    """TorchScript prints its whole IR from C++ when an op has no symbolic."""
    factory = tmp_path / "histo.py"
    factory.write_text(
        "import torch\n"
        "class Histogram(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.histc(x, bins=4, min=-2, max=2) + x.sum()\n"
        "def build():\n"
        "    return Histogram(), torch.randn(3, 5)\n")
    run = subprocess.run([sys.executable, "-m", "modelexport.cli", "export", "--model",
                          f"{factory}:build", "--strategy", "htp", "-o",
                          str(tmp_path / "h.onnx"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and run.stdout == ""
    assert "aten::histc" in run.stderr and "Torch IR graph" not in run.stderr + run.stdout


@pytest.mark.parametrize("name", ["multihead_attention", "transformer_encoder"])
def test_parameters_read_by_the_module_that_ran_count_as_placed(name, tmp_path):
    """``nn.MultiheadAttention`` reads ``out_proj.weight`` itself; ``out_proj`` never runs."""
    model, x = idiom(name)
    report = modelexport.export_model(model, x, tmp_path / "m.onnx", strategy="htp")
    assert report.check_passed and report.anchored["accuracy"] == 1.0


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_one_submodule_under_two_parents_is_tagged_by_its_own_name(strategy, tmp_path):
    model, x = idiom("shared_submodule")
    path = tmp_path / "s.onnx"
    report = modelexport.export_model(model, x, path, strategy=strategy)
    assert report.check_passed and report.anchored["accuracy"] == 1.0
    modules = {tag.module for tag in modelexport.read_tags(str(path)).values()}
    assert "left.shared" in modules and "right.shared" not in modules


def test_an_op_torchscript_lacks_is_translated_and_checked(tmp_path):
    class Steps(torch.nn.Module):
        def forward(self, x):
            return torch.diff(x, dim=-1), (x > 0).cumsum(-1)

    report = modelexport.export_model(Steps(), torch.randn(2, 6), tmp_path / "d.onnx",
                                      strategy="htp", validate=True)
    assert report.check_passed and report.parity_passed


def test_a_non_module_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputMismatchError, match=r"must be a torch\.nn\.Module, not dict"):
        modelexport.export_model({"not": "a model"}, torch.ones(1), tmp_path / "x.onnx")


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_with_past_exports_a_decoding_step_with_optimum_names(strategy, tmp_path):
    """Past key/values in, present key/values out; checked on a step with another past length."""
    model = model_zoo.get_entry("llama").build()
    ids = torch.randint(0, 128, (1, 6))
    path = tmp_path / "step.onnx"
    report = modelexport.export_model(model, {"input_ids": ids,
                                              "attention_mask": torch.ones_like(ids)},
                                      path, strategy=strategy, with_past=True, validate=True)
    assert report.parity_passed and report.check_passed
    layers = model.config.num_hidden_layers
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [
        "input_ids", "attention_mask", "position_ids",
        *[f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]]
    assert [o.name for o in session.get_outputs()] == [
        "logits", *[f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]]

    prompt, new = torch.randint(0, 128, (1, 9)), torch.randint(0, 128, (1, 1))
    with torch.no_grad():
        past = model(input_ids=prompt, use_cache=True).past_key_values
        feed = {"input_ids": new.numpy(), "attention_mask": np.ones((1, 10), np.int64),
                "position_ids": np.array([[9]], np.int64)}
        for i, layer in enumerate(past.layers):
            feed[f"past_key_values.{i}.key"] = layer.keys.numpy()
            feed[f"past_key_values.{i}.value"] = layer.values.numpy()
        expected = model(input_ids=new, attention_mask=torch.ones(1, 10, dtype=torch.long),
                         past_key_values=past, use_cache=True)
    got = session.run(None, feed)
    assert np.abs(got[0] - expected.logits.numpy()).max() < 1e-4
    assert got[1].shape[2] == 10  # the present cache grew by the new token


def test_with_past_on_an_encoder_is_one_clear_error(tmp_path):
    model = model_zoo.get_entry("bert").build()
    ids = torch.randint(0, 128, (1, 6))
    with pytest.raises(InputMismatchError, match="with_past"):
        modelexport.export_model(model, {"input_ids": ids}, tmp_path / "e.onnx", with_past=True)
    assert not (tmp_path / "e.onnx").exists()


class WeightNormed(torch.nn.Module):
    """A weight-norm parametrisation: the weight is computed from two parameters of
    ``parametrizations.weight``, by its child that is handed them as arguments."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 4, 3))

    def forward(self, x):
        return self.conv(x)


class WholeTablePositions(torch.nn.Module):
    """Every row of a position table added: exporters fold the Gather into the weight."""

    def __init__(self):
        super().__init__()
        self.positions = torch.nn.Embedding(6, 8)
        self.project = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.project(x + self.positions(torch.arange(6)))


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
@pytest.mark.parametrize(("model", "example"), [
    (WeightNormed, lambda: torch.randn(1, 4, 9)),
    (WholeTablePositions, lambda: torch.randn(2, 6, 8))])
def test_parameters_read_through_a_parametrisation_or_a_folded_identity_count_as_placed(
        model, example, strategy, tmp_path):
    report = modelexport.export_model(model().eval(), example(), tmp_path / "p.onnx",
                                      strategy=strategy, validate=True)
    assert report.parity_passed
    assert report.check_passed, report.check["failures"]


@pytest.mark.parametrize("strategy", ["htp", "usage_based"])
def test_node_names_carry_the_users_scopes_not_the_adapters(tmp_path, strategy):
    """Node names are what users read in Netron and profiles: no internal ``/wrapped/``."""
    import onnx

    from modelexport.tools.module_view import open_view

    model, x = idiom("root_sequential")
    path = tmp_path / "m.onnx"
    modelexport.export_model(model, x, path, strategy=strategy, clean=True)
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert len(set(names)) == len(names)
    assert not any("wrapped" in name for name in names), names
    Path(str(path) + ".hierarchy.json").unlink()  # only the node names are left to read
    view = open_view(path)
    assert view.origin == "node-names"
    read = {info.module for info in view.nodes if info.module}
    children = {name for name, _ in model.named_children()}
    assert read and read <= children, (read, children)
