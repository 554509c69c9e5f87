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


def _cache(**extra):
    from types import SimpleNamespace

    return SimpleNamespace(layers=[_layer(**extra)])


def test_a_cache_with_state_that_does_not_grow_per_token_is_refused_in_one_line():
    """A short convolution's state is as long after a token as before: no file carries it."""
    from modelexport.capture.with_past import cache_layout

    window = {"_sliding_window_tensor": torch.tensor(4)}  # configuration, not state
    assert [s.name for s in cache_layout(_cache(**window), _cache(**window)).states[0]] == \
        ["key", "value"]
    conv = {"conv_states": {0: torch.zeros(2, 8, 4)}}
    with pytest.raises(InputMismatchError, match=r"does not grow with the sequence \(conv_states"):
        cache_layout(_cache(**conv, **window), _cache(**conv, **window))


def test_state_that_grows_per_token_is_carried_as_an_input_and_output_of_its_own(tmp_path):
    """A sparse-attention indexer's keys (DeepSeek V3.2) go in and out beside keys and values.

    The indexer's keys for the prompt come out of the prompt's run and go
    back in with the next token: the file's are PyTorch's after both runs.
    """
    from model_zoo.wide import shrunk_config

    torch.manual_seed(0)
    model = hf.DeepseekV32ForCausalLM(shrunk_config("deepseek_v32")).eval()
    ids = torch.randint(1, 200, (2, 6))
    mask = torch.ones_like(ids)
    path = tmp_path / "dsa.onnx"
    report = modelexport.export_model(model, {"input_ids": ids, "attention_mask": mask}, path,
                                      strategy="htp", with_past=True)
    assert report.summary.success, report.summary.attempts
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes["past_key_values.0.indexer_keys"][:2] == ["batch", "past_sequence"]
    outputs = [o.name for o in session.get_outputs()]
    with torch.no_grad():
        prompt = model(input_ids=ids, attention_mask=mask, use_cache=True)
        step = model(input_ids=ids[:, :1], attention_mask=torch.ones(2, 7, dtype=torch.long),
                     past_key_values=prompt.past_key_values, use_cache=True)
    first = dict(zip(outputs, session.run(None, _feed(session, ids, mask, None))))
    second = dict(zip(outputs, session.run(None, _feed(
        session, ids[:, :1], torch.ones(2, 7, dtype=torch.long), first))))
    expected = step.past_key_values.layers[0].indexer_keys.numpy()
    assert second["present.0.indexer_keys"].shape == expected.shape == (2, 7, 128)
    assert np.abs(second["present.0.indexer_keys"] - expected).max() < 1e-4
    assert np.abs(second["logits"] - step.logits.numpy()).max() < 1e-4


def _feed(session, ids, mask, previous):
    """One run's inputs: an empty past for the prompt, else the previous run's present."""
    from modelexport.generation import _empty_past

    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    total, new = mask.shape[1], ids.shape[1]
    for value in session.get_inputs():
        if value.name == "position_ids":
            feed["position_ids"] = np.tile(np.arange(total - new, total), (ids.shape[0], 1))
        elif value.name.startswith("past_key_values."):
            feed[value.name] = (_empty_past(value, ids.shape[0]) if previous is None else
                                previous[value.name.replace("past_key_values.", "present.")])
    return feed


def fresh_t5() -> torch.nn.Module:
    config = hf.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                         num_heads=4, decoder_start_token_id=0)
    torch.manual_seed(0)
    return hf.T5ForConditionalGeneration(config).eval()


def test_an_encoder_decoder_generates_in_onnx_runtime_from_its_encoder_and_decoder_files(
        tmp_path, capsys):
    """The pair serves a batch of unequal sources; the tokens are generate's, the start
    token comes from the sidecar, and the CLI decodes with the same files."""
    model = fresh_t5()
    ids = torch.randint(1, 100, (1, 9))
    path = tmp_path / "t5.onnx"
    report = modelexport.export_model(model, {"input_ids": ids, "attention_mask":
                                              torch.ones_like(ids)}, path, with_past=True)
    assert report.summary.success, report.summary.attempts
    assert report.outputs.encoder == str(tmp_path / "t5.encoder.onnx")
    assert report.encoder["parity"]["second_shape"]["passed"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes["encoder_hidden_states"][:2] == ["batch", "encoder_sequence"]
    assert shapes["past_key_values.1.decoder.key"][2] == "past_sequence"
    got = greedy_generate(path, PROMPTS, 8)
    ids_padded, mask = left_padded(PROMPTS, pad_id=0)
    with torch.no_grad():
        expected = model.generate(input_ids=torch.from_numpy(ids_padded),
                                  attention_mask=torch.from_numpy(mask), max_new_tokens=8,
                                  min_new_tokens=8, do_sample=False, eos_token_id=None)
    assert got.as_lists() == expected[:, 1:].tolist()
    assert main(["generate", str(path), "--prompt-ids", "5 17 33", "--max-new-tokens", "3",
                 "--json"]) == 0
    assert '"new_tokens"' in capsys.readouterr().out


def test_an_encoder_decoder_pair_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """The decoder is written first; an encoder export that raises takes it away again."""
    import modelexport.api as api

    def refuse(model, example):
        raise InputMismatchError("the encoder refuses")

    monkeypatch.setattr(api, "encoder_part", refuse)
    ids = torch.randint(1, 100, (1, 9))
    with pytest.raises(InputMismatchError, match="the encoder refuses"):
        modelexport.export_model(fresh_t5(), {"input_ids": ids}, tmp_path / "t5.onnx",
                                 with_past=True, strategy="htp")
    assert [p.name for p in tmp_path.iterdir()] == []
