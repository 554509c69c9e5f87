"""The ``modelexport export`` command: a real round trip and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
import transformers as hf

from modelexport.cli.commands import EXIT_USER_ERROR, main
from modelexport.tags import read_tags


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert-tiny")
    config = hf.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64)
    hf.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def factories(tmp_path):
    path = tmp_path / "factories.py"
    path.write_text(textwrap.dedent("""
        import torch

        class Branchy(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = torch.nn.Linear(4, 4)
            def forward(self, x):
                return self.fc(x) if x.sum() > 0 else -self.fc(x)

        def not_a_module():
            return "hello"

        def branchy():
            return Branchy(), torch.ones(1, 4)

        def linear():
            return torch.nn.Linear(4, 2)
    """))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    script = Path(sys.executable).with_name("modelexport")
    return subprocess.run([str(script), *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_local_folder_round_trip(bert_folder, tmp_path):
    out = tmp_path / "x.onnx"
    result = run_cli("export", "--model", str(bert_folder), "--output", str(out),
                     "--validate", "--report", "--strategy", "htp")
    assert result.returncode == 0, result.stderr
    assert "parity passed" in result.stdout
    onnx.checker.check_model(str(out), full_check=True)
    assert all(tag is not None for tag in read_tags(str(out)).values())
    assert (tmp_path / "x.onnx.hierarchy.json").exists()
    report = (tmp_path / "x.onnx.report.md").read_text()
    assert "## Module tree" in report
    total = float(report.split("- total time: ")[1].split("s")[0])
    assert total > 0.0, "the report is written before the export ends, not before it starts"


def test_a_sequence_length_past_the_position_limit_is_said(bert_folder, tmp_path, capsys):
    code = main(["export", "--model", str(bert_folder), "--output", str(tmp_path / "s.onnx"),
                 "--strategy", "htp", "--sequence-length", "100000"])
    assert code == 0
    assert ("warning: --sequence-length 100000 is past the model's position limit; the "
            "inputs are 512 tokens long") in capsys.readouterr().err


def test_json_report_and_task_override(bert_folder, tmp_path, capsys):
    code = main(["export", "--model", str(bert_folder), "--output", str(tmp_path / "m.onnx"),
                 "--task", "fill-mask", "--json", "--strategy", "htp"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["model_class"] == "BertForMaskedLM"


def bad(capsys, *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_unknown_model_path(capsys, tmp_path):
    line = bad(capsys, "export", "--model", "./no/such/folder", "-o", str(tmp_path / "a.onnx"))
    assert "no model folder" in line
    assert list(tmp_path.iterdir()) == []


def test_unreachable_hub_id_is_one_line(tmp_path):
    result = run_cli("export", "--model", "someone/not-a-real-model", "-o",
                     str(tmp_path / "a.onnx"))
    assert result.returncode == EXIT_USER_ERROR
    assert result.stderr.startswith("error: cannot load hub id someone/not-a-real-model")
    assert "Traceback" not in result.stderr


def test_factory_not_returning_a_module(capsys, factories, tmp_path):
    line = bad(capsys, "export", "--model", f"{factories}:not_a_module",
               "-o", str(tmp_path / "a.onnx"))
    assert "returned str, not a torch.nn.Module" in line


def test_inputs_that_do_not_fit(capsys, factories, tmp_path):
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps({"input": {"shape": [1, 7], "dtype": "float32"}}))
    out = tmp_path / "a.onnx"
    line = bad(capsys, "export", "--model", f"{factories}:linear", "--input-specs", str(specs),
               "-o", str(out))
    assert "do not fit Linear" in line
    assert not out.exists()


@pytest.mark.parametrize(("spec", "needle"), [
    ({"shape": [1, -3], "dtype": "float32"}, "shape [1, -3] has a negative dimension"),
    ({"shape": [1, 4], "dtype": "int64", "low": 5, "high": 5}, "low (5) must be below high (5)"),
    ({"shape": [1, 4], "dtype": "int64", "low": "a"}, "whole-number 'low' and 'high'"),
    ({"shape": "1x4"}, "a 'shape' list of whole numbers"),
    (["not", "an", "object"], "a 'shape' list of whole numbers"),
])
def test_input_specs_that_make_no_sense(capsys, factories, tmp_path, spec, needle):
    specs = tmp_path / "specs.json"
    specs.write_text(json.dumps({"input": spec}))
    out = tmp_path / "a.onnx"
    line = bad(capsys, "export", "--model", f"{factories}:linear", "--input-specs", str(specs),
               "-o", str(out))
    assert needle in line
    assert not out.exists()


def test_unwritable_output(capsys, factories, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = bad(capsys, "export", "--model", f"{factories}:branchy", "-o",
               str(blocker / "a.onnx"))
    assert "cannot write" in line


def test_failing_strategy(capsys, factories, tmp_path):
    out = tmp_path / "a.onnx"
    line = bad(capsys, "export", "--model", f"{factories}:branchy", "--strategy", "dynamo",
               "-o", str(out))
    assert "every strategy failed (dynamo:" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["factories.py"]


def test_unknown_zoo_entry(capsys, tmp_path):
    line = bad(capsys, "export", "--model", "zoo:nope", "-o", str(tmp_path / "a.onnx"))
    assert "no zoo entry 'nope'" in line


def test_python_module_entry_point_works():
    result = subprocess.run([sys.executable, "-m", "modelexport.cli", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "export" in result.stdout


@pytest.mark.parametrize("spelled", [["htp,usage_based"], ["htp", "usage_based"],
                                     ["htp,", "usage_based"], ["htp, usage_based"]])
def test_a_list_of_names_may_be_spaced_or_comma_separated(spelled):
    from modelexport.cli.commands import _build_parser

    for command in (["zoo", "run"], ["gate", "--base", "HEAD~1"]):
        args = _build_parser().parse_args([*command, "--strategies", *spelled,
                                           "--models", "bert,small_cnn"])
        assert args.strategies == ["htp", "usage_based"]
        assert args.models == ["bert", "small_cnn"]


def test_a_list_of_only_commas_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["zoo", "run", "--strategies", ","])
    assert exited.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--strategies: expected at least one name" in err, err
