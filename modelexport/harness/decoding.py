"""The zoo's decode check: a with-past file generates what PyTorch generates.

Two prompts of unequal length, one batch, eight new tokens, greedy:
``modelexport.generation.greedy_generate`` with ONNX Runtime alone against
transformers' own ``generate``.  The tokens must be the same and every
step's logits within the entry's tolerance.  Where the two first choose
different tokens, PyTorch's own top two logits at that step are compared:
if they are closer than the tolerance the choice is a tie that float
rounding may break either way, not a defect of the file, and the check
passes saying so; otherwise it fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import GenerationConfig

from modelexport.capture.seq2seq_past import decoder_start_token, is_encoder_decoder
from modelexport.generation import greedy_generate, left_padded
from modelexport.onnx_runtime.comparison import max_abs_difference, output_scale

NEW_TOKENS = 8
PROMPT_LENGTHS = (7, 4)
PAD_ID = 0


@dataclass
class DecodeCheck:
    passed: bool
    detail: str = ""
    max_logit_diff: float = 0.0


def decode_check(model: torch.nn.Module, path: Path, atol: float, rtol: float,
                 seed: int = 3) -> DecodeCheck:
    """Greedy decode of ``NEW_TOKENS`` for two prompts, ONNX Runtime vs ``generate``."""
    vocab = _vocabulary(model)
    generator = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(1, vocab, (n,), generator=generator).tolist()
               for n in PROMPT_LENGTHS]
    ids, mask = left_padded(prompts, PAD_ID)
    # A plain greedy configuration in place of the model's own, which may force
    # tokens (BART's end-of-sequence at the last step) or penalise repeats:
    # that is generate's policy, not the model, and generate merges a passed
    # configuration with the model's, so the model's is swapped for the call.
    own = model.generation_config
    start = ({"decoder_start_token_id": decoder_start_token(model)}
             if is_encoder_decoder(model) else {})
    model.generation_config = GenerationConfig(
        max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
        pad_token_id=PAD_ID, eos_token_id=None, **start)
    try:
        with torch.no_grad():
            reference = model.generate(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                output_logits=True, return_dict_in_generate=True)
    finally:
        model.generation_config = own
    # a decoder-only model's sequences begin with the prompt, an encoder-decoder's
    # with the start token
    expected = reference.sequences[:, 1 if start else ids.shape[1]:].numpy()
    scores = [s.float().numpy() for s in reference.logits]
    got = greedy_generate(path, prompts, NEW_TOKENS, pad_id=PAD_ID)
    worst = 0.0
    for step, (ours, theirs) in enumerate(zip(got.step_logits, scores)):
        # the tokens so far are the same: a step that chose another one returns
        difference = max_abs_difference(ours, theirs)
        worst = max(worst, difference)
        tolerance = atol + rtol * output_scale(theirs)
        if difference > tolerance:
            return DecodeCheck(False, f"step {step}: logits differ by {difference:.2e} "
                               f"(tolerance {tolerance:.2e})", worst)
        differing = np.nonzero(got.tokens[:, step] != expected[:, step])[0]
        if differing.size:
            row = int(differing[0])
            top = np.sort(theirs[row])[-2:]
            if top[1] - top[0] <= tolerance:
                return DecodeCheck(True, f"step {step}, row {row}: a tie within the tolerance "
                                   "chose another token; compared up to there", worst)
            return DecodeCheck(False, f"step {step}, row {row}: token "
                               f"{int(got.tokens[row, step])} vs {int(expected[row, step])}",
                               worst)
    return DecodeCheck(True, "", worst)


def _vocabulary(model: torch.nn.Module) -> int:
    """How many token ids the prompts may draw from (at most 1000, at least 2)."""
    config: Any = getattr(model, "config", None)
    size = getattr(getattr(config, "get_text_config", lambda: config)(), "vocab_size", None)
    return max(2, min(int(size or 1000), 1000))
