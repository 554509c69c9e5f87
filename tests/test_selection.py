"""The analyzer's evidence, the rule-table selector, and `modelexport recommend`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import model_zoo
from modelexport.analysis import ModelAnalyzer
from modelexport.cli import main
from modelexport.selection import load_rules, recommend_strategy


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
    return ModelAnalyzer().analyze_model(model)


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


@pytest.mark.parametrize(("model", "strategy", "rule"), [
    (Branchy(), "htp", "data-dependent-control-flow"),
    (model_zoo.get_entry("nested_calls").build(), "fx", "direct-grandchild-calls"),
    (model_zoo.get_entry("bert").build(), "htp", "default"),
])
def test_recommendation_follows_the_rule_table(model, strategy, rule):
    pick = recommend_strategy(model)
    assert (pick.strategy, pick.rule) == (strategy, rule)
    assert 0.0 <= pick.confidence <= 1.0
    assert pick.reasons and pick.reasons[0].startswith(f"{strategy}: ")
    assert pick.fallback_order[0] == strategy
    assert sorted(pick.fallback_order) == sorted(load_rules()["fallback_order"])


def test_reasons_quote_the_evidence():
    reasons = " ".join(recommend_strategy(Branchy()).reasons)
    assert "x.sum() > 0" in reasons


def test_objective_changes_confidence_not_evidence():
    model = model_zoo.get_entry("nested_calls").build()
    speed = recommend_strategy(model, prioritize_speed=True)
    quality = recommend_strategy(model, prioritize_speed=False)
    assert speed.strategy == quality.strategy
    assert speed.confidence != quality.confidence


def test_every_rule_names_a_registered_strategy_and_cites_evidence():
    from modelexport.strategies import strategy_names

    table = load_rules()
    assert table["rules"][-1]["when"] == {}, "the last rule must match everything"
    for rule in table["rules"]:
        assert rule["strategy"] in strategy_names()
        assert rule["evidence"] and rule["reason"]
        assert set(rule["confidence"]) == {"speed", "quality"}


def test_cli_recommend_prints_pick_and_reasons(capsys):
    assert main(["recommend", "--model", "zoo:nested_calls"]) == 0
    out = capsys.readouterr().out
    assert "recommended: fx" in out and "direct grandchild calls: True" in out
    assert "AUTO order: fx -> htp" in out


def test_cli_recommend_json(capsys):
    assert main(["recommend", "--model", "zoo:bert", "--json", "--quality"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["strategy"] == "htp" and data["characteristics"]["is_huggingface"]


def test_analyzer_is_export_free():
    model = model_zoo.get_entry("small_cnn").build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    analyze(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
