"""Example inputs for a Hugging Face model, from its forward signature and config.

Every input that a model's ``forward`` names is looked up in one table of
generators keyed by parameter name (``input_ids``, ``pixel_values``,
``input_features`` ...), each reading the sizes it needs from the config or
its nested ``text_config`` / ``vision_config`` / ``audio_config``.  Optional
parameters are produced only when they carry the model's main input (ids,
pixels, audio) or are its usual companions (an attention mask); a *required*
parameter that no generator knows is a clear error naming it.  Nothing here
names a model family, so a new architecture is covered as soon as its
inputs are named like everybody else's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from modelexport.errors import InputMismatchError
from modelexport.inputs import ModelInputs, run_checked, without_unrequested_cache

# Main inputs, in order of preference: a model gets the first family it accepts.
TEXT_INPUT = "input_ids"
VISION_INPUTS = ("pixel_values",)
AUDIO_INPUTS = ("input_features", "input_values")


@dataclass
class Sizes:
    """What the generators need to know, read once from the config."""

    config: Any
    batch: int
    sequence: int
    generator: torch.Generator

    def sub(self, *names: str) -> Any:
        """The first nested config among ``names`` (``vision_config``...), else the config."""
        for name in names:
            nested = getattr(self.config, name, None)
            if nested is not None and not isinstance(nested, (dict, str, int)):
                return nested
        return self.config


def _int(value: Any, default: int) -> int:
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("height") or value.get("shortest_edge") or next(iter(value.values()))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else default


def text_length(sizes: Sizes) -> int:
    """The requested length, stopped at the model's position limit (CLIP's text stops at 77)."""
    text = sizes.sub("text_config")
    longest = getattr(text, "max_position_embeddings", None)
    if isinstance(longest, int) and longest > 0:
        return min(sizes.sequence, longest)
    return sizes.sequence


def _vocab(sizes: Sizes) -> int:
    text = sizes.sub("text_config", "decoder")
    return _int(getattr(text, "vocab_size", None), 0) or _int(
        getattr(sizes.config, "vocab_size", None), 2)


def _token_ids(sizes: Sizes, length: int) -> torch.Tensor:
    # Stay below the ids that configs reserve for special tokens at the top
    # of a shrunk vocabulary (image and audio placeholders).
    high = max(2, min(_vocab(sizes) - 8, 1000))
    return torch.randint(3, high, (sizes.batch, length), generator=sizes.generator)


def _input_ids(sizes: Sizes) -> torch.Tensor:
    return _token_ids(sizes, text_length(sizes))


def _decoder_input_ids(sizes: Sizes) -> torch.Tensor:
    return _token_ids(sizes, max(2, text_length(sizes) // 2))


def _attention_mask(sizes: Sizes) -> torch.Tensor:
    return torch.ones(sizes.batch, text_length(sizes), dtype=torch.long)


def _token_type_ids(sizes: Sizes) -> torch.Tensor:
    return torch.zeros(sizes.batch, text_length(sizes), dtype=torch.long)


def image_size(sizes: Sizes) -> int:
    vision = sizes.sub("vision_config", "backbone_config")
    return _int(getattr(vision, "image_size", None), 0) or _int(
        getattr(sizes.config, "image_size", None), 224)


def _pixel_values(sizes: Sizes) -> torch.Tensor:
    vision = sizes.sub("vision_config", "backbone_config")
    channels = _int(getattr(vision, "num_channels", None), 3)
    size = image_size(sizes)
    return torch.randn(sizes.batch, channels, size, size, generator=sizes.generator)


def _pixel_mask(sizes: Sizes) -> torch.Tensor:
    size = image_size(sizes)
    return torch.ones(sizes.batch, size, size, dtype=torch.long)


def _input_features(sizes: Sizes) -> torch.Tensor:
    audio = sizes.sub("audio_config", "encoder_config")
    bins = _int(getattr(audio, "num_mel_bins", None), 0) or _int(
        getattr(audio, "feature_size", None), 80)
    positions = _int(getattr(audio, "max_source_positions", None), 0)
    frames = 2 * positions if positions else 32
    return torch.randn(sizes.batch, bins, frames, generator=sizes.generator)


def _input_values(sizes: Sizes) -> torch.Tensor:
    return torch.randn(sizes.batch, 320 * sizes.sequence, generator=sizes.generator)


def _bbox(sizes: Sizes) -> torch.Tensor:
    length = text_length(sizes)
    corners = torch.randint(0, 500, (sizes.batch, length, 2), generator=sizes.generator)
    return torch.cat([corners, corners + 10], dim=-1)


GENERATORS: dict[str, Callable[[Sizes], torch.Tensor]] = {
    "input_ids": _input_ids,
    "attention_mask": _attention_mask,
    "token_type_ids": _token_type_ids,
    "decoder_input_ids": _decoder_input_ids,
    "pixel_values": _pixel_values,
    "pixel_mask": _pixel_mask,
    "input_features": _input_features,
    "input_values": _input_values,
    "bbox": _bbox,
}
# Optional inputs worth giving alongside the main one.
COMPANIONS = {"input_ids": ("attention_mask",)}


def forward_parameters(model: torch.nn.Module) -> list[inspect.Parameter]:
    """``forward``'s named parameters, without ``*args`` / ``**kwargs``."""
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p for p in params
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]


def _main_inputs(accepted: set[str], config: Any) -> list[str]:
    """Which primary inputs to give: text, and pixels or audio where the model takes them.

    Pixels go with text only for dual encoders; a model that splices image
    features into the text at placeholder tokens (it declares an
    ``image_token_id``) gets text alone, since its placeholders would have to
    match the image's patch count.
    """
    chosen = [TEXT_INPUT] if TEXT_INPUT in accepted else []
    splices = any(hasattr(config, k) for k in ("image_token_id", "image_token_index"))
    for name in VISION_INPUTS:
        if name in accepted and not (chosen and splices):
            chosen.append(name)
            break
    if not chosen:
        chosen += [name for name in AUDIO_INPUTS if name in accepted][:1]
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in accepted:
        chosen.append("decoder_input_ids")
    return chosen


def generate_inputs(model: torch.nn.Module, batch_size: int = 1, sequence_length: int = 16,
                    seed: int = 0) -> dict[str, Any]:
    """Keyword inputs for a Hugging Face model (see module doc)."""
    config = getattr(model, "config", None)
    if config is None:
        raise InputMismatchError(
            f"{type(model).__name__} has no Hugging Face config to derive inputs from; "
            "pass --input-specs FILE.json or return (model, inputs) from the factory")
    params = forward_parameters(model)
    accepted = {p.name for p in params}
    sizes = Sizes(config, batch_size, sequence_length,
                  torch.Generator().manual_seed(seed))
    wanted = _main_inputs(accepted, config)
    for name in list(wanted):
        wanted += [c for c in COMPANIONS.get(name, ()) if c in accepted]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    unknown = [name for name in required if name not in GENERATORS]
    if unknown:
        raise InputMismatchError(
            f"cannot generate the required input(s) {', '.join(unknown)} of "
            f"{type(model).__name__}; pass --input-specs FILE.json")
    order = [p.name for p in params]
    names = sorted(set(wanted) | set(required), key=order.index)
    if not names:
        raise InputMismatchError(
            f"cannot derive inputs for {type(model).__name__} from its config; "
            "pass --input-specs FILE.json")
    return {name: GENERATORS[name](sizes) for name in names}


def _variants(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """The generated inputs, then layouts other models of the same kind expect.

    Audio encoders disagree on feature layout: Whisper-style models take
    ``(batch, bins, frames)``, Conformer-style ones ``(batch, frames, bins)``.
    """
    variants = [inputs]
    features = inputs.get("input_features")
    if isinstance(features, torch.Tensor) and features.dim() == 3:
        variants.append({**inputs, "input_features": features.transpose(1, 2).contiguous()})
    return variants


def fitting_inputs(model: torch.nn.Module, batch_size: int = 1, sequence_length: int = 16,
                   seed: int = 0) -> dict[str, Any]:
    """:func:`generate_inputs`, checked by one eager forward, trying known layout variants.

    Raises the first variant's error as an :class:`InputMismatchError` when
    none runs, so the reason a model cannot be fed is the one a user sees.
    """
    first_error: InputMismatchError | None = None
    for candidate in _variants(generate_inputs(model, batch_size, sequence_length, seed)):
        call = ModelInputs.from_user(candidate)
        try:
            outputs = run_checked(model, call)
            call, dropped = without_unrequested_cache(model, call, outputs)
            if dropped:  # the export will call it this way: check that it runs so too
                run_checked(model, call)
        except InputMismatchError as exc:
            first_error = first_error or exc
            continue
        return candidate
    assert first_error is not None
    raise first_error
