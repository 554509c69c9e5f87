"""ONNX Runtime parity: the file and the PyTorch model on one fresh seeded input.

It can fail: a file ONNX Runtime cannot load or run, an output of another
shape, or an error above the tolerance (``modelexport.onnx_runtime.comparison``) is a
failed parity with the reason.  Inputs are fed strictly by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from modelexport.errors import InputMismatchError, one_line
from modelexport.input_generation.like_example import fresh_like
from modelexport.inputs import ModelInputs, flatten_outputs
from modelexport.onnx_runtime.comparison import max_abs_difference, output_scale
from modelexport.onnx_runtime.sessions import open_session, ort_feed


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


def check_parity(onnx_path: str | Path | bytes, model: torch.nn.Module, example: ModelInputs,
                 input_names: list[str], atol: float = 1e-4, rtol: float = 1e-3,
                 seed: int = 1234, session: Any = None) -> ParityResult:
    """Run ONNX Runtime and PyTorch on a fresh input derived from ``example``.

    ``onnx_path`` is a file or the serialised model; ``session``, when given,
    is a session already open on that same file (the self-check's), run
    instead of loading it again.  A runtime that cannot load or run the file
    is a failed parity with the reason, not an error.

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
        if session is None:
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
