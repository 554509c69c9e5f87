"""The analyzer's evidence, the rule-table selector, and `modelexport recommend`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import model_zoo
from modelexport.analysis.analyzer import ModelAnalyzer
from modelexport.cli.commands import main
from modelexport.names import ExportStrategy, Objective
from modelexport.selection import selector as selection
from modelexport.selection.selector import (
    load_rules,
    matching_rule,
    recommend_strategy,
)
from modelexport.strategies import strategy_names


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


class ShapeBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, mask=None):
        length = x.shape[1]
        if mask is not None and length > 2:
            x = x * mask
        return self.fc(x)


class LoopWithEarlyExit(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
            if x.abs().max() > 10:
                break
        return x


def analyze(model):
    return ModelAnalyzer.analyze_model(model)


def test_value_branch_is_control_flow_with_its_location():
    traits = analyze(Branchy())
    assert traits.has_control_flow
    assert len(traits.control_flow_evidence) == 1
    assert "Branchy.forward:" in traits.control_flow_evidence[0]
    assert "x.sum() > 0" in traits.control_flow_evidence[0]


def test_early_exit_in_a_loop_is_control_flow():
    assert analyze(LoopWithEarlyExit()).has_control_flow


def test_plain_cnn_has_no_control_flow():
    traits = analyze(model_zoo.get_entry("small_cnn").build())
    assert not traits.has_control_flow and not traits.has_dynamic_shapes
    assert traits.model_type == "cnn" and "convolution" in traits.framework_hints
    assert not traits.is_huggingface and traits.estimated_complexity == "low"


def test_shape_branch_through_a_local_is_found_and_presence_checks_are_not():
    traits = analyze(ShapeBranch())
    assert not traits.has_control_flow
    assert traits.has_dynamic_shapes
    assert "length > 2" in traits.shape_evidence[0]


class PresenceOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, mask=None):
        if mask is not None:
            x = x * mask
        return self.fc(x)


def test_presence_checks_are_not_control_flow():
    traits = analyze(PresenceOnly())
    assert not traits.has_control_flow and not traits.has_dynamic_shapes


def test_hugging_face_transformer_characteristics():
    traits = analyze(model_zoo.get_entry("bert").build())
    assert traits.is_huggingface and traits.model_type == "transformer"
    assert {"attention", "embedding", "normalization"} <= set(traits.framework_hints)
    assert traits.module_count == len(list(model_zoo.get_entry("bert").build().modules()))


def test_direct_grandchild_calls_are_found():
    traits = analyze(model_zoo.get_entry("nested_calls").build())
    assert traits.calls_nested_modules
    assert any("self.a.fc(...)" in e for e in traits.nested_call_evidence)


def _models():
    return {
        "branchy": (Branchy(), torch.randn(2, 4)),
        "nested_calls": (model_zoo.get_entry("nested_calls").build(), None),
        "bert": (model_zoo.get_entry("bert").build(), None),
        "root_sequential": (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
                            torch.randn(2, 4)),
    }


HAND_TABLE = {"schema": selection.RULES_SCHEMA, "objectives": {
    objective.value: {
        "fallback_order": ["fx", "usage_based", "htp", "dynamo"],
        "rules": [
            {"name": "hf", "when": [["is_huggingface", "is", True]], "strategy": "fx",
             "matched": 4, "right": 3},
            {"name": "rest", "when": [], "strategy": "usage_based", "matched": 10, "right": 5},
        ]} for objective in Objective}}


@pytest.mark.parametrize("objective", list(Objective))
@pytest.mark.parametrize(("name", "strategy", "confidence"), [
    ("bert", "fx", 4 / 6), ("root_sequential", "usage_based", 6 / 12)])
def test_recommendation_follows_a_hand_written_table(monkeypatch, name, strategy, confidence,
                                                      objective):
    """A table whose answers are known without the selector: its first matching rule wins."""
    monkeypatch.setattr(selection, "load_rules", lambda: HAND_TABLE)
    model, inputs = _models()[name]
    if inputs is None:
        inputs = model_zoo.get_entry(name).inputs(model)
    pick = recommend_strategy(model, objective=objective, inputs=inputs)
    assert (str(pick.strategy), pick.objective) == (strategy, objective)
    assert pick.confidence == pytest.approx(confidence, abs=1e-3)  # rounded to 3 places
    matched, right = (4, 3) if strategy == "fx" else (10, 5)
    assert pick.reasons[0].startswith(f"{strategy}: ")
    assert f"on {right} of the {matched} fitted models" in pick.reasons[0]
    assert pick.fallback_order[0] == strategy
    assert sorted(pick.fallback_order) == ["dynamo", "fx", "htp", "usage_based"]


def test_the_objective_chooses_the_rule_table(monkeypatch):
    """prioritize_speed and objective change the pick, not only the confidence."""
    def table(strategy):
        return {"fallback_order": ["htp", "dynamo", "usage_based", "fx"],
                "rules": [{"name": "default", "when": [], "strategy": strategy,
                           "matched": 4, "right": 3}]}

    rules = {"schema": "modelexport.selection-rules/2",
             "objectives": {"speed": table("htp"), "quality": table("usage_based"),
                            "runtime": table("dynamo")}}
    monkeypatch.setattr(selection, "load_rules", lambda: rules)
    model = nn.Linear(4, 4)
    assert recommend_strategy(model).strategy == "htp"
    assert recommend_strategy(model, prioritize_speed=False).strategy == "usage_based"
    runtime = recommend_strategy(model, objective="runtime")
    assert runtime.strategy is ExportStrategy.DYNAMO
    assert runtime.fallback_order == ["dynamo", "htp", "usage_based", "fx"]
    assert runtime.confidence == pytest.approx(4 / 6, abs=1e-3)
    with pytest.raises(ValueError, match="unknown objective 'fastest'"):
        recommend_strategy(model, objective="fastest")


def test_rules_on_execution_evidence_match_only_when_the_model_was_seen_running():
    rules = [{"name": "random", "when": [["random_ops", "is", True]], "strategy": "dynamo"},
             {"name": "default", "when": [], "strategy": "htp"}]
    static = ModelAnalyzer.analyze_model(Noisy())
    seen = ModelAnalyzer.analyze_model(Noisy(), torch.randn(2, 4))
    assert matching_rule(rules, static.features())["strategy"] == "htp"
    assert matching_rule(rules, seen.features())["strategy"] == "dynamo"


def test_seed_api_shapes():
    from modelexport import ModelAnalyzer as TopAnalyzer
    from modelexport import ModelCharacteristics
    from modelexport import recommend_strategy as top_recommend

    model = model_zoo.get_entry("small_cnn").build()
    assert isinstance(TopAnalyzer.analyze_model(model), ModelCharacteristics)
    assert isinstance(TopAnalyzer().analyze_model(model), ModelCharacteristics)
    pick = top_recommend(model)
    assert isinstance(pick.strategy, ExportStrategy)
    assert pick.strategy == pick.strategy.value and f"{pick.strategy}" == pick.strategy.value
    assert json.loads(json.dumps(pick.to_dict()))["strategy"] == pick.strategy.value


def test_reasons_quote_the_evidence():
    reasons = " ".join(recommend_strategy(Branchy()).reasons)
    assert "x.sum() > 0" in reasons


def test_cli_recommend_prints_pick_objective_and_order(capsys):
    assert main(["recommend", "--model", "zoo:nested_calls", "--objective", "runtime"]) == 0
    out = capsys.readouterr().out
    assert "direct grandchild calls: True" in out
    assert "objective runtime" in out and "AUTO order: " in out


def test_cli_recommend_json_with_the_quality_alias(capsys):
    assert main(["recommend", "--model", "zoo:bert", "--json", "--quality"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["objective"] == "quality" and data["characteristics"]["is_huggingface"]
    assert data["strategy"] in {"htp", "dynamo", "usage_based", "fx"}
    assert data["characteristics"]["execution"]["op_calls"] > 0


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) + torch.rand_like(x)


class Selective(nn.Module):
    """Data-dependent output shape, a complex intermediate, a reused and an idle module."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.idle = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(self.fc(x))
        spectrum = torch.fft.rfft(y, dim=-1)
        return y[y > 0], spectrum.abs()


def test_execution_evidence_rests_on_torch_op_tags_and_call_counts():
    run = ModelAnalyzer.analyze_model(Selective(), torch.randn(2, 4)).execution
    assert run is not None and run.op_calls > 0 and run.distinct_ops > 0
    assert run.data_dependent_ops  # boolean-mask indexing: its output size depends on values
    assert run.complex_values and not run.random_ops
    assert run.repeated_modules == 1 and run.unexecuted_modules == 1 and run.modules == 3
    assert ModelAnalyzer.analyze_model(Noisy(), torch.randn(2, 4)).execution.random_ops


def test_execution_features_are_exactly_what_a_watched_forward_and_its_trace_add():
    from modelexport.analysis.analyzer import EXECUTION_FEATURES, TRACE_FEATURES

    static = ModelAnalyzer.analyze_model(Selective()).features()
    watched = ModelAnalyzer.analyze_model(Selective(), torch.randn(2, 4)).features()
    assert set(watched) - set(static) == EXECUTION_FEATURES | TRACE_FEATURES


def test_structural_features():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    traits = ModelAnalyzer.analyze_model(model)
    assert traits.root_is_container and traits.shared_modules == 1
    assert traits.features()["shared_modules"] is True
    attention = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    assert ModelAnalyzer.analyze_model(attention).reads_descendant_parameters
    assert not ModelAnalyzer.analyze_model(nn.Linear(4, 4)).reads_descendant_parameters


def test_analyzer_is_export_free():
    model = model_zoo.get_entry("small_cnn").build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyze(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_strategy_names_have_one_source_the_registry():
    """The enum users pass and the fitted rules may only name registered strategies."""
    from modelexport.strategies.builtin import BUILTIN_STRATEGIES  # plug-ins aside

    registered = {strategy.name for strategy in BUILTIN_STRATEGIES}
    assert registered <= set(strategy_names())
    assert {s.value for s in ExportStrategy if s != ExportStrategy.AUTO} == registered
    for objective, table in load_rules()["objectives"].items():
        named = {rule["strategy"] for rule in table["rules"]} | set(table["fallback_order"])
        assert named <= registered, (objective, named - registered)


def test_auto_order_is_the_pick_then_the_fallback_order_without_repeats():
    assert selection.auto_order("fx", ["dynamo", "fx", "htp"]) == ["fx", "dynamo", "htp"]
    assert selection.auto_order(ExportStrategy.HTP, ["htp"]) == ["htp"]
