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
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from modelexport.capture.request import ADAPTER_ATTRIBUTE
from modelexport.errors import InputMismatchError, one_line
from modelexport.inputs import ModelInputs

PAST_SEQUENCE = "past_sequence"
SEQUENCE = "sequence"
# The mask covers the past and the new tokens: its length is their sum
# (``input_generation.second_shape`` reads the sum).
TOTAL_SEQUENCE = f"{PAST_SEQUENCE} + {SEQUENCE}"
NEW_TOKENS = 2


def past_names(layers: int) -> list[str]:
    return [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def _cache_argument(model: torch.nn.Module) -> str:
    """The keyword ``forward`` takes the cache by (``cache`` in newer transformers)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers cache object."""
    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(layer, "keys") for layer in layers):
        raise InputMismatchError(
            f"with_past needs a key/value cache; the model returned {type(cache).__name__}")
    if any(layer.keys is None for layer in layers):
        raise InputMismatchError("with_past: some cache layers hold no keys (a recurrent or "
                                 "linear-attention layer); only key/value caches are supported")
    extra = sorted({name for layer in layers for name in _sequence_state(layer)})
    if extra:
        raise InputMismatchError(
            f"with_past: the cache layers also hold per-sequence state ({', '.join(extra)}: a "
            "convolution or recurrent state beside the keys and values), which the file "
            "could not carry between steps; only key/value caches are supported")
    return [(layer.keys, layer.values) for layer in layers]


def _sequence_state(layer: Any) -> list[str]:
    """A layer's attributes besides keys and values that hold a tensor per sequence.

    Such a tensor has the keys' batch as its first dimension (a short
    convolution's last inputs, a recurrent state); a scalar such as a
    sliding-window size is configuration, not state.
    """
    batch = layer.keys.shape[0]
    found = []
    for name, value in vars(layer).items():
        if name in ("keys", "values"):
            continue
        if any(isinstance(leaf, torch.Tensor) and leaf.dim() >= 1 and leaf.shape[0] == batch
               for leaf in pytree.tree_leaves(value)):
            found.append(name)
    return found


def cache_layers(outputs: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of the cache a forward returned; one clear error if none."""
    return _layer_tensors(_returned_cache(outputs))


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

    ``past`` is the flat tuple (layer 0 key, layer 0 value, layer 1 key, ...).
    """

    def __init__(self, model: torch.nn.Module, layers: int, main_output: str) -> None:
        super().__init__()
        setattr(self, ADAPTER_ATTRIBUTE, model)
        self.layers = layers
        self.main_output = main_output
        self.cache_argument = _cache_argument(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None,
                past: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        model = getattr(self, ADAPTER_ATTRIBUTE)
        positions = {} if position_ids is None else {"position_ids": position_ids}
        cache = DynamicCache(config=getattr(model, "config", None))
        for index in range(self.layers):
            cache.update(past[2 * index], past[2 * index + 1], index)
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, **positions,
                        use_cache=True, **{self.cache_argument: cache})
        present = cache_layers(outputs)
        return (getattr(outputs, self.main_output),
                *(tensor for pair in present for tensor in pair))


@dataclass
class DecodingExport:
    """What the exporter needs to capture one decoding step."""

    adapter: DecodingStep
    inputs: ModelInputs
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]


def decoding_step(model: torch.nn.Module, example: ModelInputs, seed: int = 0,
                  ) -> DecodingExport:
    """The adapter and a second-step example built from the caller's first-step inputs."""
    ids = example.kwargs.get("input_ids")
    if example.args or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise InputMismatchError("with_past needs keyword inputs with 2-D input_ids")
    first = {k: v for k, v in example.kwargs.items() if k not in ("use_cache",)}
    try:
        with torch.no_grad():
            outputs = model(**first, use_cache=True)
    except Exception as exc:
        raise InputMismatchError(f"with_past: the model does not run with use_cache=True: "
                                 f"{one_line(exc)}") from None
    past = cache_layers(outputs)
    main = "logits" if getattr(outputs, "logits", None) is not None else "last_hidden_state"
    adapter = DecodingStep(model, len(past), main).eval()
    names = ["input_ids", "attention_mask"]
    if takes_position_ids(model):
        names.append("position_ids")
    step = _runnable_step(adapter, ids, past, "position_ids" in names, seed)
    axes: dict[str, dict[int, str]] = {"input_ids": {1: SEQUENCE},
                                       "attention_mask": {1: TOTAL_SEQUENCE}}
    if "position_ids" in names:
        axes["position_ids"] = {1: SEQUENCE}
    axes.update({name: {2: PAST_SEQUENCE} for name in past_names(len(past))})
    return DecodingExport(
        adapter=adapter,
        inputs=ModelInputs(kwargs=step),
        input_names=[*names, *past_names(len(past))],
        output_names=[main, *present_names(len(past))],
        dynamic_axes=axes,
    )


def _runnable_step(adapter: DecodingStep, ids: torch.Tensor,
                   past: list[tuple[torch.Tensor, torch.Tensor]], positions: bool,
                   seed: int) -> dict[str, Any]:
    """The capture's example: ``NEW_TOKENS`` new tokens after ``past``, or one.

    Some architectures' own code cannot read several new tokens beside a
    past (a sparse-attention indexer that builds its mask for one token):
    for them the example is a single new token, as their ``generate`` feeds.
    """
    batch, past_length = ids.shape[0], past[0][0].shape[-2]
    refusal = None
    for new in (NEW_TOKENS, 1):
        generator = torch.Generator().manual_seed(seed)
        mask = torch.ones(batch, past_length + new, dtype=torch.long)
        step: dict[str, Any] = {
            "input_ids": torch.randint(int(ids.min()), int(ids.max()) + 1, (batch, new),
                                       generator=generator, dtype=ids.dtype),
            "attention_mask": mask,
        }
        if positions:
            step["position_ids"] = positions_from_mask(mask, new)
        step["past"] = tuple(t.detach().clone() for pair in past for t in pair)
        try:
            with torch.no_grad():
                adapter(**step)
        except Exception as exc:
            refusal = exc
            continue
        return step
    raise InputMismatchError(f"with_past: the model does not run a step with its own cache: "
                             f"{one_line(refusal)}")
