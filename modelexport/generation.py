"""Greedy generation with ONNX Runtime alone, on a file exported with ``with_past=True``.

The file takes a prompt of any length with an empty past, or new tokens
with the past it returned (``capture.with_past``), so one session serves
the whole decode: the prompts are left-padded into one batch, the first run
reads them whole with an empty cache, and each later run feeds the tokens
just chosen with the cache the previous run returned.  Positions are
counted from each row's first real token, and a row that has produced the
end-of-sequence token is padded from then on, as transformers' greedy
``generate`` does, so the tokens can be compared with it one for one.

An encoder-decoder's pair (``capture.seq2seq_past``) runs the same way:
the encoder file reads the padded prompts once, and the decoder file
starts every row from the start token with an empty past, reading the
encoder's states and mask at every step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelexport.capture.seq2seq_past import encoder_path_for
from modelexport.capture.with_past import PAST_SEQUENCE
from modelexport.errors import InputMismatchError
from modelexport.onnx_runtime.sessions import ort_call
from modelexport.output.files import sidecar_path_for

PAST_PREFIX = "past_key_values."
PRESENT_PREFIX = "present."
ENCODER_STATES = "encoder_hidden_states"  # an encoder-decoder's decoder file takes it
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(double)": np.float64}


@dataclass
class Generation:
    """New tokens per prompt (``batch x new``) and the logits each step chose them from."""

    tokens: np.ndarray
    step_logits: list[np.ndarray] = field(default_factory=list)  # each batch x vocab

    def as_lists(self) -> list[list[int]]:
        return [[int(t) for t in row] for row in self.tokens]


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask of ``prompts`` as one left-padded batch."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputMismatchError("every prompt needs at least one token")
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        mask[row, width - len(prompt):] = 1
    return ids, mask


def greedy_generate(source: str | Path | Any, prompts: Sequence[Sequence[int]],
                    max_new_tokens: int, pad_id: int = 0,
                    eos_id: int | None = None, encoder: str | Path | Any | None = None,
                    decoder_start_id: int | None = None) -> Generation:
    """Decode ``max_new_tokens`` greedily for every prompt at once (module doc).

    ``source`` is the file's path or an ONNX Runtime session on it.  For an
    encoder-decoder's decoder file (it takes ``encoder_hidden_states``) the
    prompts are the source text: ``encoder`` is the encoder's file or
    session (by default the ``.encoder.onnx`` beside ``source``) and
    ``decoder_start_id`` the token every output starts from (by default the
    one the export recorded in the file's sidecar).
    """
    session = _session(source)
    inputs = {i.name: i for i in session.get_inputs()}
    pasts = [name for name in inputs if name.startswith(PAST_PREFIX)]
    if "input_ids" not in inputs or not pasts:
        raise InputMismatchError(
            "this file takes no key/value cache (input_ids and past_key_values.*): export "
            "it with with_past=True (--task text-generation-with-past)")
    seq2seq = ENCODER_STATES in inputs
    if not seq2seq and "attention_mask" not in inputs and len({len(p) for p in prompts}) > 1:
        raise InputMismatchError(
            "this file takes no attention_mask, so prompts of unequal length cannot share a "
            "padded batch: decode them one at a time")
    outputs = [o.name for o in session.get_outputs()]
    presents = {name.replace(PRESENT_PREFIX, PAST_PREFIX, 1): index
                for index, name in enumerate(outputs) if name.startswith(PRESENT_PREFIX)}
    ids, mask = left_padded(prompts, pad_id)
    batch = ids.shape[0]
    past = {name: _empty_past(inputs[name], batch) for name in pasts}
    if seq2seq:
        fixed = {ENCODER_STATES: _encoded(source, encoder, ids, mask),
                 "encoder_attention_mask": mask}
        start = decoder_start_id if decoder_start_id is not None else _recorded_start(source)
        step_ids = np.full((batch, 1), start, dtype=np.int64)
    else:
        fixed, step_ids = {}, ids
    finished = np.zeros(batch, dtype=bool)
    chosen: list[np.ndarray] = []
    logits_per_step: list[np.ndarray] = []
    for _ in range(max_new_tokens):
        feed = {"input_ids": step_ids, **fixed, **past}
        if "attention_mask" in inputs:  # a graph that never reads the mask has no such input
            feed["attention_mask"] = mask
        if "position_ids" in inputs:
            positions = np.where(mask == 1, np.cumsum(mask, axis=-1) - 1, 0)
            feed["position_ids"] = positions[:, -step_ids.shape[1]:].astype(np.int64)
        results = ort_call("run the decoding step", lambda feed=feed: session.run(None, feed))
        logits = results[0][:, -1, :]
        next_tokens = logits.argmax(axis=-1).astype(np.int64)
        next_tokens = np.where(finished, pad_id, next_tokens)
        if eos_id is not None:
            finished |= next_tokens == eos_id
        chosen.append(next_tokens)
        logits_per_step.append(logits)
        past = {name: results[presents[name]] for name in pasts}
        step_ids = next_tokens[:, None]
        if not seq2seq:
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
    return Generation(np.stack(chosen, axis=1), logits_per_step)


def _encoded(source: str | Path | Any, encoder: str | Path | Any | None, ids: np.ndarray,
             mask: np.ndarray) -> np.ndarray:
    """The encoder's last hidden state for the padded prompts."""
    if encoder is None:
        if not isinstance(source, (str, Path)):
            raise InputMismatchError("an encoder-decoder's decoder session needs its encoder: "
                                     "pass encoder= (a file or a session)")
        encoder = encoder_path_for(Path(source))
    session = _session(encoder)
    feed = {"input_ids": ids, "attention_mask": mask}
    names = {i.name for i in session.get_inputs()}
    return ort_call("run the encoder", lambda: session.run(
        ["last_hidden_state"], {k: v for k, v in feed.items() if k in names}))[0]


def _recorded_start(source: str | Path | Any) -> int:
    """The decoder start token the export wrote into the file's sidecar."""
    start = None
    if isinstance(source, (str, Path)):
        try:
            sidecar = json.loads(sidecar_path_for(Path(source)).read_text())
            start = sidecar["settings"]["decoder_start_token_id"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if not isinstance(start, int):
        raise InputMismatchError("no decoder start token: the file's sidecar records none; "
                                 "pass decoder_start_id (--decoder-start-id)")
    return start


def _session(source: str | Path | Any) -> Any:
    if hasattr(source, "run") and hasattr(source, "get_inputs"):
        return source
    from modelexport.onnx_runtime.sessions import open_session

    path = Path(source)
    if not path.is_file():
        raise InputMismatchError(f"no ONNX file at {path}")
    return ort_call(f"load {path}", lambda: open_session(path))


def _empty_past(value: Any, batch: int) -> np.ndarray:
    """A past of length zero for one cache input: its ``past_sequence`` axis empty.

    Keys and values are ``batch x heads x past_sequence x head_dim``; other
    per-token state (an indexer's keys) has its own rank: every axis but
    the batch and the past is fixed by the file.
    """
    shape = list(value.shape)
    axes = [i for i, d in enumerate(shape) if d == PAST_SEQUENCE]
    fixed = all(isinstance(d, int) for i, d in enumerate(shape) if i not in (0, *axes))
    if len(axes) != 1 or axes[0] == 0 or not fixed:
        raise InputMismatchError(f"cache input {value.name} has shape {shape}; expected a "
                                 f"batch axis, one {PAST_SEQUENCE} axis and fixed sizes "
                                 "otherwise")
    dtype = _NUMPY_TYPES.get(value.type)
    if dtype is None:
        raise InputMismatchError(f"cache input {value.name} is {value.type}, not a float")
    shape[0], shape[axes[0]] = batch, 0
    return np.zeros(shape, dtype=dtype)
