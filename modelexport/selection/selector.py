"""``recommend_strategy``: which strategy to try first for a model, and why.

The decision is an ordered rule list per objective, kept as data
(``selection_rules.json``) and *fitted from measurements*: ``modelexport
zoo fit-selector`` regenerates it from zoo results (see
:mod:`modelexport.harness.selector_fit`).  A rule is a conjunction of tests
on the analyzer's features (``ModelCharacteristics.features``); the first
rule whose tests all hold names the strategy, and every rule carries the
counts it was fitted on, so the pick is explainable and its confidence is
measured, not asserted.  Nothing here names a model family.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from modelexport.analysis.analyzer import EXECUTION_FEATURES, ModelAnalyzer, ModelCharacteristics
from modelexport.names import ExportStrategy, Objective

RULES_SCHEMA = "modelexport.selection-rules/3"  # /3: fitted_from per objective
# The fitted rules, beside this module in the package (``zoo fit-selector`` rewrites it).
RULES_FILE = "selection_rules.json"
RULES_PATH = Path(__file__).with_name(RULES_FILE)


@dataclass
class Recommendation:
    strategy: ExportStrategy
    confidence: float
    reasons: list[str]
    characteristics: ModelCharacteristics
    rule: str = ""
    fallback_order: list[ExportStrategy] = field(default_factory=list)
    objective: Objective = Objective.SPEED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auto_order(pick: str, fallback_order: list[str]) -> list[str]:
    """The strategies AUTO tries: the pick first, then the objective's fallback order.

    One definition for the exporter's AUTO and the harness's scoring of it.
    """
    return [str(pick)] + [str(s) for s in fallback_order if s != pick]


@functools.lru_cache(maxsize=1)
def load_rules() -> dict[str, Any]:
    text = resources.files("modelexport.selection").joinpath(RULES_FILE).read_text()
    table = json.loads(text)
    if table.get("schema") != RULES_SCHEMA:
        raise ValueError(f"selection_rules.json is not a {RULES_SCHEMA} file")
    return table


def condition_holds(test: list[Any], features: Mapping[str, Any]) -> bool:
    """One rule test ``[feature, op, value]``; a feature the model lacks never holds."""
    name, op, value = test
    if name not in features:
        return False
    found = features[name]
    if op == "is":
        return bool(found) is bool(value)
    if op == ">=":
        return float(found) >= float(value)
    if op == "<":
        return float(found) < float(value)
    raise ValueError(f"unknown rule operator {op!r}")


def describe_tests(tests: Sequence[Sequence[Any]]) -> str:
    """A rule's tests as text: ``random_ops and op_calls < 100``.

    Empty for the default rule, which tests nothing.
    """
    words = []
    for name, op, value in tests:
        if op == "is":
            words.append(name if value else f"not {name}")
        else:
            words.append(f"{name} {op} {value:g}")
    return " and ".join(words)


def matching_rule(rules: list[dict[str, Any]], features: Mapping[str, Any]) -> dict[str, Any]:
    """The first rule whose tests all hold (the last rule has none, so one always does)."""
    return next(r for r in rules if all(condition_holds(t, features) for t in r["when"]))


def needs_execution(objective: Objective | str) -> bool:
    """Whether any rule for ``objective`` tests what only a watched forward shows.

    Watching costs: the first dispatch-mode forward in a process imports
    ``torch._dynamo`` (about 0.8 s), so AUTO watches only when a rule reads it.
    """
    rules = load_rules()["objectives"][Objective(objective).value]["rules"]
    return any(test[0] in EXECUTION_FEATURES for rule in rules for test in rule["when"])


def rule_confidence(rule: Mapping[str, Any]) -> float:
    """Share of the fitted models on which the rule's strategy was best, smoothed.

    Laplace's rule of succession: a rule right on 3 of 3 models gets 0.8,
    not 1.0, because three models are thin evidence.
    """
    return (rule["right"] + 1) / (rule["matched"] + 2)


def recommend_strategy(model: torch.nn.Module, prioritize_speed: bool = True,
                       characteristics: ModelCharacteristics | None = None, *,
                       objective: Objective | str | None = None, inputs: Any = None,
                       ) -> Recommendation:
    """Analyse ``model`` (unless ``characteristics`` are given) and pick a strategy.

    ``objective`` (speed, quality or runtime) overrides ``prioritize_speed``.
    With ``inputs`` the analyzer also watches one forward and traces the
    model, which the rules that test execution or trace evidence (ops that
    ran, modules that ran twice, a trace that fails) need; without it those
    rules cannot match and the pick falls through.
    """
    goal = Objective.resolve(objective, prioritize_speed)
    traits = characteristics or ModelAnalyzer.analyze_model(model, inputs)
    table = load_rules()["objectives"][goal.value]
    rule = matching_rule(table["rules"], traits.features())
    strategy = ExportStrategy(rule["strategy"])
    tests = describe_tests(rule["when"]) or "no other rule matched"
    reasons = [f"{strategy}: {tests}; best for {goal} on {rule['right']} of the "
               f"{rule['matched']} fitted models this rule matched"]
    reasons += [f"data-dependent branch at {e}" for e in traits.control_flow_evidence[:3]]
    reasons += [f"direct grandchild call at {e}" for e in traits.nested_call_evidence[:3]]
    if traits.has_dynamic_shapes:
        reasons.append(
            f"shape-dependent branch at {traits.shape_evidence[0]}: a traced graph is "
            "specific to the example's shapes unless exported with dynamic axes"
        )
    trace = traits.trace
    if trace is not None and not trace.traced:
        reasons.append(f"the TorchScript trace fails: {trace.error}")
    if trace is not None and trace.untranslatable_ops:
        reasons.append("the TorchScript trace holds ops its ONNX exporter cannot translate: "
                       + ", ".join(trace.untranslatable_ops[:5]))
    run = traits.execution
    if run is not None and run.untranslatable_ops:
        reasons.append("ops with no TorchScript ONNX translation of their own ran (the "
                       "trace may still decompose them): "
                       + ", ".join(run.untranslatable_ops[:5]))
    if run is not None and run.data_dependent_ops:
        reasons.append("ops whose output depends on values ran: "
                       + ", ".join(run.data_dependent_ops[:5]))
    reasons.append(
        f"{traits.model_type} model, {traits.module_count} modules, "
        f"{traits.parameter_count:,} parameters ({traits.estimated_complexity} complexity)"
    )
    order = [ExportStrategy(s) for s in auto_order(strategy, table["fallback_order"])]
    return Recommendation(
        strategy=strategy,
        confidence=round(rule_confidence(rule), 3),
        reasons=reasons,
        characteristics=traits,
        rule=rule["name"],
        fallback_order=order,
        objective=goal,
    )
