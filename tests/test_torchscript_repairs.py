"""Ops TorchScript's ONNX exporter lacks, gets wrong or cannot trace, on hand-written modules.

Each module here is the smallest form of a construct that stopped HTP and
USAGE_BASED on whole transformers families in the wide tier: a rotary
embedding's ``repeat_interleave(dim=-1)`` (Cohere, GLM, Helium, Moonshine),
a permute with negative dims (Nemotron-H), ``torch.rms_norm`` (DiffLlama),
antialiased interpolation (DINOv2 with registers, TIPSv2), a boolean
``scatter`` in a top-k router (DeepSeek-V3.2, Mistral-Large-4, Hunyuan-V4),
``|`` on integers (CPM-Ant), ``fold`` to a computed size (MobileViTV2) and
``index_add`` with repeated indices (a mixture-of-experts combine).
Every export runs with ``validate=True``: the file must load in ONNX Runtime,
pass the self-check and match the module on fresh inputs.
"""

from __future__ import annotations

import io

import onnx
import pytest
import torch
import torch.nn.functional as F

import modelexport
from modelexport.capture.torchscript_ops import register_missing_symbolics
from modelexport.capture.torchscript_repairs import REPAIRS
from modelexport.capture.trace_shims import traceable_arguments


class InterleavedRotary(torch.nn.Module):
    """Cohere's rotary embedding: one ``-1`` constant read by repeat_interleave, stack, flatten."""

    def forward(self, x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
        angles = torch.repeat_interleave(freqs, 2, dim=-1)  # rank 3
        cos, sin = angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)
        rotated = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).flatten(-2)  # rank 5
        return x * cos + rotated * sin


class NegativePermute(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, -2, -1, 1) * 2


class RootMeanSquareNorm(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(8) + 0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.rms_norm(x, (8,), self.weight), F.rms_norm(x, (4, 8), eps=1e-3))


class AntialiasedResize(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (F.interpolate(x, size=(5, 7), mode="bilinear", antialias=True),
                F.interpolate(x, size=(6, 4), mode="bicubic", antialias=True),
                F.interpolate(x, scale_factor=1.5, mode="bilinear", antialias=True))


class TopKMask(torch.nn.Module):
    """A router's mask: everything blocked but each row's top 2, set with a boolean scatter."""

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        keep = scores.topk(2, dim=-1).indices
        blocked = torch.ones_like(scores, dtype=torch.bool).scatter(-1, keep, False)
        return scores.masked_fill(blocked, 0.0)


class IntegerOr(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        buckets = (x > 0).to(torch.int64) * 4
        return (buckets | (x < -1).to(torch.int64)) | 1


class FoldToComputedSize(torch.nn.Module):
    """Unfold then fold back, to a size read off the input, with unequal padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(x, kernel_size=(2, 3), padding=(1, 2), stride=(1, 2))
        return F.fold(patches, output_size=(x.shape[2], x.shape[3]), kernel_size=(2, 3),
                      padding=(1, 2), stride=(1, 2))


class ExpertCombine(torch.nn.Module):
    """Each token's expert outputs summed back into its row, as MoE layers combine them."""

    def forward(self, outputs: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        zeros = torch.zeros(4, outputs.shape[1])
        return zeros.index_add(0, rows, outputs), zeros.index_add(0, rows, outputs, alpha=0.5)


CASES = {
    "repeat_interleave": (InterleavedRotary(), (torch.randn(1, 2, 6, 8), torch.randn(1, 6, 4))),
    "permute": (NegativePermute(), (torch.randn(2, 3, 4, 5),)),
    "rms_norm": (RootMeanSquareNorm(), (torch.randn(2, 4, 8),)),
    "antialias": (AntialiasedResize(), (torch.rand(1, 3, 16, 16),)),
    "bool_scatter": (TopKMask(), (torch.randn(3, 6),)),
    "integer_or": (IntegerOr(), (torch.randn(3, 5),)),
    "fold": (FoldToComputedSize(), (torch.randn(1, 2, 6, 9),)),
    "index_add": (ExpertCombine(), (torch.randn(10, 3),
                                   torch.tensor([0, 1, 1, 3, 0, 2, 3, 3, 1, 0]))),
}


class RepeatAlongSequence(torch.nn.Module):
    """Grouped-query attention's key repeat along an axis the export leaves dynamic."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.repeat_interleave(self.embed(input_ids), 3, dim=1)


@pytest.mark.parametrize("strategy", ["htp", "usage_based"])
def test_repeat_interleave_along_a_dynamic_axis_exports_and_runs_at_another_length(
        strategy, tmp_path):
    """torch's translation refuses it ("unknown input size"); the repair tiles by rank."""
    report = modelexport.export_model(RepeatAlongSequence(), torch.randint(0, 50, (1, 6)),
                                      tmp_path / "r.onnx", strategy=strategy)
    assert report.parity_passed and report.parity["second_shape"]["sizes"]["sequence"] == 5


@pytest.mark.parametrize("strategy", ["htp", "usage_based"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_export_loads_and_matches_the_module(case, strategy, tmp_path):
    model, args = CASES[case]
    report = modelexport.export_model(model, args, tmp_path / f"{case}.onnx",
                                      strategy=strategy, validate=True)
    assert report.summary.final_strategy == strategy
    assert report.check_passed and report.parity_passed


def test_a_repair_leaves_the_shared_constant_alone():
    """After repeat_interleave's translation, the stack still concatenates along the last axis."""
    register_missing_symbolics(18)
    buffer = io.BytesIO()
    model, args = CASES["repeat_interleave"]
    torch.onnx.export(model, args, buffer, dynamo=False, opset_version=18)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    stacks = [node for node in graph.node if node.op_type == "Concat"
              and len(node.input) == 2 and all("Unsqueeze" in name for name in node.input)]
    assert stacks and all(node.attribute[0].i in (-1, 4) for node in stacks)


def test_every_repair_wraps_a_translation_torch_has():
    """A repair of an op torch no longer translates would silently do nothing."""
    from torch.onnx._internal.torchscript_exporter import registration

    for name in REPAIRS:
        group = registration.registry.get_function_group(name)
        assert group is not None and group.get(18) is not None, name


def test_the_bool_scalar_rewrite_happens_only_while_tracing():
    scores = torch.randn(2, 5)
    keep = scores.topk(2, dim=-1).indices
    with traceable_arguments():
        eager = torch.ones_like(scores, dtype=torch.bool).scatter(-1, keep, False)
    assert eager.dtype == torch.bool and int((~eager).sum()) == 4
