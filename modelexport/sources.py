"""Where a model comes from: one resolver for the CLI's ``--model`` and the Python API.

A spec is, in this order:

1. ``SCHEME:...`` for a scheme an installed package registers under the
   ``modelexport.model_sources`` entry point: ``zoo:NAME[:TIER]``, a
   model-zoo entry built offline with its own example inputs, is the
   project's own (``model_zoo.source``);
2. ``pkg.module:function`` or ``path/to/file.py:function``: a factory returning
   an ``nn.Module`` or ``(nn.Module, example_inputs)``;
3. a local folder written by ``save_pretrained`` (config.json inside);
4. a Hugging Face hub id, which needs the hub to be reachable.

``trust_remote_code`` stays off unless the user asks for it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelexport.errors import ModelLoadError, one_line

__all__ = ["LoadedModel", "load_model"]

# Task names users pass to --task, and the transformers Auto class for each.
TASK_AUTO_CLASSES: dict[str, str] = {
    "feature-extraction": "AutoModel",
    "fill-mask": "AutoModelForMaskedLM",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "text-generation": "AutoModelForCausalLM",
    # one decoding step, past key/values in and present key/values out (see capture/with_past.py)
    "text-generation-with-past": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    # an encoder file and a decoder file with its cache (see capture/seq2seq_past.py)
    "text2text-generation-with-past": "AutoModelForSeq2SeqLM",
    "image-classification": "AutoModelForImageClassification",
    "audio-classification": "AutoModelForAudioClassification",
}
# Tasks that export one decoding step with its cache (``with_past=True``).
WITH_PAST_TASKS = frozenset({"text-generation-with-past", "text2text-generation-with-past"})

# Packages add ``--model`` schemes here (``zoo = "model_zoo.source:load_zoo_entry"``).
SOURCE_ENTRY_POINTS = "modelexport.model_sources"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    """A model ready to export, with example inputs when its source provided them."""

    model: torch.nn.Module
    inputs: Any = None
    source: str = ""
    task: str | None = None


@functools.lru_cache(maxsize=1)
def _registered_sources() -> dict[str, importlib.metadata.EntryPoint]:
    """Scheme -> its loader's entry point, from the installed packages' metadata."""
    return {point.name: point
            for point in importlib.metadata.entry_points(group=SOURCE_ENTRY_POINTS)}


def load_model(spec: str, task: str | None = None, trust_remote_code: bool = False,
               ) -> LoadedModel:
    """Resolve ``spec`` (see module doc) to a model; every failure is one clear line."""
    scheme = spec.split(":", 1)[0]
    if ":" in spec and scheme in _registered_sources():
        return _registered_sources()[scheme].load()(spec)
    if task is not None and task not in TASK_AUTO_CLASSES:
        known = ", ".join(TASK_AUTO_CLASSES)
        raise ModelLoadError(f"unknown task {task!r} (known: {known})")
    path = Path(spec).expanduser()
    if ":" in spec and not path.exists():
        return _load_factory(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} has no config.json; is it a save_pretrained folder?")
        return _load_pretrained(str(path), task, trust_remote_code, local=True)
    if path.exists():
        raise ModelLoadError(f"{spec} is a file; pass a model folder, a hub id or pkg.mod:factory")
    if spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        raise ModelLoadError(f"no model folder at {spec}")
    return _load_pretrained(spec, task, trust_remote_code, local=False)


def _load_factory(spec: str) -> LoadedModel:
    target, _, attribute = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            module_spec = importlib.util.spec_from_file_location(Path(target).stem, target)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot import {target}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        factory = getattr(module, attribute)
    except (ImportError, AttributeError, FileNotFoundError, SyntaxError) as exc:
        raise ModelLoadError(f"cannot load factory {spec}: {one_line(exc)}") from None
    try:
        made = factory()
    except Exception as exc:
        raise ModelLoadError(f"factory {spec} raised {type(exc).__name__}: {one_line(exc)}") \
            from None
    inputs = None
    if isinstance(made, tuple) and len(made) == 2:
        made, inputs = made
    if not isinstance(made, torch.nn.Module):
        raise ModelLoadError(
            f"factory {spec} returned {type(made).__name__}, not a torch.nn.Module"
        )
    return LoadedModel(model=made, inputs=inputs, source=spec)


def _load_pretrained(spec: str, task: str | None, trust_remote_code: bool, local: bool,
                     ) -> LoadedModel:
    import transformers

    where = "folder" if local else "hub id"
    try:
        config = transformers.AutoConfig.from_pretrained(
            spec, trust_remote_code=trust_remote_code, local_files_only=local
        )
        model_class = _model_class_for(config, task, transformers)
        model = model_class.from_pretrained(
            spec, trust_remote_code=trust_remote_code, local_files_only=local
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        hint = "" if local else " (is the hub reachable? a save_pretrained folder works offline)"
        raise ModelLoadError(
            f"cannot load {where} {spec}: {type(exc).__name__}: {one_line(exc, 200)}{hint}"
        ) from None
    return LoadedModel(model=model, source=spec, task=task)


def _model_class_for(config: Any, task: str | None, transformers: Any) -> Any:
    """The Auto class for ``task``, else the architecture named in the config."""
    if task is not None:
        return getattr(transformers, TASK_AUTO_CLASSES[task])
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModel
