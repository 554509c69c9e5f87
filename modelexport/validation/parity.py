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
from modelexport.input_generation.second_shape import PAST_SEQUENCE, at_second_shape
from modelexport.inputs import ModelInputs, flatten_outputs
from modelexport.onnx_runtime.comparison import max_abs_difference, output_scale
from modelexport.onnx_runtime.sessions import open_session, ort_feed


@dataclass
class ShapeParity:
    """ONNX Runtime vs PyTorch at one shape."""

    passed: bool
    max_abs: float
    max_rel: float
    outputs: int
    detail: str = ""
    sizes: dict[str, int] | None = None  # the second shape's axis sizes by symbol


@dataclass
class ParityResult:
    """ONNX Runtime vs PyTorch on a fresh seeded input, and again at a second shape.

    ``second_shape`` is None when the file leaves no axis open (a static
    export), or when PyTorch itself refuses both candidate second shapes
    (``second_shape_skipped`` says why): then only the example's shape is
    judged, and the report says so.

    A file with a ``past_sequence`` axis is also run with that axis at zero,
    as a generation runtime runs it on the prompt: a model whose code takes
    another branch for an empty cache (ProphetNet) traced with a past gives
    a file that is right for every later step and wrong for the first.
    """

    passed: bool
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    outputs: int
    seed: int
    detail: str = ""
    second_shape: ShapeParity | None = None
    second_shape_skipped: str = ""
    # a file with a past (``past_sequence``) run as the prompt's step: the past empty
    empty_past: ShapeParity | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def check_parity(onnx_path: str | Path | bytes, model: torch.nn.Module, example: ModelInputs,
                 input_names: list[str], atol: float = 1e-4, rtol: float = 1e-3,
                 seed: int = 1234, session: Any = None) -> ParityResult:
    """Run ONNX Runtime and PyTorch on a fresh input derived from ``example``, at two shapes.

    ``onnx_path`` is a file or the serialised model; ``session``, when given,
    is a session already open on that same file (the self-check's), run
    instead of loading it again.  A runtime that cannot load or run the file
    is a failed parity with the reason, not an error.

    The first shape is the example's; the second resizes every axis the
    file leaves open (``input_generation.second_shape``).  Both must pass.

    An output passes when it has the reference's shape and its largest error
    is within ``atol + rtol * max|reference|``: the tolerance scales with the
    output's magnitude, not each element's, because an element near zero in
    an output of magnitude 1e3 carries float32 rounding of that magnitude.
    ``max_rel`` is the largest error divided by the largest magnitude of the
    reference output.
    """
    try:
        if session is None:
            session = open_session(onnx_path)
    except Exception as exc:  # the runtime refused the file
        return ParityResult(False, float("inf"), float("inf"), atol, rtol, 0, seed,
                            f"ONNX Runtime failed: {one_line(exc, 200)}")
    first = _at_shape(session, model, fresh_like(example, seed=seed), input_names, atol, rtol)
    result = ParityResult(first.passed, first.max_abs, first.max_rel, atol, rtol,
                          first.outputs, seed, first.detail)
    if not first.passed:
        return result
    open_dims = _open_dims(session)
    _second_shape(result, session, model, example, input_names, open_dims)
    if result.passed and any(PAST_SEQUENCE in dims.values() for dims in open_dims.values()):
        result.empty_past = _with_empty_past(session, model, example, input_names, open_dims,
                                             atol, rtol)
        _judge(result, result.empty_past)
    return result


def _second_shape(result: ParityResult, session: Any, model: torch.nn.Module,
                  example: ModelInputs, input_names: list[str],
                  open_dims: dict[str, dict[int, str]]) -> None:
    """The comparison at the second shape, shorter first, folded into ``result``."""
    refusals = []
    for longer in (False, True):
        resized = at_second_shape(example, input_names, open_dims, longer=longer)
        if resized is None:
            return
        inputs, sizes = resized
        try:
            with torch.no_grad():
                reference = inputs.call(model)
        except Exception as exc:  # PyTorch refuses this shape: not the file's fault
            refusals.append(f"{_sizes_text(sizes)}: {one_line(exc, 120)}")
            continue
        second = _at_shape(session, model, inputs, input_names, result.atol, result.rtol,
                           reference)
        second.sizes = sizes
        result.second_shape = second
        _judge(result, second)
        return
    result.second_shape_skipped = "PyTorch refuses the second shapes (" + "; ".join(
        refusals) + ")"


def _judge(result: ParityResult, shape: ShapeParity) -> None:
    """Fold one more shape's comparison into ``result``."""
    result.max_abs, result.max_rel = (max(result.max_abs, shape.max_abs),
                                      max(result.max_rel, shape.max_rel))
    if not shape.passed and result.passed:
        result.passed = False
        result.detail = f"at {_sizes_text(shape.sizes or {})}: {shape.detail}"


def _with_empty_past(session: Any, model: torch.nn.Module, example: ModelInputs,
                     input_names: list[str], open_dims: dict[str, dict[int, str]],
                     atol: float, rtol: float) -> ShapeParity:
    """The file against PyTorch on a prompt: the second shape with no past at all."""
    resized = at_second_shape(example, input_names, open_dims, seed=2468,
                              preset={PAST_SEQUENCE: 0})
    assert resized is not None  # the file has a past_sequence axis
    inputs, sizes = resized
    try:
        with torch.no_grad():
            reference = inputs.call(model)
    except Exception as exc:  # PyTorch cannot read a prompt through this adapter
        return ShapeParity(False, float("inf"), float("inf"), 0,
                           f"PyTorch refuses an empty past: {one_line(exc, 120)}", sizes)
    shape = _at_shape(session, model, inputs, input_names, atol, rtol, reference)
    shape.sizes = sizes
    return shape


def _at_shape(session: Any, model: torch.nn.Module, inputs: ModelInputs,
              input_names: list[str], atol: float, rtol: float,
              reference: Any = None) -> ShapeParity:
    """ONNX Runtime on ``inputs`` against PyTorch's outputs (``reference`` when computed)."""
    if reference is None:
        with torch.no_grad():
            reference = inputs.call(model)
    expected = [t.detach().cpu().numpy() for t in flatten_outputs(reference)]
    try:
        wanted = [i.name for i in session.get_inputs()]
        feed = ort_feed(wanted, inputs, input_names)
        got = session.run(None, feed)
    except InputMismatchError:
        raise
    except Exception as exc:  # the runtime failed mid-run
        return ShapeParity(False, float("inf"), float("inf"), 0,
                           f"ONNX Runtime failed: {one_line(exc, 200)}")
    if len(got) != len(expected):
        expected = [t.detach().cpu().numpy() for t in flatten_outputs(reference, numbers=True)]
    if len(got) != len(expected):
        return ShapeParity(False, float("inf"), float("inf"), len(got),
                           f"ONNX has {len(got)} outputs, PyTorch {len(expected)}")
    max_abs = max_rel = 0.0
    passed, detail = True, ""
    for index, (ours, ref) in enumerate(zip(got, expected)):
        if ours.shape != ref.shape:
            return ShapeParity(False, float("inf"), float("inf"), len(got),
                               f"output {index}: shape {ours.shape} vs {ref.shape}")
        if ref.size == 0:
            continue
        scale = output_scale(ref)
        worst = max_abs_difference(ours, ref)
        max_abs, max_rel = max(max_abs, worst), max(max_rel, worst / scale)
        if not worst <= atol + rtol * scale:
            passed = False
            detail = detail or f"output {index} exceeds tolerance"
    if not passed:
        detail = _unrepeatable(model, inputs, expected, atol, rtol) or detail
    return ShapeParity(passed, max_abs, max_rel, len(got), detail)


def _unrepeatable(model: torch.nn.Module, inputs: ModelInputs, expected: list[Any],
                  atol: float, rtol: float) -> str:
    """Why parity cannot be judged, when PyTorch disagrees with itself on the same input.

    A model that draws random numbers in eval mode (a random mask, as
    masked-autoencoder pretraining heads draw) gives other outputs on every
    call; so does its file, and no tolerance makes the two comparable.  Run
    only after a failure: one more forward.
    """
    with torch.no_grad():
        again = [t.detach().cpu().numpy() for t in flatten_outputs(inputs.call(model))]
    for index, (first, second) in enumerate(zip(expected, again)):
        if first.shape != second.shape or (
                first.size and max_abs_difference(first, second)
                > atol + rtol * output_scale(first)):
            return (f"output {index}: PyTorch gives other values on a second run of the same "
                    "input (the model draws random numbers in eval mode), so the file "
                    "cannot be compared; pass the randomness as an input where the model "
                    "takes one")
    return ""


def _open_dims(session: Any) -> dict[str, dict[int, str]]:
    """Graph input -> dim -> symbol, for the dimensions ONNX Runtime reads as open."""
    return {i.name: {d: str(size) for d, size in enumerate(i.shape) if not isinstance(size, int)}
            for i in session.get_inputs()}


def _sizes_text(sizes: dict[str, int]) -> str:
    return " x ".join(f"{symbol}={size}" for symbol, size in sizes.items())
