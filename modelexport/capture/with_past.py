"""Exporting a decoder's call with its key/value cache as graph inputs and outputs.

A generation runtime calls a decoder once for the prompt and once per new
token, handing back the keys and values of every earlier token.
``with_past=True`` exports that call, named the way Optimum names it, so
existing runtimes can drive it, and ``modelexport.generation`` drives it
with ONNX Runtime alone:

- inputs ``input_ids`` (``batch x sequence``: the prompt, or the new token),
  ``attention_mask`` (``batch x past_sequence + sequence``, zeros where a
  row is left-padded), ``position_ids`` where ``forward`` takes them (so a
  padded row counts its positions from its first real token, as
  ``generate`` does), and ``past_key_values.{i}.key`` / ``.value``
  (``batch x heads x past_sequence x head_dim``; empty for the prompt);
- outputs ``logits`` (or ``last_hidden_state``), ``present.{i}.key`` /
  ``present.{i}.value``.

One file serves the prompt and every step: batch, sequence and past length
are all symbolic.  The example for the capture comes from the caller's own
inputs: the model runs once on them with the cache on, the cache it returns
becomes the past, and two new tokens follow (two, so that no exporter
specialises the sequence axis to one; one, for an architecture whose code
reads only one new token beside a past).  A small adapter module (the user's
model as its only child, so tags keep the model's own module paths)
rebuilds the library's cache object from the flat tensors, which is all the
cache object ever is to an exporter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import _pytree as pytree

from modelexport.capture.request import ADAPTER_ATTRIBUTE
from modelexport.errors import InputMismatchError, one_line
from modelexport.input_generation.second_shape import PAST_SEQUENCE
from modelexport.inputs import ModelInputs

SEQUENCE = "sequence"
# The mask covers the past and the new tokens: its length is their sum
# (``input_generation.second_shape`` reads the sum).
TOTAL_SEQUENCE = f"{PAST_SEQUENCE} + {SEQUENCE}"
NEW_TOKENS = 2


@dataclass(frozen=True)
class CacheState:
    """One tensor a cache layer keeps per sequence: the layer's attribute that
    holds it, its name in the file, and the axis it grows along."""

    attribute: str
    name: str
    axis: int


KEYS = CacheState("keys", "key", 2)
VALUES = CacheState("values", "value", 2)
# What a lazy initialisation sets beside a state tensor (``is_..._initialized``,
# its dtype and device): copied onto a rebuilt layer, so that the layer takes
# the tensor handed to it as its past instead of starting afresh.  Counters
# (ints) are not copied: the layer's own update keeps them.
_FLAG_TYPES = (bool, torch.dtype, torch.device)


@dataclass
class CacheLayout:
    """What each layer of a model's cache holds, in the file's order.

    Every layer holds keys and values (``batch x heads x past_sequence x
    head_dim``); a layer may hold more tensors that grow with the sequence,
    such as a sparse-attention indexer's keys (``batch x past_sequence x
    dim``): they become inputs and outputs of their own, named after the
    attribute, and are set back on the rebuilt layer with the flags its lazy
    initialisation set.
    """

    states: list[tuple[CacheState, ...]]
    flags: list[dict[str, Any]]

    @property
    def layers(self) -> int:
        return len(self.states)

    def past_names(self) -> list[str]:
        return [f"past_key_values.{i}.{state.name}" for i, layer in enumerate(self.states)
                for state in layer]

    def present_names(self) -> list[str]:
        return [f"present.{i}.{state.name}" for i, layer in enumerate(self.states)
                for state in layer]

    def past_axes(self) -> dict[str, dict[int, str]]:
        return {f"past_key_values.{i}.{state.name}": {state.axis: PAST_SEQUENCE}
                for i, layer in enumerate(self.states) for state in layer}

    def tensors(self, cache: Any) -> list[torch.Tensor]:
        """The cache's tensors, flat, in the file's order."""
        return [getattr(layer, state.attribute)
                for layer, states in zip(_key_value_layers(cache), self.states)
                for state in states]

    def rebuild(self, past: tuple[torch.Tensor, ...], config: Any) -> Any:
        """A transformers cache holding ``past`` (flat, in the file's order)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=config)
        flat = iter(past)
        for index, states in enumerate(self.states):
            tensors = {state.attribute: next(flat) for state in states}
            cache.update(tensors.pop("keys"), tensors.pop("values"), index)
            layer = cache.layers[index]
            for name, value in self.flags[index].items():
                setattr(layer, name, value)
            for name, tensor in tensors.items():
                setattr(layer, name, tensor)
        return cache


def _cache_argument(model: torch.nn.Module) -> str:
    """The keyword ``forward`` takes the cache by (``cache`` in newer transformers)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _key_value_layers(cache: Any) -> list[Any]:
    """The layers of a transformers cache object; one clear error if it holds no keys."""
    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(layer, "keys") for layer in layers):
        raise InputMismatchError(
            f"with_past needs a key/value cache; the model returned {type(cache).__name__}")
    if any(layer.keys is None for layer in layers):
        raise InputMismatchError("with_past: some cache layers hold no keys (a recurrent or "
                                 "linear-attention layer); only key/value caches are supported")
    return list(layers)


def _other_state(layer: Any) -> dict[str, Any]:
    """A layer's attributes besides keys and values that hold something per sequence.

    Such a value has the keys' batch as the first dimension of a tensor in
    it (an indexer's keys, a short convolution's last inputs, a recurrent
    state); a scalar such as a sliding-window size is configuration.
    """
    batch = layer.keys.shape[0]
    return {name: value for name, value in vars(layer).items()
            if name not in ("keys", "values")
            and any(isinstance(leaf, torch.Tensor) and leaf.dim() >= 1 and leaf.shape[0] == batch
                    for leaf in pytree.tree_leaves(value))}


def cache_layout(longer: Any, shorter: Any | None) -> CacheLayout:
    """The layout of a cache, from two prefills one token apart.

    A state beside keys and values is carried when it is one tensor with
    exactly one axis that grew by that token; anything else (a fixed-size
    convolution or recurrent state, a dict of buffers) is refused, because
    a file that dropped it would decode other tokens than the model.
    Without the shorter prefill (a one-token prompt) only keys and values
    are carried.
    """
    layers = _key_value_layers(longer)
    earlier = _key_value_layers(shorter) if shorter is not None else [None] * len(layers)
    states, flags, refused = [], [], set()
    for layer, before in zip(layers, earlier):
        extra = []
        for name, value in _other_state(layer).items():
            axis = _growth_axis(value, getattr(before, name, None))
            if axis is None:
                refused.add(name)
            else:
                extra.append(CacheState(name, name, axis))
        states.append((KEYS, VALUES, *extra))
        flags.append({name: value for name, value in vars(layer).items()
                      if extra and isinstance(value, _FLAG_TYPES)})
    if refused and shorter is None:
        raise InputMismatchError(
            f"with_past: the cache layers also hold {', '.join(sorted(refused))}; a prompt of "
            "at least two tokens is needed to tell how that state grows")
    if refused:
        raise InputMismatchError(
            f"with_past: the cache layers also hold state that does not grow with the sequence "
            f"({', '.join(sorted(refused))}: a convolution or recurrent state, or buffers), "
            "which the file could not carry between steps; only caches of tensors that grow "
            "by one entry per token are supported")
    return CacheLayout(states, flags)


def _growth_axis(value: Any, before: Any) -> int | None:
    """The one axis along which ``value`` is one longer than ``before``, if it is so."""
    if not isinstance(value, torch.Tensor) or not isinstance(before, torch.Tensor):
        return None
    if value.dim() != before.dim():
        return None
    grown = [axis for axis in range(1, value.dim())
             if value.shape[axis] == before.shape[axis] + 1]
    same = all(value.shape[axis] == before.shape[axis]
               for axis in range(value.dim()) if axis not in grown)
    return grown[0] if len(grown) == 1 and same else None


def cache_layers(outputs: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of the cache a forward returned; one clear error if none."""
    return [(layer.keys, layer.values) for layer in _key_value_layers(_returned_cache(outputs))]


def _returned_cache(outputs: Any) -> Any:
    for name in ("past_key_values", "cache"):
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    raise InputMismatchError("with_past: the model returned no cache with use_cache=True")


def takes_position_ids(model: torch.nn.Module) -> bool:
    """Whether ``forward`` takes ``position_ids`` (then the file does too)."""
    return "position_ids" in inspect.signature(model.forward).parameters


def positions_from_mask(attention_mask: torch.Tensor, new: int) -> torch.Tensor:
    """The last ``new`` positions of each row, counted from its first real token.

    ``generate`` counts them so: a left-padded row's first token is
    position 0, padding positions are 0 too.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)[:, -new:]


class DecodingStep(torch.nn.Module):
    """``forward(input_ids, attention_mask, position_ids, past)`` -> main output, new cache.

    ``past`` is the flat tuple of the layout's tensors (layer 0 key, layer 0
    value, any other state of layer 0, layer 1 key, ...).
    """

    def __init__(self, model: torch.nn.Module, layout: CacheLayout, main_output: str) -> None:
        super().__init__()
        setattr(self, ADAPTER_ATTRIBUTE, model)
        self.layout = layout
        self.main_output = main_output
        self.cache_argument = _cache_argument(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None,
                past: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, ...]:
        model = getattr(self, ADAPTER_ATTRIBUTE)
        positions = {} if position_ids is None else {"position_ids": position_ids}
        cache = self.layout.rebuild(past, getattr(model, "config", None))
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, **positions,
                        use_cache=True, **{self.cache_argument: cache})
        return (getattr(outputs, self.main_output),
                *self.layout.tensors(_returned_cache(outputs)))


@dataclass
class DecodingExport:
    """What the exporter needs to capture one part (a decoding step, an encoder)."""

    adapter: torch.nn.Module
    inputs: ModelInputs
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    # what a runtime needs beside the file, kept in its settings and sidecar
    settings: dict[str, Any] = field(default_factory=dict)


def prefill(model: torch.nn.Module, inputs: dict[str, Any]) -> tuple[Any, CacheLayout]:
    """The model's outputs on ``inputs`` with the cache on, and its cache's layout.

    The layout is read from a second prefill one token shorter (every
    input of the prompt's length loses its last token): what grew by one
    is per-token state.  One clear error where the cache cannot be carried.
    """
    ids = inputs["input_ids"]
    length = ids.shape[1]
    try:
        with torch.no_grad():
            outputs = model(**inputs, use_cache=True)
            cache = _returned_cache(outputs)
            if length < 2:
                return outputs, cache_layout(cache, None)
            shorter = {name: value[:, :-1] if _per_token(value, length) else value
                       for name, value in inputs.items()}
            before = _returned_cache(model(**shorter, use_cache=True))
    except InputMismatchError:
        raise
    except Exception as exc:
        raise InputMismatchError(f"with_past: the model does not run with use_cache=True: "
                                 f"{one_line(exc)}") from None
    return outputs, cache_layout(cache, before)


def _per_token(value: Any, length: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == length


def decoding_step(model: torch.nn.Module, example: ModelInputs, seed: int = 0,
                  ) -> DecodingExport:
    """The adapter and a second-step example built from the caller's first-step inputs."""
    ids = example.kwargs.get("input_ids")
    if example.args or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise InputMismatchError("with_past needs keyword inputs with 2-D input_ids")
    first = {k: v for k, v in example.kwargs.items() if k not in ("use_cache",)}
    outputs, layout = prefill(model, first)
    main = "logits" if getattr(outputs, "logits", None) is not None else "last_hidden_state"
    adapter = DecodingStep(model, layout, main).eval()
    names = ["input_ids", "attention_mask"]
    if takes_position_ids(model):
        names.append("position_ids")
    past = tuple(t.detach().clone() for t in layout.tensors(_returned_cache(outputs)))
    step = _runnable_step(adapter, ids, past, "position_ids" in names, seed)
    axes: dict[str, dict[int, str]] = {"input_ids": {1: SEQUENCE},
                                       "attention_mask": {1: TOTAL_SEQUENCE}}
    if "position_ids" in names:
        axes["position_ids"] = {1: SEQUENCE}
    axes.update(layout.past_axes())
    return DecodingExport(
        adapter=adapter,
        inputs=ModelInputs(kwargs=step),
        input_names=[*names, *layout.past_names()],
        output_names=[main, *layout.present_names()],
        dynamic_axes=axes,
    )


def _runnable_step(adapter: DecodingStep, ids: torch.Tensor, past: tuple[torch.Tensor, ...],
                   positions: bool, seed: int) -> dict[str, Any]:
    """The capture's example: ``NEW_TOKENS`` new tokens after ``past``, or one.

    Some architectures' own code cannot read several new tokens beside a
    past (a sparse-attention indexer that builds its mask for one token):
    for them the example is a single new token, as their ``generate`` feeds.
    """
    batch, past_length = ids.shape[0], past[0].shape[KEYS.axis]

    def step_of(new: int) -> dict[str, Any]:
        generator = torch.Generator().manual_seed(seed)
        mask = torch.ones(batch, past_length + new, dtype=torch.long)
        step: dict[str, Any] = {
            "input_ids": torch.randint(int(ids.min()), int(ids.max()) + 1, (batch, new),
                                       generator=generator, dtype=ids.dtype),
            "attention_mask": mask,
        }
        if positions:
            step["position_ids"] = positions_from_mask(mask, new)
        step["past"] = tuple(t.clone() for t in past)
        return step

    return first_runnable_step(adapter, step_of, "the model")


def first_runnable_step(adapter: torch.nn.Module, step_of: Callable[[int], dict[str, Any]],
                        who: str) -> dict[str, Any]:
    """The step of ``NEW_TOKENS`` new tokens (``step_of(n)``) if ``adapter`` runs it, else
    of one; one clear error if it runs neither."""
    refusal = None
    for new in (NEW_TOKENS, 1):
        step = step_of(new)
        try:
            with torch.no_grad():
                adapter(**step)
        except Exception as exc:
            refusal = exc
            continue
        return step
    raise InputMismatchError(f"with_past: {who} does not run a step with its own cache: "
                             f"{one_line(refusal)}")
