"""Localise a numerical mismatch to a module.

PyTorch and ONNX Runtime run on the same fresh input.  Forward hooks capture
each module call's outputs; ONNX Runtime exposes every intermediate tensor.
A module's ONNX counterparts are the outputs of its region (tensors its
nodes make that something outside reads).  Each captured output is compared
with the same-shaped region outputs and the closest one counts, so a module
called several times still finds its own call's tensor.  Calls are reported
in the order they finished, which puts a diverging layer before the
enclosing modules that inherit its error.

Exporters fuse: BatchNorm folded into the preceding Conv makes the Conv's
ONNX output equal the BatchNorm's PyTorch output, not the Conv's.  A module
whose region outputs differ from its own outputs but equal *some* module's
PyTorch output is therefore ``fused``, not ``diverged``: a wrong computation
matches no PyTorch tensor at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from modelexport.attribution.module_calls import record_calls
from modelexport.input_generation.for_graph import graph_inputs
from modelexport.input_generation.like_example import fresh_like
from modelexport.inputs import ModelInputs
from modelexport.onnx_runtime.comparison import max_abs_difference, output_scale
from modelexport.onnx_runtime.sessions import ort_feed
from modelexport.onnx_runtime.values import intermediate_values
from modelexport.tools.module_view import ModuleView, all_regions
from modelexport.tools.regions import RegionIndex

MATCH, FUSED, DIVERGED, UNMAPPED = "match", "fused", "diverged", "unmapped"


@dataclass
class ModuleComparison:
    """One module call: how far its ONNX counterpart is from PyTorch."""

    order: int
    module: str
    status: str
    max_abs: float
    max_rel: float
    onnx_tensor: str = ""


def _closest(reference: np.ndarray, names: list[str], values: dict[str, np.ndarray],
             ) -> tuple[str, float]:
    best_name, best = "", float("inf")
    for name in names:
        value = values.get(name)
        if value is None or value.shape != reference.shape:
            continue
        error = max_abs_difference(value, reference)
        if error < best:
            best_name, best = name, error
    return best_name, best


def _close(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> bool:
    return max_abs_difference(a, b) <= atol + rtol * output_scale(b)


def _explained_elsewhere(names: list[str], values: dict[str, np.ndarray],
                         torch_outputs: dict[tuple, list[np.ndarray]], atol: float,
                         rtol: float) -> bool:
    """True when one of the region's tensors equals some module's PyTorch output."""
    for name in names:
        value = values.get(name)
        if value is None or value.size == 0:
            continue
        for reference in torch_outputs.get((value.shape, value.dtype.kind), ()):
            if _close(value, reference, atol, rtol):
                return True
    return False


def compare_modules(view: ModuleView, model: torch.nn.Module, example: ModelInputs,
                    input_names: list[str], atol: float = 1e-4, rtol: float = 1e-3,
                    seed: int = 1234) -> list[ModuleComparison]:
    """Every module call's outputs against the ONNX tensors of its region, in order."""
    fresh = fresh_like(example, seed=seed)
    wanted = [value.name for value in graph_inputs(view.model)]
    values = intermediate_values(view.model, ort_feed(wanted, fresh, input_names))
    calls = record_calls(model, lambda: fresh.call(model), keep_inputs=False)
    index = RegionIndex(view.model)
    regions = all_regions(view)
    torch_outputs: dict[tuple, list[np.ndarray]] = {}
    for call in calls:
        for output in call.outputs:
            if np.issubdtype(output.dtype, np.floating) and output.size:
                torch_outputs.setdefault((output.shape, output.dtype.kind), []).append(output)
    outputs_of: dict[str, list[str]] = {}
    results = []
    for order, call in enumerate(calls):
        if call.path not in regions:
            continue
        if call.path not in outputs_of:
            outputs_of[call.path] = index.boundary(regions[call.path]).outputs
        worst_abs = worst_rel = 0.0
        status, tensor = MATCH, ""
        floating = [o for o in call.outputs if np.issubdtype(o.dtype, np.floating) and o.size]
        for output in floating:
            name, error = _closest(output, outputs_of[call.path], values)
            if not name:
                status = UNMAPPED if status == MATCH else status
                continue
            scale = output_scale(output)
            if error > worst_abs:
                worst_abs, tensor = error, name
            worst_rel = max(worst_rel, error / scale)
            if error > atol + rtol * scale:
                same_shape = [n for n in outputs_of[call.path]
                              if n in values and values[n].shape == output.shape]
                fused = _explained_elsewhere(same_shape, values, torch_outputs, atol, rtol)
                status = DIVERGED if not fused or status == DIVERGED else FUSED
        if not floating:
            status = UNMAPPED
        results.append(ModuleComparison(order, call.path, status, worst_abs, worst_rel, tensor))
    return results


def summarize(results: list[ModuleComparison], first: int = 5) -> dict:
    """The first diverging calls (the likely culprits) and the counts."""
    diverged = [r for r in results if r.status == DIVERGED]
    return {
        "calls": len(results),
        "matched": sum(r.status == MATCH for r in results),
        "fused": sum(r.status == FUSED for r in results),
        "unmapped": sum(r.status == UNMAPPED for r in results),
        "diverged": len(diverged),
        "first_diverged": [asdict(r) for r in diverged[:first]],
        "modules": [asdict(r) for r in results],
    }
