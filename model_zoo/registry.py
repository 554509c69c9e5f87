"""The zoo registry: entries declare how to build a model and its inputs.

An entry is a builder function decorated with :func:`zoo_entry`; the
decorator records its name, family, kind, tiers, input generator and parity
tolerance.  Builders construct models from configs with seeded random
weights, never from downloads, so the zoo runs offline.  Users can register
their own entries from any Python file the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from model_zoo.weights import randomize_parameters
from modelexport.input_generation.from_signature import generate_inputs

TIERS = ("tiny", "full")
PRETRAINED = "pretrained"
WIDE = "wide"  # generated: every architecture of the installed transformers
IDIOMS = "idioms"  # plain PyTorch shapes users write
ALL_TIERS = (*TIERS, WIDE, IDIOMS)
KINDS = ("cnn", "transformer", "custom", "idiom")
# How a zoo model's weights are set.  ``native``: the model's own initialisation,
# as ``from_config`` or ``save_pretrained`` leaves it (zero biases, LayerNorm
# ones: many tensors of equal content), which is what users export.
# ``seeded``: seeded noise added to every tensor, so each one's content is
# unique and content matching is unambiguous.
SEEDED, NATIVE = "seeded", "native"
# The task of entries exported with their cache and decoded (ZooEntry.task).
GENERATION = "text-generation-with-past"
SEQ2SEQ_GENERATION = "text2text-generation-with-past"  # an encoder file and a decoder file
GENERATION_TASKS = (GENERATION, SEQ2SEQ_GENERATION)
WEIGHT_MODES = (SEEDED, NATIVE)
# A model run with native weights is named ``ENTRY@native`` in the matrix, so
# results, expectations and the scoreboard carry the mode in the model's name.
MODE_SEPARATOR = "@"


def with_weights(name: str, weights: str) -> str:
    """The matrix name of entry ``name`` under ``weights`` (seeded keeps the plain name)."""
    return name if weights == SEEDED else f"{name}{MODE_SEPARATOR}{weights}"


def split_weights(name: str) -> tuple[str, str]:
    """(entry name, weight mode) of a matrix name; an unknown mode is one clear line."""
    entry, _, mode = name.partition(MODE_SEPARATOR)
    mode = mode or SEEDED
    if mode not in WEIGHT_MODES:
        raise KeyError(f"unknown weight mode {mode!r} in {name!r} "
                       f"(known: {', '.join(WEIGHT_MODES)})")
    return entry, mode

InputMaker = Callable[[torch.nn.Module, str, int], Any]


def hf_inputs(model: torch.nn.Module, tier: str, seed: int) -> Any:
    """Inputs derived from a Hugging Face config (see ``generate_inputs``)."""
    return generate_inputs(model, batch_size=1, sequence_length=128 if tier == "full" else 16,
                           seed=seed)


def hub_reachable(repo_id: str, timeout: float = 10.0) -> str | None:
    """None when the hub answers for ``repo_id``; otherwise why not, in one line."""
    from huggingface_hub import HfApi

    from modelexport.errors import one_line

    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except Exception as exc:
        return f"{type(exc).__name__}: {one_line(exc, 160)}"
    return None


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    kind: str
    builder: Callable[[str], torch.nn.Module]
    make_inputs: InputMaker
    tiers: tuple[str, ...] = TIERS
    atol: float = 1e-4
    rtol: float = 1e-3
    notes: str = ""
    pretrained: str | None = None  # hub id of a checkpoint of this family
    category: str = ""  # scoreboard family: decoder, encoder, vision, ... (default: kind)
    # the family read off the built model, where the entry cannot know it before
    categorize: Callable[[torch.nn.Module], str] | None = None
    weights: str = SEEDED  # one of WEIGHT_MODES: how ``build`` leaves the parameters
    # one of GENERATION_TASKS: exported with its key/value cache and checked by
    # a greedy decode in ONNX Runtime against ``generate`` (``harness.decoding``)
    task: str = ""

    @property
    def export_options(self) -> dict[str, Any]:
        """What the entry's export is asked beyond the defaults (its task, as data)."""
        return {"with_past": True} if self.task in GENERATION_TASKS else {}

    @property
    def group(self) -> str:
        return self.category or self.kind

    def build(self, tier: str = "tiny", seed: int = 0) -> torch.nn.Module:
        """The model in eval mode, its parameters as ``weights`` says (``WEIGHT_MODES``).

        The ``pretrained`` tier loads the entry's hub checkpoint instead (real
        weights, left as they are); it needs the hub to be reachable.
        """
        if tier == PRETRAINED:
            if self.pretrained is None:
                raise ValueError(f"zoo entry {self.name!r} has no pretrained checkpoint")
            from modelexport.sources import load_model

            return load_model(self.pretrained).model.eval()
        if tier not in self.tiers:
            raise ValueError(f"zoo entry {self.name!r} has no {tier!r} tier "
                             f"(it has: {', '.join(self.tiers)})")
        torch.manual_seed(seed)
        model = self.builder(tier).eval()
        if self.weights == SEEDED:
            randomize_parameters(model, seed=seed)
        return model

    def inputs(self, model: torch.nn.Module, tier: str = "tiny", seed: int = 0) -> Any:
        return self.make_inputs(model, tier, seed)

    def probe(self, tier: str) -> Probe:
        """Build the entry and run it eagerly once: can it be exported at all, and if not, why."""
        from modelexport.errors import one_line
        from modelexport.inputs import ModelInputs, run_checked

        try:
            model = self.build(tier)
            inputs = ModelInputs.from_user(self.inputs(model, tier))
            run_checked(model, inputs)
        except Exception as exc:
            return Probe(runs=False, reason=f"{type(exc).__name__}: {one_line(exc, 200)}")
        family = self.categorize(model) if self.categorize is not None else self.group
        return Probe(runs=True, parameters=sum(p.numel() for p in model.parameters()),
                     inputs=inputs.describe(), family=family)


@dataclass(frozen=True)
class Probe:
    """Whether a zoo entry builds and runs eagerly; the reason when it does not."""

    runs: bool
    reason: str = ""
    parameters: int = 0
    inputs: str = ""
    family: str = ""  # the scoreboard family, read off the built model where needed


_ENTRIES: dict[str, ZooEntry] = {}


def register_entry(name: str, family: str, kind: str,
                   builder: Callable[[str], torch.nn.Module], inputs: InputMaker = hf_inputs,
                   tiers: tuple[str, ...] = TIERS, atol: float = 1e-4, rtol: float = 1e-3,
                   notes: str = "", pretrained: str | None = None, category: str = "",
                   categorize: Callable[[torch.nn.Module], str] | None = None,
                   task: str = "") -> ZooEntry:
    """Add one entry; generated tiers call this directly, hand-written ones via the decorator."""
    if kind not in KINDS:
        raise ValueError(f"zoo entry kind must be one of {KINDS}, not {kind!r}")
    if name in _ENTRIES:
        raise ValueError(f"zoo entry {name!r} is already registered")
    entry = ZooEntry(name, family, kind, builder, inputs, tiers, atol, rtol, notes, pretrained,
                     category, categorize, task=task)
    _ENTRIES[name] = entry
    return entry


def zoo_entry(name: str, family: str, kind: str, inputs: InputMaker = hf_inputs,
              tiers: tuple[str, ...] = TIERS, atol: float = 1e-4, rtol: float = 1e-3,
              notes: str = "", pretrained: str | None = None, category: str = "",
              generation: bool = False,
              ) -> Callable[[Callable[[str], torch.nn.Module]], Callable]:
    """Register the decorated ``builder(tier) -> nn.Module`` as a zoo entry.

    ``generation`` registers a second entry, ``<name>-with-past``, that
    exports the model with its cache and checks a greedy decode.
    """

    def register(builder: Callable[[str], torch.nn.Module]) -> Callable:
        register_entry(name, family, kind, builder, inputs, tiers, atol, rtol, notes, pretrained,
                       category)
        if generation:
            register_entry(f"{name}-with-past", family, kind, builder, inputs, tiers, atol,
                           rtol, f"{notes}; exported with its cache, decoded", None,
                           "generation", task=GENERATION)
        return builder

    return register


def entries(tier: str | None = None) -> list[ZooEntry]:
    if tier == PRETRAINED:
        return [e for e in _ENTRIES.values() if e.pretrained]
    return [e for e in _ENTRIES.values() if tier is None or tier in e.tiers]


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name`` (``ENTRY@native``: with native weights).

    An unknown name is one line with the nearest names.

    With the wide tier the zoo holds hundreds of entries, too many to list in an error.
    """
    base, weights = split_weights(name)
    try:
        entry = _ENTRIES[base]
        return entry if weights == SEEDED else replace(entry, weights=weights)
    except KeyError:
        close = difflib.get_close_matches(base, list(_ENTRIES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no zoo entry {name!r} ({len(_ENTRIES)} known, "
                       f"`modelexport zoo list` names them){hint}") from None
