"""DYNAMO capture classes: each test a small module that failed before its fix."""

from __future__ import annotations

import torch

import modelexport


class TakesKeywords(torch.nn.Module):
    """``forward(x, **kwargs)``, as transformers models take their extra options."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        out = self.proj(x)
        return out if kwargs.get("use_cache", True) else out * 2


def test_an_option_passed_into_var_keywords_keeps_dynamo_dynamic(tmp_path):
    """torch.export wants ``**kwargs``' dynamic shapes under the parameter's own name."""
    model = TakesKeywords().eval()
    report = modelexport.export_model(model, {"x": torch.randn(2, 4), "use_cache": False},
                                      tmp_path / "m.onnx", strategy="dynamo")
    # parity against forward(x, use_cache=False): the option reached the model
    assert report.parity["passed"] and report.parity["second_shape"]["passed"]
    assert "forward" not in model.__dict__  # the instance is as it was
    assert report.settings["open_axes"] == {"x": {0: "batch"}}
