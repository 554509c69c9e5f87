"""Exporting an encoder-decoder for generation: an encoder file and a decoder-with-past file.

A sequence-to-sequence runtime reads the source once and then calls the
decoder once per new token with the keys and values of the tokens it has
written.  ``with_past=True`` on an encoder-decoder therefore writes two
files, named the way Optimum names their inputs and outputs:

- the encoder (``<name>.encoder.onnx``): ``input_ids``, ``attention_mask``
  (``batch x encoder_sequence``) -> ``last_hidden_state``;
- the decoder with its past (the file asked for): ``input_ids``
  (``batch x decoder_sequence``: the start token, or the tokens just
  chosen), ``encoder_hidden_states``, ``encoder_attention_mask``, and
  ``past_key_values.{i}.decoder.key`` / ``.value`` (``batch x heads x
  past_sequence x head_dim``, empty for the first step) -> ``logits`` and
  ``present.{i}.decoder.key`` / ``.value``.

The decoder file serves the first step and every later one.  It recomputes
the cross-attention keys and values from ``encoder_hidden_states`` at every
step instead of carrying them as a second cache: one file instead of two
decoders, at the cost of two projections of the source per step.  Both
files are captured through adapters whose only child is the user's model,
so tags keep the model's own module paths (``encoder.block.0``,
``decoder.layers.1.encoder_attn``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from modelexport.capture.request import ADAPTER_ATTRIBUTE
from modelexport.capture.with_past import (
    CacheLayout,
    DecodingExport,
    _cache_argument,
    _returned_cache,
    cache_layout,
    first_runnable_step,
)
from modelexport.errors import InputMismatchError, one_line
from modelexport.inputs import ModelInputs

ENCODER_SEQUENCE = "encoder_sequence"
DECODER_SEQUENCE = "decoder_sequence"
ENCODER_SUFFIX = ".encoder.onnx"
# The decoder's own prefill for the capture's example: the start token and
# this many more, so that the past it leaves is not empty.
_PREFILL_TOKENS = 3


def is_encoder_decoder(model: torch.nn.Module) -> bool:
    config = getattr(model, "config", None)
    return bool(getattr(config, "is_encoder_decoder", False)) and hasattr(model, "get_encoder")


def decoder_start_token(model: torch.nn.Module) -> int:
    """The token every decoder sequence starts with, as ``generate`` takes it."""
    for source in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        for name in ("decoder_start_token_id", "bos_token_id", "pad_token_id"):
            value = getattr(source, name, None)
            if isinstance(value, int):
                return value
    raise InputMismatchError("with_past: the model's config names no decoder_start_token_id")


def _encode(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
            ) -> Any:
    return model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)


class EncoderPart(torch.nn.Module):
    """``forward(input_ids, attention_mask)`` -> the encoder's last hidden state."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        setattr(self, ADAPTER_ATTRIBUTE, model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return _encode(getattr(self, ADAPTER_ATTRIBUTE), input_ids, attention_mask)[0]


class DecoderStep(torch.nn.Module):
    """``forward(input_ids, encoder_hidden_states, encoder_attention_mask, past)``
    -> logits and the decoder's new self-attention cache (module doc)."""

    def __init__(self, model: torch.nn.Module, layout: CacheLayout,
                 encoder_output: type) -> None:
        super().__init__()
        setattr(self, ADAPTER_ATTRIBUTE, model)
        self.layout = layout
        self.cache_argument = _cache_argument(model)
        # the class the model's encoder returns: some decoders read more of it
        # than the hidden state (a mixture of experts' router logits), and find
        # None where the file has nothing to give
        self.encoder_output = encoder_output

    def forward(self, input_ids: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_attention_mask: torch.Tensor,
                past: tuple[torch.Tensor, ...] = ()) -> tuple[torch.Tensor, ...]:
        from transformers import DynamicCache, EncoderDecoderCache

        model = getattr(self, ADAPTER_ATTRIBUTE)
        config = getattr(model, "config", None)
        # An empty cross-attention cache: every step projects the source afresh.
        cache = EncoderDecoderCache(self.layout.rebuild(past, config),
                                    DynamicCache(config=config))
        encoded = self.encoder_output(last_hidden_state=encoder_hidden_states)
        outputs = model(encoder_outputs=encoded,
                        attention_mask=encoder_attention_mask, decoder_input_ids=input_ids,
                        use_cache=True, **{self.cache_argument: cache})
        returned = _returned(outputs)
        return (outputs.logits, *self.layout.tensors(returned.self_attention_cache))


def _returned(outputs: Any) -> Any:
    from transformers import EncoderDecoderCache

    cache = _returned_cache(outputs)
    if not isinstance(cache, EncoderDecoderCache):
        raise InputMismatchError(f"with_past: the model returned a {type(cache).__name__}, "
                                 "not an encoder-decoder cache")
    return cache


def encoder_part(model: torch.nn.Module, example: ModelInputs) -> DecodingExport:
    """The encoder's adapter and example: the caller's ``input_ids`` and mask."""
    ids, mask = _source(example)
    return DecodingExport(
        adapter=EncoderPart(model).eval(),
        inputs=ModelInputs(kwargs={"input_ids": ids, "attention_mask": mask}),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": {1: ENCODER_SEQUENCE},
                      "attention_mask": {1: ENCODER_SEQUENCE}},
    )


def decoder_step(model: torch.nn.Module, example: ModelInputs, seed: int = 0,
                 ) -> DecodingExport:
    """The decoder's adapter and a later-step example made from the caller's source.

    The source is encoded once, the decoder reads the start token and
    ``_PREFILL_TOKENS`` more with the cache on (and once one token shorter,
    to read the cache's layout), and that cache is the example's past.
    """
    if not is_encoder_decoder(model):
        raise InputMismatchError(f"with_past: {type(model).__name__} is not an encoder-decoder "
                                 "(its config's is_encoder_decoder is false)")
    ids, mask = _source(example)
    start = decoder_start_token(model)
    generator = torch.Generator().manual_seed(seed)
    vocab_top = int(ids.max()) + 1
    batch = ids.shape[0]

    def tokens(count: int) -> torch.Tensor:
        return torch.randint(int(ids.min()), vocab_top, (batch, count), generator=generator,
                             dtype=ids.dtype)

    prompt = torch.cat([torch.full((batch, 1), start, dtype=ids.dtype),
                        tokens(_PREFILL_TOKENS)], dim=1)
    try:
        with torch.no_grad():
            encoded = _encode(model, ids, mask)
            hidden = encoded[0]
            encoded = type(encoded)(last_hidden_state=hidden)
            longer = _returned(model(encoder_outputs=encoded, attention_mask=mask,
                                     decoder_input_ids=prompt, use_cache=True))
            shorter = _returned(model(encoder_outputs=encoded, attention_mask=mask,
                                      decoder_input_ids=prompt[:, :-1], use_cache=True))
    except InputMismatchError:
        raise
    except Exception as exc:
        raise InputMismatchError(f"with_past: the model does not run its decoder with "
                                 f"use_cache=True: {one_line(exc)}") from None
    own = cache_layout(longer.self_attention_cache, shorter.self_attention_cache)
    layout = CacheLayout([tuple(replace(state, name=f"decoder.{state.name}") for state in layer)
                          for layer in own.states], own.flags)
    adapter = DecoderStep(model, layout, type(encoded)).eval()
    past = tuple(t.detach().clone() for t in layout.tensors(longer.self_attention_cache))
    step = _runnable_step(adapter, tokens, hidden, mask, past)
    axes: dict[str, dict[int, str]] = {
        "input_ids": {1: DECODER_SEQUENCE},
        "encoder_hidden_states": {1: ENCODER_SEQUENCE},
        "encoder_attention_mask": {1: ENCODER_SEQUENCE},
        **layout.past_axes(),
    }
    return DecodingExport(
        adapter=adapter,
        inputs=ModelInputs(kwargs=step),
        input_names=["input_ids", "encoder_hidden_states", "encoder_attention_mask",
                     *layout.past_names()],
        output_names=["logits", *layout.present_names()],
        dynamic_axes=axes,
        settings={"decoder_start_token_id": start},
    )


def _source(example: ModelInputs) -> tuple[torch.Tensor, torch.Tensor]:
    ids = example.kwargs.get("input_ids")
    if example.args or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise InputMismatchError("with_past needs keyword inputs with 2-D input_ids (the "
                                 "encoder's source)")
    mask = example.kwargs.get("attention_mask")
    return ids, mask if isinstance(mask, torch.Tensor) else torch.ones_like(ids)


def _runnable_step(adapter: DecoderStep, tokens: Any, hidden: torch.Tensor,
                   mask: torch.Tensor, past: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """``NEW_TOKENS`` new decoder tokens after ``past``, or one where the model takes one."""
    return first_runnable_step(adapter, lambda new: {
        "input_ids": tokens(new), "encoder_hidden_states": hidden.clone(),
        "encoder_attention_mask": mask, "past": tuple(t.clone() for t in past)}, "the decoder")


def encoder_path_for(decoder_path: Path) -> Path:
    """Where the encoder file goes beside the decoder file ``decoder_path``."""
    return decoder_path.with_name(decoder_path.name.removesuffix(".onnx") + ENCODER_SUFFIX)

