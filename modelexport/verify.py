"""Checks on an export: tag quality figures and ONNX Runtime parity.

Every figure here can drop: coverage falls when a tag names no module,
anchored accuracy when a parameter-consuming node sits on the wrong module,
parity when ONNX Runtime disagrees with PyTorch on a fresh input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from modelexport.errors import InputMismatchError, one_line
from modelexport.hierarchy import ModuleTree
from modelexport.input_generation.like_example import fresh_like
from modelexport.inputs import ModelInputs, flatten_outputs
from modelexport.runtime import open_session
from modelexport.tags import NodeTag, TagSource


@dataclass
class TagFigures:
    """Coverage and the share of each tag source over the top-level nodes."""

    nodes: int
    coverage: float
    exact: float
    inherited: float
    projected: float
    root: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def tag_figures(tags: Sequence[NodeTag | None], tree: ModuleTree) -> TagFigures:
    """Coverage = tags naming an existing module / all nodes; plus source shares."""
    total = len(tags)
    if total == 0:
        return TagFigures(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    sources = Counter(t.source for t in tags if t is not None)
    covered = sum(1 for t in tags if t is not None and t.module in tree)
    return TagFigures(
        nodes=total,
        coverage=covered / total,
        exact=sources[TagSource.EXACT] / total,
        inherited=sources[TagSource.INHERITED] / total,
        projected=sources[TagSource.PROJECTED] / total,
        root=sources[TagSource.ROOT] / total,
    )


def randomize_parameters(model: torch.nn.Module, seed: int = 0, scale: float = 0.02) -> None:
    """Add seeded noise to every parameter (and BatchNorm statistic) so content is unique.

    Fresh models have many identical tensors (LayerNorm ones, zero biases);
    exporters deduplicate those and content matching becomes ambiguous.
    The noise is small, so the model's numerics stay in a normal range.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dtype.is_floating_point:
                noise = torch.randn(param.shape, generator=generator) * scale
                param.add_(noise.to(param.dtype))
        # Fresh running statistics (mean 0, var 1) make a BatchNorm folded into
        # its Conv reproduce the BN bias exactly, a false content match.
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._NormBase) and \
                    module.running_mean is not None:
                stats = torch.randn(module.running_mean.shape, generator=generator)
                module.running_mean.add_(stats * scale)
                module.running_var.add_(stats.abs() * scale)


@dataclass
class ParityResult:
    """ONNX Runtime vs PyTorch on one fresh seeded input."""

    passed: bool
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    outputs: int
    seed: int
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def output_scale(reference: np.ndarray) -> float:
    """Largest magnitude of a reference output (1.0 when all zero): the tolerance's scale."""
    return float(np.max(np.abs(reference))) or 1.0


def max_abs_difference(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest elementwise ``|got - expected|``, in float64; 0.0 for empty arrays."""
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))


def ort_feed(wanted: list[str], inputs: ModelInputs, names: list[str]) -> dict[str, np.ndarray]:
    """Arrays for the graph inputs ``wanted``, strictly by name.

    Never by position: a file whose input called ``attention_mask`` reads
    the token types would pass a positional check and fail every user who
    feeds it by name, which is how ONNX Runtime is fed.
    """
    by_name = dict(zip(names, inputs.tensors()))
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise InputMismatchError(
            f"the ONNX graph expects inputs {wanted}; the example has no "
            f"{', '.join(missing)} (it provides {', '.join(by_name) or 'no tensors'})")
    return {name: by_name[name].detach().cpu().numpy() for name in wanted}


def check_parity(onnx_path: str | Path | bytes, model: torch.nn.Module, example: ModelInputs,
                 input_names: list[str], atol: float = 1e-4, rtol: float = 1e-3,
                 seed: int = 1234) -> ParityResult:
    """Run ONNX Runtime and PyTorch on a fresh input derived from ``example``.

    ``onnx_path`` is a file or the serialised model.  A runtime that cannot
    load or run the file is a failed parity with the reason, not an error.

    Passes when every output has the reference's shape and its largest error
    is within ``atol + rtol * max|reference|``: the tolerance scales with the
    output's magnitude, not each element's, because an element near zero in
    an output of magnitude 1e3 carries float32 rounding of that magnitude.
    ``max_rel`` is the largest error divided by the largest magnitude of the
    reference output.
    """
    fresh = fresh_like(example, seed=seed)
    with torch.no_grad():
        result = fresh.call(model)
    expected = [t.detach().cpu().numpy() for t in flatten_outputs(result)]
    try:
        session = open_session(onnx_path)
        wanted = [i.name for i in session.get_inputs()]
        feed = ort_feed(wanted, fresh, input_names)
        got = session.run(None, feed)
    except InputMismatchError:
        raise
    except Exception as exc:  # the runtime refused the file or failed mid-run
        return ParityResult(False, float("inf"), float("inf"), atol, rtol, 0, seed,
                            f"ONNX Runtime failed: {one_line(exc, 200)}")
    if len(got) != len(expected):
        expected = [t.detach().cpu().numpy() for t in flatten_outputs(result, numbers=True)]
    if len(got) != len(expected):
        return ParityResult(False, float("inf"), float("inf"), atol, rtol, len(got), seed,
                            f"ONNX has {len(got)} outputs, PyTorch {len(expected)}")
    max_abs = max_rel = 0.0
    passed, detail = True, ""
    for index, (ours, ref) in enumerate(zip(got, expected)):
        if ours.shape != ref.shape:
            return ParityResult(False, float("inf"), float("inf"), atol, rtol, len(got), seed,
                                f"output {index}: shape {ours.shape} vs {ref.shape}")
        if ref.size == 0:
            continue
        scale = output_scale(ref)
        worst = max_abs_difference(ours, ref)
        max_abs, max_rel = max(max_abs, worst), max(max_rel, worst / scale)
        if not worst <= atol + rtol * scale:
            passed = False
            detail = detail or f"output {index} exceeds tolerance"
    return ParityResult(passed, max_abs, max_rel, atol, rtol, len(got), seed, detail)


def check_model_file(path: str | Path) -> None:
    """Full ONNX checker on a saved file (external data included)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise RuntimeError(f"ONNX checker rejected {path}: {one_line(exc)}") from exc
