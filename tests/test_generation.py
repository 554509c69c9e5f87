"""Generation with ONNX Runtime alone: one with-past file, prompt and steps, batched."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
import transformers as hf

import modelexport
from modelexport.cli.commands import main
from modelexport.errors import InputMismatchError
from modelexport.generation import greedy_generate, left_padded

PROMPTS = [[5, 17, 33, 2, 9, 41, 7], [8, 60, 12]]  # unequal lengths: one row is left-padded


def fresh_gpt2() -> torch.nn.Module:
    config = hf.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    torch.manual_seed(0)
    return hf.GPT2LMHeadModel(config).eval()


def torch_greedy(model: torch.nn.Module, prompts: list[list[int]], new: int):
    ids, mask = left_padded(prompts, pad_id=0)
    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                             max_new_tokens=new, min_new_tokens=new, do_sample=False,
                             pad_token_id=0, eos_token_id=None, output_logits=True,
                             return_dict_in_generate=True)
    return out.sequences[:, ids.shape[1]:].tolist(), [s.numpy() for s in out.logits]


@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_a_batched_greedy_decode_in_onnx_runtime_matches_generate(tmp_path, strategy):
    model = fresh_gpt2()
    ids = torch.randint(0, 100, (1, 6))
    path = tmp_path / "lm.onnx"
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    report = modelexport.export_model(model, example, path, strategy=strategy, with_past=True)
    assert report.check_passed and report.parity_passed, report.parity
    shapes = {i.name: i.shape for i in
              ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()}
    assert shapes["input_ids"] == ["batch", "sequence"]
    assert shapes["attention_mask"] == ["batch", "past_sequence + sequence"]
    assert shapes["past_key_values.0.key"][2] == "past_sequence"
    got = greedy_generate(path, PROMPTS, 8)
    tokens, scores = torch_greedy(model, PROMPTS, 8)
    assert got.as_lists() == tokens
    assert max(np.abs(a - b).max() for a, b in zip(got.step_logits, scores)) < 1e-4


def test_left_padding_puts_each_prompt_at_the_right():
    ids, mask = left_padded(PROMPTS, pad_id=0)
    assert ids.shape == mask.shape == (2, 7)
    assert ids[1].tolist() == [0, 0, 0, 0, 8, 60, 12] and mask[1].tolist() == [0] * 4 + [1] * 3
    with pytest.raises(InputMismatchError):
        left_padded([[1], []], pad_id=0)


def test_the_generate_command_decodes_and_refuses_a_file_without_a_cache(tmp_path, capsys):
    model = fresh_gpt2()
    ids = torch.randint(0, 100, (1, 6))
    path = tmp_path / "lm.onnx"
    modelexport.export_model(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                             path, strategy="htp", with_past=True)
    assert main(["generate", str(path), "--prompt-ids", "5 17 33", "--prompt-ids", "8,60",
                 "--max-new-tokens", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected, _ = torch_greedy(model, [[5, 17, 33], [8, 60]], 4)
    assert lines == [f"5 17 33 -> {' '.join(map(str, expected[0]))}",
                     f"8 60 -> {' '.join(map(str, expected[1]))}"]
    plain = tmp_path / "plain.onnx"
    modelexport.export_model(model, {"input_ids": ids}, plain, strategy="htp")
    assert main(["generate", str(plain), "--prompt-ids", "1 2"]) == 2
    assert "no key/value cache" in capsys.readouterr().err


def _maskless_lm(path) -> None:
    """A stand-in decoding step with a cache and no attention_mask input."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Unsqueeze", ["input_ids", "axis"], ["expanded"]),
             helper.make_node("Cast", ["expanded"], ["logits"], to=TensorProto.FLOAT),
             helper.make_node("Concat", ["past_key_values.0.key", "past_key_values.0.key"],
                              ["present.0.key"], axis=2)]
    graph = helper.make_graph(
        nodes, "step",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT,
                                       ["batch", 1, "past_sequence", 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), "axis")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)


def test_a_file_without_a_mask_decodes_equal_prompts_and_refuses_unequal_ones(tmp_path):
    path = tmp_path / "maskless.onnx"
    _maskless_lm(path)
    done = greedy_generate(path, [[0, 1], [0, 0]], max_new_tokens=2)
    assert done.tokens.shape == (2, 2)
    with pytest.raises(InputMismatchError, match="takes no attention_mask"):
        greedy_generate(path, [[0, 1, 0], [0]], max_new_tokens=2)


def _layer(**extra):
    from types import SimpleNamespace

    return SimpleNamespace(keys=torch.zeros(2, 1, 3, 4), values=torch.zeros(2, 1, 3, 4), **extra)


def test_a_cache_with_state_beside_keys_and_values_is_refused_in_one_line():
    """A short convolution's state per sequence cannot ride in a key/value file."""
    from types import SimpleNamespace

    from modelexport.capture.with_past import cache_layers

    window = {"_sliding_window_tensor": torch.tensor(4)}  # configuration, not state
    plain = SimpleNamespace(past_key_values=SimpleNamespace(layers=[_layer(**window)]))
    assert len(cache_layers(plain)) == 1
    hybrid = SimpleNamespace(past_key_values=SimpleNamespace(
        layers=[_layer(conv_states={0: torch.zeros(2, 8, 4)}, **window)]))
    with pytest.raises(InputMismatchError, match=r"per-sequence state \(conv_states"):
        cache_layers(hybrid)
