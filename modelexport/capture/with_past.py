"""Exporting one decoding step with its key/value cache as graph inputs and outputs.

A generation runtime calls a decoder once per new token, handing back the
keys and values of every earlier token.  ``with_past=True`` exports exactly
that call, named the way Optimum names it, so existing runtimes can drive it:

- inputs ``input_ids`` (the new token), ``attention_mask`` (past + new),
  ``past_key_values.{i}.key`` / ``past_key_values.{i}.value``;
- outputs ``logits`` (or ``last_hidden_state``), ``present.{i}.key`` /
  ``present.{i}.value``.

The example for the step comes from the caller's own inputs: the model runs
once on them with the cache on, the cache it returns becomes the past, and
one new token follows.  The past length is a symbolic dimension of the file.
A small adapter module (the user's model as its only child, so tags keep the
model's own module paths) rebuilds the library's cache object from the flat
tensors, which is all the cache object ever is to an exporter.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from modelexport.capture.request import ADAPTER_ATTRIBUTE
from modelexport.errors import InputMismatchError, one_line
from modelexport.inputs import ModelInputs

PAST_SEQUENCE = "past_sequence"


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
    return [(layer.keys, layer.values) for layer in layers]


def _returned_cache(outputs: Any) -> Any:
    for name in ("past_key_values", "cache"):
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    raise InputMismatchError("with_past: the model returned no cache with use_cache=True")


class DecodingStep(torch.nn.Module):
    """``forward(input_ids, attention_mask, past)`` -> main output and the new cache.

    ``past`` is the flat tuple (layer 0 key, layer 0 value, layer 1 key, ...).
    """

    def __init__(self, model: torch.nn.Module, layers: int, main_output: str) -> None:
        super().__init__()
        setattr(self, ADAPTER_ATTRIBUTE, model)
        self.layers = layers
        self.main_output = main_output
        self.cache_argument = _cache_argument(model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                past: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache

        model = getattr(self, ADAPTER_ATTRIBUTE)
        cache = DynamicCache(config=getattr(model, "config", None))
        for index in range(self.layers):
            cache.update(past[2 * index], past[2 * index + 1], index)
        outputs = model(input_ids=input_ids, attention_mask=attention_mask,
                               use_cache=True, **{self.cache_argument: cache})
        present = _layer_tensors(_returned_cache(outputs))
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
    past = _layer_tensors(_returned_cache(outputs))
    main = "logits" if getattr(outputs, "logits", None) is not None else "last_hidden_state"
    batch, past_length = ids.shape[0], past[0][0].shape[-2]
    generator = torch.Generator().manual_seed(seed)
    step = {
        "input_ids": torch.randint(int(ids.min()), int(ids.max()) + 1, (batch, 1),
                                   generator=generator, dtype=ids.dtype),
        "attention_mask": torch.ones(batch, past_length + 1, dtype=torch.long),
        "past": tuple(t.detach().clone() for pair in past for t in pair),
    }
    axes = {"attention_mask": {1: f"{PAST_SEQUENCE}+1"}}
    axes.update({name: {2: PAST_SEQUENCE} for name in past_names(len(past))})
    return DecodingExport(
        adapter=DecodingStep(model, len(past), main).eval(),
        inputs=ModelInputs(kwargs=step),
        input_names=["input_ids", "attention_mask", *past_names(len(past))],
        output_names=[main, *present_names(len(past))],
        dynamic_axes=axes,
    )
