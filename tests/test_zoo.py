"""The zoo registry, the matrix runner, its scoring and its gate."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

import model_zoo
import modelexport
from modelexport.cli.commands import main
from modelexport.harness import CellSpec, ModelSpec, run_cell, run_matrix, run_model
from modelexport.harness import cells as cells_module
from modelexport.harness.cells import CellResult
from modelexport.harness.latency import MIN_RUNS, interleaved_latencies, runtime_fingerprint
from modelexport.harness.results import check_expectations, updated_expectations
from modelexport.harness.scoring import best_cells, pooled_latencies, score_selector
from modelexport.inputs import ModelInputs

FAULTY = str(Path(__file__).parent / "plugins" / "faulty_strategies.py")
TINY = [e.name for e in model_zoo.entries("tiny")]


def test_tiny_tier_has_the_promised_breadth():
    kinds = [model_zoo.get_entry(n).kind for n in TINY]
    assert len(TINY) >= 20
    assert kinds.count("cnn") >= 6 and kinds.count("transformer") >= 10
    assert kinds.count("custom") >= 5


@pytest.mark.parametrize("name", TINY)
def test_every_entry_builds_and_runs_forward(name):
    entry = model_zoo.get_entry(name)
    model = entry.build("tiny")
    assert not model.training
    inputs = entry.inputs(model, "tiny")
    with torch.no_grad():
        if isinstance(inputs, dict):
            model(**inputs)
        elif isinstance(inputs, tuple):
            model(*inputs)
        else:
            model(inputs)
    # seeded: the same build twice gives the same weights
    again = entry.build("tiny")
    first = next(iter(model.state_dict().values()))
    assert torch.equal(first, next(iter(again.state_dict().values())))


@pytest.fixture
def zoo_file(tmp_path, monkeypatch):
    """Writes a user zoo file (after its imports) and returns its path.

    Its entries register in this process too: gone after the test, so later
    tests see the tiers as shipped.
    """
    from model_zoo import registry

    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))

    def write(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text("import torch\nfrom model_zoo import zoo_entry\n" + body)
        return path

    return write


def test_user_zoo_file_adds_an_entry(zoo_file, capsys):
    extra = zoo_file(
        "my_zoo.py",
        "@zoo_entry('my_mlp', family='mine', kind='custom', tiers=('tiny',),\n"
        "           inputs=lambda m, tier, seed: torch.randn(2, 4))\n"
        "def my_mlp(tier):\n"
        "    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())\n")
    assert main(["zoo", "list", "--zoo-file", str(extra)]) == 0
    assert "my_mlp" in capsys.readouterr().out
    run = run_matrix(models=["my_mlp"], strategies=["htp"], jobs=1, plugins=[str(extra)])
    assert run.cells[0].status == "ok"


def test_a_cell_measures_the_memory_its_export_takes(zoo_file):
    """A forward that holds 64 MB at once (made from the input: nothing to fold away)."""
    extra = zoo_file(
        "hungry_zoo.py",
        "class Hungry(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        big = x.reshape(-1)[:1].repeat(2**24)  # 64 MB of float32\n"
        "        return x * big.max()\n"
        "@zoo_entry('hungry', family='mine', kind='custom', tiers=('tiny',),\n"
        "           inputs=lambda m, tier, seed: torch.randn(2, 4))\n"
        "def hungry(tier):\n"
        "    return Hungry()\n")
    run = run_matrix(models=["hungry"], strategies=["htp"], jobs=1, plugins=[str(extra)])
    assert run.cells[0].status == "ok", run.cells[0].error
    assert run.cells[0].peak_mem_mb > 48


def test_run_cell_records_every_figure():
    cell = run_cell(CellSpec("bert", "htp", repeat=2))
    assert cell.status == "ok", cell.error
    assert len(cell.seconds_all) == 2 and cell.seconds > 0
    assert cell.nodes > 0 and cell.file_bytes > 0
    assert cell.coverage == 1.0 and cell.root == 0.0 and cell.anchored_accuracy == 1.0
    assert cell.parity_max_abs < cell.parity_atol
    assert set(cell.recommendation) == {"speed", "quality", "runtime"}
    assert cell.features["is_huggingface"] and cell.features["op_calls"] > 0
    assert cell.ort_latency_ms > 0 and cell.ort_latency_runs >= 10
    assert len(cell.runtime_fingerprint) == 16
    assert sum(sum(ops.values()) for ops in cell.module_ops.values()) == cell.nodes


def test_a_model_is_analysed_once_and_its_strategies_timed_turn_about(monkeypatch):
    observed = []  # analyses that run the model (a watched forward and a trace)
    real = cells_module.ModelAnalyzer.analyze_model

    def counted(model, inputs=None, execution=None):
        observed.extend([inputs] if inputs is not None else [])
        return real(model, inputs, execution)

    monkeypatch.setattr(cells_module.ModelAnalyzer, "analyze_model", staticmethod(counted))
    steps: list[str | None] = []
    cells = run_model(ModelSpec("small_cnn", ("htp", "usage_based"), repeat=3),
                      on_step=steps.append)
    assert len(observed) == 1
    # build and analysis, one validated export each, 3 timed rounds with the
    # order rotated, then the shared latency step
    assert steps == [None, "htp", "usage_based", "htp", "usage_based", "usage_based", "htp",
                     "htp", "usage_based", None]
    for cell in cells:
        assert cell.status == "ok" and len(cell.cpu_seconds_all) == 3
        assert cell.ort_latency_ms is not None and cell.features == cells[0].features
        assert cell.cell_seconds is not None and cell.cell_seconds > 0


def test_latencies_are_taken_turn_about_and_a_broken_file_is_told(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    example = torch.randn(2, 4)
    good = tmp_path / "good.onnx"
    report = modelexport.export_model(model, example, good, strategy="htp")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(good.read_bytes()[:100])
    inputs, names = ModelInputs.from_user(example), report.settings["input_names"]
    measured = interleaved_latencies({"a": (good, inputs, names), "b": (good, inputs, names),
                                      "broken": (broken, inputs, names)})
    assert isinstance(measured["broken"], Exception)
    assert measured["a"].runs == measured["b"].runs >= MIN_RUNS
    assert measured["a"].median_ms > 0


def test_frozen_branch_is_flagged_parity_failed():
    cell = run_cell(CellSpec("mean_gate", "htp"))
    assert cell.status == "parity-failed" and "parity" in cell.error


def test_export_failure_is_a_verdict_not_a_crash():
    cell = run_cell(CellSpec("bert", "fx"))
    assert cell.status == "export-failed" and "FX cannot trace BertModel" in cell.error


@pytest.fixture(scope="module")
def faulty_run():
    return run_matrix(models=["bert", "small_cnn"],
                      strategies=["dynamo", "htp", "parent_shift", "perturbed_output",
                                  "crashing", "hanging"],
                      jobs=2, timeout=20, plugins=[FAULTY])


def cell(run, model, strategy) -> CellResult:
    return next(c for c in run.cells if c.model == model and c.strategy == strategy)


@pytest.mark.slow  # the faulty run waits out a hang
def test_tags_shifted_to_the_parent_fail_the_self_check(faulty_run):
    shifted = cell(faulty_run, "bert", "parent_shift")
    assert shifted.status == "check-failed" and shifted.coverage == 1.0
    assert "parameter-reading nodes sit on the parameter's owner" in shifted.error
    assert shifted.anchored_accuracy < 0.5
    assert cell(faulty_run, "bert", "htp").anchored_accuracy == 1.0
    assert shifted.reference_agreement < cell(faulty_run, "bert", "htp").reference_agreement


@pytest.mark.slow  # the faulty run waits out a hang
def test_perturbed_output_is_flagged_parity_failed(faulty_run):
    perturbed = cell(faulty_run, "bert", "perturbed_output")
    assert perturbed.status == "parity-failed"
    assert perturbed.parity_max_abs == pytest.approx(0.5, abs=1e-3)


@pytest.mark.slow  # the faulty run waits out a hang
def test_crash_and_hang_are_contained(faulty_run):
    for model in ("bert", "small_cnn"):
        assert cell(faulty_run, model, "crashing").status == "crashed"
        assert cell(faulty_run, model, "hanging").status == "timeout"
        assert cell(faulty_run, model, "htp").status == "ok"
    assert len(faulty_run.cells) == 12


@pytest.mark.slow  # the faulty run waits out a hang
def test_dynamo_agrees_with_itself(faulty_run):
    assert cell(faulty_run, "bert", "dynamo").reference_agreement == 1.0


def fake(model, strategy, seconds, status="ok", anchored=1.0, exact=1.0, pick="htp",
         latency=None):
    return CellResult(model=model, strategy=strategy, status=status, seconds=seconds,
                      coverage=1.0, exact=exact, inherited=0.0, anchored_accuracy=anchored,
                      recommendation={"speed": pick, "quality": pick, "runtime": pick},
                      ort_latency_ms=latency)


def test_best_is_a_set_when_timings_tie_and_quality_breaks_it():
    cells = [fake("m", "htp", 0.10), fake("m", "fx", 0.12), fake("m", "dynamo", 1.5)]
    assert [c.strategy for c in best_cells(cells, "speed")] == ["htp", "fx"]
    cells[1].exact = 0.9
    assert [c.strategy for c in best_cells(cells, "speed")] == ["htp"]


def test_quality_ranks_tags_of_operator_nodes_not_where_constants_live():
    """HTP writes constants as scope-less nodes that DYNAMO keeps as initializers."""
    cells = [fake("m", "dynamo", 1.0), fake("m", "htp", 0.1, exact=0.9)]
    assert [c.strategy for c in best_cells(cells, "quality")] == ["dynamo"]
    cells[0].operator_known, cells[1].operator_known = 1.0, 1.0
    assert [c.strategy for c in best_cells(cells, "quality")] == ["htp"]  # tie: faster
    cells[1].operator_known = 0.98
    assert [c.strategy for c in best_cells(cells, "quality")] == ["dynamo"]


def test_operator_known_share_leaves_out_nodes_that_only_hold_data():
    from onnx import TensorProto, helper

    from modelexport.harness.cells import holds_data_only, operator_known_share
    from modelexport.tags import NodeTag, TagSource, write_node_tag

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    nodes = [helper.make_node("Constant", [], ["c"], name="const",
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("Identity", ["w"], ["w2"], name="alias"),
             helper.make_node("Identity", ["x"], ["x2"], name="copy"),
             helper.make_node("Add", ["x2", "c"], ["y0"], name="add"),
             helper.make_node("Mul", ["y0", "w2"], ["y"], name="mul")]
    sources = [TagSource.PROJECTED, TagSource.PROJECTED, TagSource.EXACT, TagSource.EXACT,
               TagSource.PROJECTED]
    for node, source in zip(nodes, sources):
        write_node_tag(node, NodeTag("fc", "/M/Linear", source))
    graph = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [weight]))
    initializers = {"w"}
    assert [holds_data_only(n, initializers) for n in nodes] == [True, True, False, False,
                                                                  False]
    assert operator_known_share(graph) == pytest.approx(2 / 3)  # the projected Mul counts


def test_misplaced_tags_are_not_eligible_however_fast():
    cells = [fake("m", "htp", 0.01, anchored=0.2), fake("m", "fx", 0.5)]
    assert [c.strategy for c in best_cells(cells, "speed")] == ["fx"]


def test_selector_accuracy_regret_and_confusion():
    cells = [fake("a", "htp", 0.1), fake("a", "dynamo", 1.0),
             fake("b", "htp", 0.1, status="export-failed", pick="htp"),
             fake("b", "dynamo", 1.0, pick="htp")]
    score = score_selector(cells, "speed")
    assert score.scored_models == 2 and score.correct == 1 and score.accuracy == 0.5
    wrong = next(v for v in score.verdicts if v.model == "b")
    assert wrong.best == ["dynamo"] and wrong.auto_path == ["htp", "dynamo"]
    assert wrong.regret == pytest.approx(0.1)  # the failed htp attempt was time lost
    assert score.confusion == {"htp": {"htp": 1}, "dynamo": {"htp": 1}}


def test_runtime_best_is_the_set_of_files_as_fast_as_the_fastest():
    cells = [fake("m", "htp", 0.1, latency=2.0), fake("m", "dynamo", 1.0, latency=1.0),
             fake("m", "usage_based", 0.3, latency=1.05, exact=0.5)]
    assert [c.strategy for c in best_cells(cells, "runtime")] == ["usage_based", "dynamo"]
    cells[1].anchored_accuracy = 0.5  # misplaced tags: not eligible, however fast it runs
    assert [c.strategy for c in best_cells(cells, "runtime")] == ["usage_based"]


def test_runtime_regret_is_the_latency_lost_as_a_share_of_the_best():
    cells = [fake("m", "htp", 0.1, latency=3.0), fake("m", "dynamo", 1.0, latency=2.0)]
    score = score_selector(cells, "runtime")
    assert score.correct == 0 and score.verdicts[0].best == ["dynamo"]
    assert score.regret == pytest.approx(0.5)
    assert score.to_dict()["regret_unit"] == "x latency"


def test_equal_files_are_ranked_on_their_pooled_latency():
    """Two copies of one graph timed 1.0 and 1.3 ms are one file at 1.15 ms, in or out together."""
    cells = [fake("m", "htp", 0.1, latency=1.3), fake("m", "usage_based", 0.2, latency=1.0),
             fake("m", "dynamo", 1.0, latency=1.1)]
    cells[0].runtime_fingerprint = cells[1].runtime_fingerprint = "same graph"
    cells[2].runtime_fingerprint = "another graph"
    score = score_selector(cells, "runtime")
    assert score.verdicts[0].best == ["dynamo", "htp", "usage_based"]
    cells[2].ort_latency_ms = 0.9  # the other graph now runs more than 10% faster
    assert score_selector(cells, "runtime").verdicts[0].best == ["dynamo"]
    cells[2].runtime_fingerprint = None  # no fingerprint: every file stands alone
    cells[0].runtime_fingerprint = None
    assert [c.strategy for c in pooled_latencies(cells)] == ["htp", "usage_based", "dynamo"]
    assert [c.ort_latency_ms for c in pooled_latencies(cells)] == [1.3, 1.0, 0.9]


def test_strategies_sharing_a_capture_write_files_with_one_runtime_fingerprint(tmp_path):
    """HTP and USAGE_BASED differ only in tags; DYNAMO's graph is another one."""
    model, example = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(),
                                         torch.nn.Linear(64, 8)), torch.randn(2, 64)
    prints = {}
    for strategy in ("htp", "usage_based", "dynamo"):
        path = tmp_path / f"{strategy}.onnx"
        modelexport.export_model(model, example, path, strategy=strategy)
        prints[strategy] = runtime_fingerprint(onnx.load(str(path)))
    assert prints["htp"] == prints["usage_based"] != prints["dynamo"]
    with torch.no_grad():
        model[0].weight.mul_(2)  # new weight values: the same work for every kernel
    modelexport.export_model(model, example, tmp_path / "scaled.onnx", strategy="htp")
    assert runtime_fingerprint(onnx.load(str(tmp_path / "scaled.onnx"))) == prints["htp"]
    wider = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 8))
    modelexport.export_model(wider, example, tmp_path / "wider.onnx", strategy="htp")
    assert runtime_fingerprint(onnx.load(str(tmp_path / "wider.onnx"))) != prints["htp"]


def test_gate_fails_on_an_expected_cell_and_on_accuracy():
    cells = [fake("a", "htp", 0.1, status="parity-failed")]
    expectations = {"tiers": {"tiny": {"must_pass": ["a/htp"],
                                       "selector_accuracy_floor": {"speed": 0.9}}}}
    outcome = check_expectations(expectations, "tiny", cells, {"speed": 0.5})
    assert not outcome.passed and len(outcome.failures) == 2
    assert check_expectations(expectations, "tiny", [fake("a", "htp", 0.1)],
                              {"speed": 0.95}).passed


def test_cli_zoo_run_gates_and_expectations_update_is_explicit(tmp_path, capsys):
    expectations = tmp_path / "expect.json"
    expectations.write_text(json.dumps({"schema": "modelexport.zoo-expectations/1",
                                        "tiers": {"tiny": {"must_pass": ["mean_gate/htp"]}}}))
    out = tmp_path / "zoo"
    code = main(["zoo", "run", "--models", "mean_gate", "tied_weights", "--strategies", "htp",
                 "--out", str(out), "--expectations", str(expectations), "--jobs", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert "REGRESSION: mean_gate/htp expected ok, got parity-failed" in captured.err
    assert "tied_weights" in captured.out and (out / "scoreboard.md").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["schema"] == "modelexport.zoo-results/1"
    assert results["environment"]["versions"]["torch"].startswith("2.")
    assert json.loads(expectations.read_text())["tiers"]["tiny"]["must_pass"] == [
        "mean_gate/htp"], "a run must never rewrite expectations"
    assert main(["zoo", "expect", "--update", "--results", str(out / "results.json"),
                 "--expectations", str(expectations)]) == 0
    updated = json.loads(expectations.read_text())["tiers"]["tiny"]
    # both weight modes ran (the default); the native model is named MODEL@native
    assert updated["must_pass"] == ["tied_weights/htp", "tied_weights@native/htp"]


def test_updated_expectations_keep_two_binomial_deviations_of_slack():
    results = {"settings": {"tier": "tiny"}, "cells": [],
               "selector": {"speed": {"correct": 10, "scored_models": 10, "accuracy": 1.0}},
               "selector_cv": {"speed": {"correct": 9, "scored_models": 10, "accuracy": 0.9},
                               "quality": {"correct": 10, "scored_models": 10,
                                           "accuracy": 1.0}}}
    floors = updated_expectations({}, results)["tiers"]["tiny"]["selector_accuracy_floor"]
    # 2 * sqrt(10 * 0.9 * 0.1) = 1.9 -> 2 models; a perfect score still keeps one
    assert floors == {"speed": 0.7, "quality": 0.9}


def test_updated_expectations_slack_grows_slower_than_the_tier():
    results = {"settings": {"tier": "wide"}, "cells": [],
               "selector_cv": {"speed": {"correct": 300, "scored_models": 350,
                                         "accuracy": 0.86}}}
    floors = updated_expectations({}, results)["tiers"]["wide"]["selector_accuracy_floor"]
    assert floors == {"speed": 0.8171}  # 2 * sqrt(350 * 0.857 * 0.143) = 13.1 -> 14 models


def test_a_floor_is_never_above_the_share_it_allows():
    results = {"settings": {"tier": "tiny"}, "cells": [],
               "selector_cv": {"quality": {"correct": 20, "scored_models": 23,
                                           "accuracy": 20 / 23}}}
    floors = updated_expectations({}, results)["tiers"]["tiny"]["selector_accuracy_floor"]
    assert floors["quality"] <= 19 / 23  # 0.8260..., where rounding gave 0.8261


def test_pretrained_tier_is_skipped_with_a_clear_message_without_the_hub(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["zoo", "run", "--tier", "pretrained", "--out", "unused"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("skipped: pretrained zoo models need the Hugging Face hub")
    assert not Path("unused").exists()


def test_hugging_face_entries_name_a_checkpoint_of_their_family():
    with_hub = model_zoo.entries("pretrained")
    assert len(with_hub) >= 15
    assert all("/" in e.pretrained for e in with_hub)


@pytest.mark.parametrize("name", [e.name for e in model_zoo.entries("full") if e.kind == "custom"])
def test_custom_entries_full_tier_inputs_fit(name):
    """Input makers must follow the tier: a full-tier model with tiny inputs fails."""
    entry = model_zoo.get_entry(name)
    model = entry.build("full")
    inputs = entry.inputs(model, "full")
    with torch.no_grad():
        model(**inputs) if isinstance(inputs, dict) else model(inputs)


def test_generated_text_inputs_stop_at_the_position_limit():
    from modelexport.input_generation.from_signature import generate_inputs

    model = model_zoo.get_entry("clip_text").build()
    inputs = generate_inputs(model, sequence_length=500)
    assert inputs["input_ids"].shape[1] == model.config.max_position_embeddings
