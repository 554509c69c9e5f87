"""Example inputs: normalising what users pass, and making fresh ones for parity.

Users give a tensor, a tuple of tensors, or a dict of keyword arguments (the
Hugging Face style).  Internally that is always ``(args, kwargs)``.  Parity is
checked on a *fresh* seeded input of the same shapes and dtypes, never the
export input, so control flow frozen by tracing shows up as a mismatch.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import _pytree as pytree

from modelexport.errors import InputMismatchError, one_line


@dataclass
class ModelInputs:
    """Positional and keyword example inputs for one forward call."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_user(cls, inputs: Any) -> ModelInputs:
        if isinstance(inputs, ModelInputs):
            return inputs
        if isinstance(inputs, torch.Tensor):
            return cls(args=(inputs,))
        if isinstance(inputs, Mapping):
            return cls(kwargs=dict(inputs))
        if isinstance(inputs, (tuple, list)):
            return cls(args=tuple(inputs))
        raise InputMismatchError(
            f"inputs must be a tensor, a tuple of tensors or a dict of keyword "
            f"arguments, not {type(inputs).__name__}"
        )

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor leaf, in the order ONNX exporters flatten them."""
        leaves = pytree.tree_leaves((self.args, self.kwargs))
        return [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """Top-level tensor inputs by graph-input name (non-tensors are constants)."""
        named = {f"input_{i}": a for i, a in enumerate(self.args)}
        named.update(self.kwargs)
        return {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}

    def call(self, model: torch.nn.Module) -> Any:
        return model(*self.args, **self.kwargs)

    def describe(self) -> str:
        parts = [f"{name}{tuple(t.shape)}:{str(t.dtype).replace('torch.', '')}"
                 for name, t in self.named_tensors().items()]
        return ", ".join(parts) or "no tensor inputs"


def in_signature_order(model: torch.nn.Module, inputs: ModelInputs) -> ModelInputs:
    """Keyword inputs reordered as ``forward`` declares them.

    Exporters flatten keyword inputs in dict order, while graph inputs are
    named in signature order; a tokenizer's dict (``input_ids,
    token_type_ids, attention_mask``) would otherwise put the name
    ``attention_mask`` on the token types.  Names ``forward`` does not
    declare (taken by ``**kwargs``) keep their order, after the rest.
    """
    try:
        declared = list(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return inputs
    rank = {name: i for i, name in enumerate(declared)}
    ordered = sorted(inputs.kwargs, key=lambda name: rank.get(name, len(rank)))
    if ordered == list(inputs.kwargs):
        return inputs
    return ModelInputs(args=inputs.args, kwargs={name: inputs.kwargs[name] for name in ordered})


def accepts_argument(model: torch.nn.Module, name: str, through_kwargs: bool = False) -> bool:
    """Whether ``model.forward`` has a parameter ``name`` (or, if asked, a ``**kwargs``)."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    if name in parameters:
        return True
    return through_kwargs and any(p.kind is inspect.Parameter.VAR_KEYWORD
                                  for p in parameters.values())


def holds_non_tensors(outputs: Any) -> bool:
    """Whether a forward's result holds objects exporters cannot flatten (a KV cache)."""
    if hasattr(outputs, "to_tuple"):
        outputs = outputs.to_tuple()
    return any(not isinstance(leaf, (torch.Tensor, int, float, bool, str, type(None)))
               for leaf in pytree.tree_leaves(outputs))


def cache_left_to_model(model: torch.nn.Module, inputs: ModelInputs) -> bool:
    """Whether the caller left ``use_cache`` unset and the model could take it."""
    return "use_cache" not in inputs.kwargs and accepts_argument(model, "use_cache", True)


def without_unrequested_cache(model: torch.nn.Module, inputs: ModelInputs, outputs: Any,
                              ) -> tuple[ModelInputs, bool]:
    """``use_cache=False`` added when ``outputs`` hold a cache the caller did not ask for.

    A decoder returns its KV cache by default; nobody exporting a model asked
    for a cache object as an output (``with_past`` does ask), and exporters
    cannot flatten it.  ``outputs`` is the result of calling the model on
    ``inputs``.  Returns the inputs to export with and whether the cache was
    dropped, which the report states.
    """
    if not cache_left_to_model(model, inputs) or not holds_non_tensors(outputs):
        return inputs, False
    return without_cache(inputs), True


def without_cache(inputs: ModelInputs) -> ModelInputs:
    """``inputs`` with ``use_cache=False`` added: the model returns no KV cache."""
    return ModelInputs(args=inputs.args, kwargs={**inputs.kwargs, "use_cache": False})


class UnrequestedCacheError(RuntimeError):
    """A capture's forward returned a KV cache the caller did not ask for.

    Raised from inside the capture (``CallAdapter``) as soon as the forward
    returns, before any conversion: the export then drops the cache
    (:func:`without_cache`) and captures again, with no probe forward to
    find out first.
    """


def flatten_outputs(outputs: Any, numbers: bool = False) -> list[torch.Tensor]:
    """Tensor leaves of a forward's result, in the order exporters emit outputs.

    Hugging Face ``ModelOutput`` objects drop ``None`` fields and may nest
    (a backbone's output inside a segmentation model's); both exporters
    flatten what remains depth-first, which this reproduces.  With
    ``numbers``, Python ints and floats count too, as 0-d tensors: the
    TorchScript exporter emits them as graph outputs (feature-map sizes).
    """
    if hasattr(outputs, "to_tuple"):
        outputs = outputs.to_tuple()
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if numbers and isinstance(outputs, (int, float)) and not isinstance(outputs, bool):
        return [torch.tensor(outputs)]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [leaf for item in outputs for leaf in flatten_outputs(item, numbers)]
    return []


def run_checked(model: torch.nn.Module, inputs: ModelInputs) -> Any:
    """Run one forward, turning a signature or shape mismatch into a clear error."""
    try:
        with torch.no_grad():
            return inputs.call(model)
    except (TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise InputMismatchError(
            f"inputs ({inputs.describe()}) do not fit {type(model).__name__}: "
            f"{one_line(exc)}"
        ) from exc


def bound_arguments(model: torch.nn.Module, inputs: ModelInputs) -> dict[str, Any]:
    """The inputs keyed by ``model.forward``'s parameter names, in call order.

    Falls back to ``input_N`` / keyword names when the signature can't bind
    (``*args`` forwards, C++ modules).
    """
    try:
        bound = inspect.signature(model.forward).bind(*inputs.args, **inputs.kwargs)
    except (TypeError, ValueError):
        named: dict[str, Any] = {f"input_{i}": a for i, a in enumerate(inputs.args)}
        named.update(inputs.kwargs)
        return named
    named = {}
    for name, value in bound.arguments.items():
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            named.update({f"{name}_{i}": v for i, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        else:
            named[name] = value
    return named


def _path_suffix(path: tuple) -> str:
    """``(MappingKey('image'), SequenceKey(0))`` -> ``image_0``."""
    parts = []
    for key in path:
        for attribute in ("key", "idx", "name"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    return "_".join(parts)


def graph_input_names(model: torch.nn.Module, inputs: ModelInputs) -> list[str]:
    """One name per tensor leaf, in flattening order: ``input_ids``, ``pixel_values``...

    Tensors nested in a dict or list argument are named by their path, as
    torch's dynamo exporter names them: ``batch["image"]`` is ``batch_image``,
    ``pair[0]`` is ``pair_0``.
    """
    names: list[str] = []
    for name, value in bound_arguments(model, inputs).items():
        if isinstance(value, torch.Tensor):
            names.append(name)
            continue
        for path, leaf in pytree.tree_flatten_with_path(value)[0]:
            if isinstance(leaf, torch.Tensor):
                names.append(f"{name}_{_path_suffix(path)}")
    return names


def dynamic_axes_for(
    names: list[str], tensors: list[torch.Tensor], batch: bool, sequence: bool
) -> dict[str, dict[int, str]]:
    """Which input dimensions to leave symbolic, and their names.

    ``batch`` is dimension 0 of every input, named ``batch``; ``sequence`` is
    dimension 1 of integer inputs of rank 2 (token ids, masks, positions).
    Inputs with one name share one symbol, and ONNX Runtime holds them equal,
    so sequences are named as Optimum names them: ``decoder_sequence`` for
    ``decoder_*`` inputs, ``sequence`` for the rest; inputs of one group
    whose example lengths differ get a name of their own
    (``<input>_sequence``): nothing says they must match.
    """
    axes: dict[str, dict[int, str]] = {}
    lengths: dict[str, set[int]] = {}
    for name, tensor in zip(names, tensors):
        if sequence and tensor.dim() == 2 and not tensor.dtype.is_floating_point:
            lengths.setdefault(_sequence_group(name), set()).add(int(tensor.shape[1]))
    for name, tensor in zip(names, tensors):
        dims: dict[int, str] = {}
        if batch and tensor.dim() >= 1:
            dims[0] = "batch"
        if sequence and tensor.dim() == 2 and not tensor.dtype.is_floating_point:
            group = _sequence_group(name)
            dims[1] = group if len(lengths[group]) == 1 else f"{name}_sequence"
        if dims:
            axes[name] = dims
    return axes


def _sequence_group(input_name: str) -> str:
    return "decoder_sequence" if input_name.startswith("decoder_") else "sequence"
