"""The ``wide`` tier: every architecture of the installed transformers, generated.

Architectures come from transformers' own auto mapping (``MODEL_MAPPING_NAMES``:
one base model class per model type), so a new transformers release brings
its new architectures in without a line changed here.  Each is built from
its default config shrunk by :mod:`model_zoo.shrink`, with seeded weights,
and fed inputs generated from its forward signature
(:mod:`modelexport.input_generation.from_signature`).

The category (decoder, encoder, encoder-decoder, vision, audio, multimodal)
is read from the task mappings the model type appears in, again transformers'
own data.  ``OVERRIDES`` is the one place for per-architecture settings; each
entry says why a generic rule cannot serve.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from model_zoo.registry import GENERATION, SEQ2SEQ_GENERATION, WIDE, register_entry
from model_zoo.shrink import shrink_config

PREFIX = "hf-"
GENERATION_SUFFIX = "-with-past"
# a model type may be both a causal LM and an encoder-decoder (BART): two entries
SEQ2SEQ_GENERATION_SUFFIX = "-seq2seq-with-past"
MAX_PARAMETERS = 5_000_000  # the tier's size limit after shrinking

# Config settings that one architecture needs on top of the generic shrink,
# with the reason.  Keep it short: a rule that helps several architectures
# belongs in model_zoo/shrink.py instead.
OVERRIDES: dict[str, tuple[dict[str, Any], str]] = {}


@functools.lru_cache(maxsize=1)
def _mappings() -> Any:
    from transformers.models.auto import modeling_auto

    return modeling_auto


def architectures() -> dict[str, str]:
    """Model type -> base model class name, from transformers' auto mapping."""
    names = _mappings().MODEL_MAPPING_NAMES
    return {model_type: (cls if isinstance(cls, str) else cls[0])
            for model_type, cls in names.items()}


# Task mappings that decide a category, checked in this order.
_CATEGORY_MAPPINGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audio", ("MODEL_FOR_CTC_MAPPING_NAMES", "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES",
               "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
               "MODEL_FOR_AUDIO_XVECTOR_MAPPING_NAMES",
               "MODEL_FOR_AUDIO_FRAME_CLASSIFICATION_MAPPING_NAMES")),
    ("multimodal", ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
                    "MODEL_FOR_ZERO_SHOT_IMAGE_CLASSIFICATION_MAPPING_NAMES",
                    "MODEL_FOR_VISUAL_QUESTION_ANSWERING_MAPPING_NAMES",
                    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES")),
    ("encoder-decoder", ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",)),
    ("vision", ("MODEL_FOR_IMAGE_MAPPING_NAMES", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
                "MODEL_FOR_BACKBONE_MAPPING_NAMES", "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
                "MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES",
                "MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES",
                "MODEL_FOR_VIDEO_CLASSIFICATION_MAPPING_NAMES")),
    ("decoder", ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",)),
)
# "generation": the -with-past entries, exported with their cache and decoded
CATEGORIES = ("decoder", "encoder", "encoder-decoder", "vision", "audio", "multimodal",
              "generation")


def category(model_type: str) -> str:
    """Which family of the scoreboard a model type belongs to, by its task mappings.

    ``""`` for the many sub-models that no task mapping names
    (``clip_vision_model``, ``idefics3_vision``): :func:`category_of` then
    reads the built model instead.
    """
    mappings = _mappings()
    for name, tables in _CATEGORY_MAPPINGS:
        if any(model_type in getattr(mappings, table, {}) for table in tables):
            if name == "decoder" and model_type in mappings.MODEL_FOR_MASKED_LM_MAPPING_NAMES:
                return "encoder"
            return name
    return ""


def category_of(model: torch.nn.Module) -> str:
    """The family of a built model from what its forward takes, for unmapped types."""
    from modelexport.input_generation.from_signature import (
        AUDIO_INPUTS,
        TEXT_INPUT,
        VISION_INPUTS,
        forward_parameters,
    )

    accepted = {p.name for p in forward_parameters(model)}
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    vision = any(name in accepted for name in VISION_INPUTS)
    if vision:
        return "multimodal" if TEXT_INPUT in accepted else "vision"
    if any(name in accepted for name in AUDIO_INPUTS):
        return "audio"
    return "decoder" if getattr(config, "is_decoder", False) else "encoder"


def shrunk_config(model_type: str) -> Any:
    from transformers import AutoConfig

    config = shrink_config(AutoConfig.for_model(model_type))
    settings, _why = OVERRIDES.get(model_type, ({}, ""))
    for key, value in settings.items():
        setattr(config, key, value)
    return config


def build(model_type: str, class_name: str) -> torch.nn.Module:
    """The architecture at tiny size; refuses one over ``MAX_PARAMETERS`` before allocating."""
    import transformers

    cls = getattr(transformers, class_name)
    config = shrunk_config(model_type)
    with torch.device("meta"):
        try:
            skeleton = cls(config)
        except Exception:  # some __init__s compute on tensors; size them for real below
            skeleton = None
    if skeleton is not None:
        count = sum(p.numel() for p in skeleton.parameters())
        if count > MAX_PARAMETERS:
            raise ValueError(f"still {count / 1e6:.1f}M parameters after shrinking "
                             f"(limit {MAX_PARAMETERS / 1e6:.0f}M)")
    model = cls(config)
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise ValueError(f"still {count / 1e6:.1f}M parameters after shrinking")
    return model


def _categorizer(model_type: str) -> Callable[[torch.nn.Module], str]:
    known = category(model_type)

    def categorize(model: torch.nn.Module) -> str:
        return known or category_of(model)

    return categorize


def _builder(model_type: str, class_name: str) -> Callable[[str], torch.nn.Module]:
    def make(_tier: str) -> torch.nn.Module:
        return build(model_type, class_name)

    return make


def wide_inputs(model: torch.nn.Module, _tier: str, seed: int) -> dict[str, Any]:
    """Signature-driven inputs, checked by one eager run (see ``fitting_inputs``)."""
    from modelexport.input_generation.from_signature import fitting_inputs

    return fitting_inputs(model, batch_size=1, sequence_length=16, seed=seed)


def generation_inputs(model: torch.nn.Module, _tier: str, seed: int) -> dict[str, Any]:
    """A prompt for a causal LM; refused (the entry does not run) without a key/value cache.

    The architectures whose cache holds recurrent or convolution states, or
    that return none, are outside what a with-past export supports: their
    generation entries are not runnable, with that reason.
    """
    from modelexport.capture.with_past import prefill

    inputs = _prompt(model, seed)
    prefill(model, inputs)  # raises: a cache the file could not carry
    return inputs


def seq2seq_inputs(model: torch.nn.Module, _tier: str, seed: int) -> dict[str, Any]:
    """A source text for an encoder-decoder; refused (the entry does not run) where its
    decoder's cache cannot be carried (``capture.seq2seq_past``)."""
    from modelexport.capture.seq2seq_past import decoder_step
    from modelexport.inputs import ModelInputs

    inputs = _prompt(model, seed)
    decoder_step(model, ModelInputs(kwargs=inputs))  # raises: a decoder it cannot export
    return inputs


def _prompt(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = max(2, min(int(getattr(text, "vocab_size", 1000) or 1000), 1000))
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (1, 16), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def register_all() -> None:
    """One zoo entry per architecture, named ``hf-<model_type>``; per causal LM
    ``hf-<model_type>-with-past`` and per encoder-decoder LM
    ``hf-<model_type>-seq2seq-with-past``, exported with their cache and decoded."""
    for model_type, class_name in architectures().items():
        why = OVERRIDES.get(model_type, ({}, ""))[1]
        register_entry(
            name=PREFIX + model_type, family=model_type, kind="transformer",
            builder=_builder(model_type, class_name), inputs=wide_inputs, tiers=(WIDE,),
            category=category(model_type),
            categorize=_categorizer(model_type),
            notes=f"{class_name} from the shrunk default config" + (f"; {why}" if why else ""),
        )
    mappings = _mappings()
    generation = (
        (mappings.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, GENERATION_SUFFIX, generation_inputs,
         GENERATION, "exported with its cache and decoded"),
        (mappings.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES, SEQ2SEQ_GENERATION_SUFFIX,
         seq2seq_inputs, SEQ2SEQ_GENERATION,
         "exported as an encoder and a decoder with its cache, and decoded"),
    )
    for mapping, suffix, inputs, task, how in generation:
        for model_type, class_name in mapping.items():
            class_name = class_name if isinstance(class_name, str) else class_name[0]
            register_entry(
                name=f"{PREFIX}{model_type}{suffix}", family=model_type, kind="transformer",
                builder=_builder(model_type, class_name), inputs=inputs, tiers=(WIDE,),
                category="generation", task=task,
                notes=f"{class_name} from the shrunk default config, {how}",
            )
