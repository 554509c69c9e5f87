"""``recommend_strategy``: which strategy to try first for a model, and why.

The decision is a short ordered rule table kept as data
(``selection_rules.json``), matched against ``ModelCharacteristics``; each rule
cites the measurement that justifies it.  The reasons a user sees are the
matched rule's reason plus the evidence found in the model's source, so the
pick is always explainable.  Nothing here names a model family: rules speak
only of characteristics, which is what lets them carry to unseen models.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import torch

from modelexport.analysis import ModelAnalyzer, ModelCharacteristics


@dataclass
class Recommendation:
    strategy: str
    confidence: float
    reasons: list[str]
    characteristics: ModelCharacteristics
    rule: str = ""
    fallback_order: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@functools.lru_cache(maxsize=1)
def load_rules() -> dict[str, Any]:
    text = resources.files("modelexport").joinpath("selection_rules.json").read_text()
    return json.loads(text)


def _matches(when: dict[str, Any], traits: ModelCharacteristics) -> bool:
    return all(getattr(traits, key) == value for key, value in when.items())


def recommend_strategy(model: torch.nn.Module, prioritize_speed: bool = True,
                       characteristics: ModelCharacteristics | None = None,
                       ) -> Recommendation:
    """Analyse ``model`` (unless ``characteristics`` are given) and pick a strategy."""
    traits = characteristics or ModelAnalyzer().analyze_model(model)
    table = load_rules()
    rule = next(r for r in table["rules"] if _matches(r["when"], traits))
    objective = "speed" if prioritize_speed else "quality"
    reasons = [f"{rule['strategy']}: {rule['reason']}"]
    reasons += [f"data-dependent branch at {e}" for e in traits.control_flow_evidence[:3]]
    reasons += [f"direct grandchild call at {e}" for e in traits.nested_call_evidence[:3]]
    if traits.has_dynamic_shapes:
        reasons.append(
            f"shape-dependent branch at {traits.shape_evidence[0]}: a traced graph is "
            "specific to the example's shapes unless exported with dynamic axes"
        )
    reasons.append(
        f"{traits.model_type} model, {traits.module_count} modules, "
        f"{traits.parameter_count:,} parameters ({traits.estimated_complexity} complexity)"
    )
    order = [rule["strategy"]] + [s for s in table["fallback_order"] if s != rule["strategy"]]
    return Recommendation(
        strategy=rule["strategy"],
        confidence=float(rule["confidence"][objective]),
        reasons=reasons,
        characteristics=traits,
        rule=rule["name"],
        fallback_order=order,
    )
