"""The public API: the seed's examples, input forms, options, sidecar, fallback."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import transformers as hf

import model_zoo
import modelexport
from modelexport import ExportStrategy, UnifiedExporter
from modelexport.errors import InputMismatchError, OutputPathError, StrategyFailedError
from modelexport.output.files import rows_json
from modelexport.output.sidecar import SIDECAR_SCHEMA, read_sidecar
from modelexport.tags import OUR_KEYS


def small_cnn():
    return model_zoo.get_entry("small_cnn").build()


def test_seed_one_call_example_runs_verbatim(tmp_path, capsys):
    model = small_cnn()
    report = modelexport.export_model(model, torch.randn(1, 3, 224, 224),
                                      str(tmp_path / "model.onnx"))
    print(f"Exported using {report['summary']['final_strategy']} strategy")
    assert capsys.readouterr().out.strip() == "Exported using htp strategy"


def test_seed_class_example_runs_verbatim(tmp_path, capsys):
    model, inputs = small_cnn(), torch.randn(1, 3, 32, 32)
    exporter = UnifiedExporter(strategy=ExportStrategy.AUTO, enable_optimizations=True,
                               enable_monitoring=True, verbose=True)
    report = exporter.export(model, inputs, str(tmp_path / "model.onnx"))
    out = capsys.readouterr().out
    # HTP's trace counts the calls itself, so no probe forward runs (tests/test_probe.py)
    assert "[modelexport] export:htp:" in out and "[modelexport] htp: exported" in out
    assert "[modelexport] probe" not in out
    assert "[modelexport] recommended htp" in out
    assert report.summary.success and report["summary"]["final_strategy"] == "htp"
    assert report["selection"]["rule"] == "default" and report["selection"]["reasons"]
    assert report["memory_peak_mb"]["export:htp"] > 0
    assert set(report["timings"]) >= {"select", "export:htp", "tag", "save"}


def test_the_report_reads_as_a_mapping_one_section_at_a_time(tmp_path):
    report = modelexport.export_model(small_cnn(), torch.randn(1, 3, 32, 32), tmp_path / "m.onnx")
    assert report["check"] is report.check  # a section, not a copy of the whole report
    assert report["summary"] == dataclasses.asdict(report.summary)
    assert list(report) == list(report.to_dict()) and len(report) == len(report.to_dict())
    assert dict(report)["coverage"] == report.to_dict()["coverage"]
    with pytest.raises(KeyError):
        report["no_such_section"]


def test_tuple_and_dict_inputs(tmp_path):
    model = model_zoo.get_entry("bert").build()
    ids = torch.randint(0, 100, (1, 8))
    mask = torch.ones(1, 8, dtype=torch.long)
    by_tuple = modelexport.export_model(model, (ids, mask), tmp_path / "t.onnx",
                                        strategy="htp", validate=True)
    by_dict = modelexport.export_model(model, {"input_ids": ids, "attention_mask": mask},
                                       tmp_path / "d.onnx", strategy="htp", validate=True)
    assert by_tuple["parity"]["passed"] and by_dict["parity"]["passed"]
    session = ort.InferenceSession(str(tmp_path / "d.onnx"))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]


def test_clean_mode_writes_no_node_metadata_but_keeps_sidecar(tmp_path):
    report = modelexport.export_model(small_cnn(), torch.randn(1, 3, 32, 32),
                                      tmp_path / "c.onnx", strategy="htp", clean=True)
    graph = onnx.load(str(tmp_path / "c.onnx"))
    keys = {p.key for n in graph.graph.node for p in n.metadata_props}
    assert not keys & OUR_KEYS
    assert not {p.key for p in graph.metadata_props} & {"modelexport.strategy"}
    sidecar = read_sidecar(report.outputs.sidecar)
    assert len(sidecar["nodes"]) == len(graph.graph.node)


def test_sidecar_contents(tmp_path):
    model = model_zoo.get_entry("shared_block").build()
    report = modelexport.export_model(model, torch.randn(2, 16), tmp_path / "s.onnx",
                                      strategy="htp")
    sidecar = json.loads((tmp_path / "s.onnx.hierarchy.json").read_text())
    assert sidecar["schema"] == SIDECAR_SCHEMA
    assert sidecar["model_class"] == "SharedBlockModel" and sidecar["strategy"] == "htp"
    modules = {m["path"]: m for m in sidecar["modules"]}
    assert modules["shared"]["calls"] == 2 and modules["layers"]["executed"] is False
    assert modules["shared.fc"]["params_self"] == 16 * 16 + 16
    assert modules[""]["nodes_total"] == len(sidecar["nodes"]) == report["graph"]["nodes"]
    assert sum(m["nodes_self"] for m in sidecar["modules"]) == len(sidecar["nodes"])
    assert sidecar["figures"]["coverage"] == 1.0 and "export:htp" in sidecar["timings"]


def test_sidecar_has_a_line_per_module_and_node_and_reads_as_the_dict_written(tmp_path):
    payload = {"schema": SIDECAR_SCHEMA, "empty": {}, "none": [], "scalar": 1.5,
               "modules": [{"path": "", "tag": "/M"}, {"path": "a\nb", "tag": "/M/A"}],
               "nodes": {"Add_0": {"module": "a\nb"}, "Mul_1": {"module": ""}}}
    text = rows_json(payload)
    assert json.loads(text) == payload
    lines = text.splitlines()
    assert '    {"path": "a\\nb", "tag": "/M/A"},' not in lines  # last row: no comma
    assert '    {"path": "a\\nb", "tag": "/M/A"}' in lines
    assert '    "Add_0": {"module": "a\\nb"},' in lines


def test_dynamic_batch_runs_at_another_batch_size(tmp_path):
    model = small_cnn()
    for strategy in ("dynamo", "htp"):
        path = tmp_path / f"{strategy}.onnx"
        modelexport.export_model(model, torch.randn(2, 3, 32, 32), path, strategy=strategy,
                                 dynamic_batch=True)
        session = ort.InferenceSession(str(path))
        x = torch.randn(5, 3, 32, 32)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-4)


def test_external_data_is_written_beside_the_model(tmp_path):
    report = modelexport.export_model(small_cnn(), torch.randn(1, 3, 32, 32),
                                      tmp_path / "e.onnx", strategy="htp",
                                      external_data_threshold=0, validate=True)
    assert report.outputs.external_data == str(tmp_path / "e.onnx.data")
    assert (tmp_path / "e.onnx.data").stat().st_size > 0
    assert report["parity"]["passed"]


class Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.export refuses it, tracing freezes it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.b(x)


class NestedWriter(torch.nn.Module):
    """Calls grandchildren directly (so FX is recommended) and writes into a slice,
    which FX cannot trace: AUTO must fall back."""

    def __init__(self):
        super().__init__()
        self.block = torch.nn.ModuleDict({"fc": torch.nn.Linear(4, 4)})
        self.inner = torch.nn.Module()
        self.inner.fc = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.inner.fc(x)
        y[:, 0] = 0.0
        return y


def test_auto_falls_back_past_a_failure_and_past_a_failed_self_check(tmp_path, monkeypatch):
    """FX cannot trace it; HTP exports but cannot tell ``inner.fc`` from ``block.fc``
    and leaves the Gemm on the root, which the self-check refuses; DYNAMO is right."""
    import modelexport.api as api
    from modelexport.selection.selector import Recommendation, recommend_strategy

    def fx_first(model, prioritize_speed=True, characteristics=None, **options):
        pick = recommend_strategy(model, prioritize_speed, characteristics, **options)
        return Recommendation(**{**pick.__dict__, "strategy": ExportStrategy.FX,
                                 "fallback_order": ["fx", "htp", "dynamo", "usage_based"]})

    monkeypatch.setattr(api, "recommend_strategy", fx_first)
    report = modelexport.export_model(NestedWriter(), torch.ones(1, 4), tmp_path / "b.onnx",
                                      validate=True)
    assert report["selection"]["strategy"] == "fx"
    attempts = report.summary.attempts
    assert [a.strategy for a in attempts] == ["fx", "htp", "dynamo"]
    assert not attempts[0].success and attempts[0].error_type == "FxTraceError"
    assert "FX cannot trace NestedWriter" in attempts[0].error
    assert not attempts[1].success and attempts[1].error_type == "SelfCheckFailed"
    assert "owner 'inner.fc'" in attempts[1].error
    assert attempts[2].success and report.summary.final_strategy == "dynamo"
    assert report.check_passed and report.anchored["accuracy"] == 1.0
    assert report["parity"]["passed"]


def test_auto_on_data_dependent_branch_exports_with_its_first_pick(tmp_path):
    """The pick is a TorchScript capture (which rule picks it is the fit's business)."""
    report = modelexport.export_model(Branchy(), torch.ones(1, 4), tmp_path / "b.onnx")
    pick = report["selection"]["strategy"]
    assert pick in ("htp", "usage_based")
    assert any("data-dependent branch" in r for r in report["selection"]["reasons"])
    assert [a.strategy for a in report.summary.attempts] == [pick]


def test_auto_selects_for_the_requested_objective(tmp_path, monkeypatch):
    """The objective reaches the selector; the probe is watched only when a rule needs it."""
    import modelexport.api as api
    from modelexport.selection import selector as selection
    from modelexport.selection.selector import recommend_strategy

    seen = {}

    def spy(model, prioritize_speed=True, characteristics=None, **options):
        seen.update(options, characteristics=characteristics)
        return recommend_strategy(model, prioritize_speed, characteristics, **options)

    monkeypatch.setattr(api, "recommend_strategy", spy)
    table = {"fallback_order": ["htp", "dynamo", "usage_based", "fx"],
             "rules": [{"name": "default", "when": [], "strategy": "htp", "matched": 1,
                        "right": 1}]}
    watching = {"fallback_order": table["fallback_order"],
                "rules": [{"name": "random_ops", "when": [["random_ops", "is", True]],
                           "strategy": "dynamo", "matched": 1, "right": 1}, *table["rules"]]}
    for runtime_table, watched in ((table, False), (watching, True)):
        rules = {"schema": selection.RULES_SCHEMA,
                 "objectives": {"speed": table, "quality": table, "runtime": runtime_table}}
        monkeypatch.setattr(selection, "load_rules", lambda rules=rules: rules)
        report = modelexport.export_model(small_cnn(), torch.randn(1, 3, 32, 32),
                                          tmp_path / "c.onnx", objective="runtime")
        assert report["selection"]["objective"] == "runtime" and seen["objective"] == "runtime"
        execution = seen["characteristics"].execution
        assert (execution is not None) is watched
        if watched:
            assert execution.op_calls > 0 and execution.modules > 1


def test_dynamo_failure_is_never_a_silent_torchscript_export(tmp_path):
    with pytest.raises(StrategyFailedError, match="dynamo: TorchExportError"):
        modelexport.export_model(Branchy(), torch.ones(1, 4), tmp_path / "b.onnx",
                                 strategy="dynamo")
    assert list(tmp_path.iterdir()) == []


def test_inputs_that_do_not_fit(tmp_path):
    with pytest.raises(InputMismatchError, match="do not fit SmallCNN"):
        modelexport.export_model(small_cnn(), torch.randn(1, 5, 32, 32), tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputPathError):
        modelexport.export_model(small_cnn(), torch.randn(1, 3, 32, 32), blocker / "x.onnx")


def test_export_leaves_user_model_in_eval_mode_and_numerically_unchanged(tmp_path):
    model = model_zoo.get_entry("bert").build()
    ids = {"input_ids": torch.randint(0, 100, (1, 8))}
    before = model(**ids).last_hidden_state
    modelexport.export_model(model, ids, tmp_path / "m.onnx", strategy="htp")
    assert not any(m.training for m in model.modules())
    torch.testing.assert_close(model(**ids).last_hidden_state, before)


def test_untouched_hf_model_keeps_root_share_low_under_htp(tmp_path):
    """Fresh HF weights repeat (LayerNorm ones): dedup Identities must still be placed."""
    config = hf.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64)
    model = hf.BertModel(config).eval()
    ids = {"input_ids": torch.randint(0, 100, (1, 8)),
           "attention_mask": torch.ones(1, 8, dtype=torch.long)}
    report = modelexport.export_model(model, ids, tmp_path / "b.onnx", strategy="htp")
    assert report["coverage"]["projected"] > 0  # the scope-less nodes exist ...
    assert report["coverage"]["root"] <= 0.01  # ... and are not dumped on the root


def test_anchored_accuracy_is_part_of_every_exports_self_check(tmp_path):
    model, x = small_cnn(), torch.randn(1, 3, 32, 32)
    plain = modelexport.export_model(model, x, tmp_path / "a.onnx", strategy="htp")
    assert "check" in plain["timings"] and plain.check_passed
    assert plain["anchored"]["accuracy"] == 1.0 and plain["anchored"]["anchored_nodes"] > 0
