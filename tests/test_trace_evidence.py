"""The trace evidence: what the TorchScript exporter's own trace shows before any export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import model_zoo
from modelexport.analysis import trace_evidence
from modelexport.analysis.analyzer import TRACE_FEATURES, ModelAnalyzer, observe_forward
from modelexport.api import export_model
from modelexport.errors import StrategyFailedError
from modelexport.inputs import ModelInputs
from modelexport.selection.selector import matching_rule, recommend_strategy


class Spectral(nn.Module):
    """``torch.fft`` has no translation in the TorchScript exporter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(self.fc(x), dim=-1).abs()


class Opaque:
    """Not a tensor, not a container: something a tracer cannot flatten."""


class OpaqueOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple:
        return self.fc(x), Opaque()


def test_an_op_without_translation_is_named_and_blocks_the_trace_path(tmp_path):
    traits = ModelAnalyzer.analyze_model(Spectral(), torch.randn(2, 8))
    assert traits.trace is not None and traits.trace.traced
    assert any(op.startswith("fft_") for op in traits.trace.untranslatable_ops)
    features = traits.features()
    assert features["traced_untranslatable_ops"] and features["trace_blocked"]
    assert not features["trace_fails"]
    # The evidence foretells the export: HTP cannot translate it.
    with pytest.raises(StrategyFailedError):
        export_model(Spectral(), torch.randn(2, 8), tmp_path / "s.onnx", strategy="htp")


def test_a_trace_the_tracer_refuses_is_recorded_with_its_reason():
    traits = ModelAnalyzer.analyze_model(OpaqueOutput(), torch.randn(2, 4))
    assert traits.trace is not None and not traits.trace.traced and traits.trace.error
    assert traits.features()["trace_fails"] and traits.features()["trace_blocked"]
    reasons = " ".join(recommend_strategy(OpaqueOutput(), inputs=torch.randn(2, 4)).reasons)
    assert "the TorchScript trace fails" in reasons


@pytest.mark.parametrize("name", ["bert", "gpt2", "t5", "resnet", "swin", "wav2vec2"])
def test_models_the_trace_path_exports_raise_no_false_alarm(name):
    """Number casts (``aten::Int``) and dunder ops (``aten::__and__``) are translated."""
    entry = model_zoo.get_entry(name)
    model = entry.build("tiny")
    _, trace = observe_forward(model, entry.inputs(model, "tiny"))
    assert trace.traced and trace.untranslatable_ops == [], trace


def test_dunder_and_in_place_kinds_map_to_the_registry_names():
    class Registry:
        known = {"aten::__and_", "aten::add"}

        def is_registered_op(self, name: str, opset: int) -> bool:
            return name in self.known

    kinds = {"aten::__and__", "aten::add_", "aten::fft_fft", "prim::Constant"}
    assert trace_evidence.untranslatable(kinds, Registry()) == ["fft_fft"]


def test_the_trace_leaves_the_model_as_it_was():
    model = Spectral().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_evidence.trace_model(model, ModelInputs.from_user(torch.randn(2, 8)))
    assert model.training and torch.is_grad_enabled()
    assert torch.backends.mha.get_fastpath_enabled()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_trace_rules_match_only_when_the_model_was_traced():
    """AUTO passes its probe's evidence and does not trace: trace rules fall through there."""
    rules = [{"name": "blocked", "when": [["trace_blocked", "is", True]], "strategy": "dynamo"},
             {"name": "default", "when": [], "strategy": "htp"}]
    seen = ModelAnalyzer.analyze_model(Spectral(), torch.randn(2, 8))
    from_probe = ModelAnalyzer.analyze_model(Spectral(), execution=seen.execution)
    assert matching_rule(rules, seen.features())["strategy"] == "dynamo"
    assert from_probe.trace is None and not TRACE_FEATURES & set(from_probe.features())
    assert matching_rule(rules, from_probe.features())["strategy"] == "htp"


def test_without_torchs_registry_no_trace_feature_is_claimed(monkeypatch):
    monkeypatch.setattr(trace_evidence, "torchscript_registry", lambda: None)
    traits = ModelAnalyzer.analyze_model(Spectral(), torch.randn(2, 8))
    assert traits.trace is not None and not traits.trace.registry_known
    assert not TRACE_FEATURES & set(traits.features())
