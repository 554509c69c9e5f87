"""Every file tool on bad input: one ``error:`` line, a non-zero exit, no traceback,
no output file; and a property-based test feeding corrupted ONNX bytes."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from pathlib import Path

import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelexport
from modelexport.cli.commands import EXIT_USER_ERROR, main
from modelexport.output.files import sidecar_path_for


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(x)))


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tagged") / "tiny.onnx"
    modelexport.export_model(Tiny(), torch.randn(1, 4), path, strategy="htp")
    return path


def run(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == EXIT_USER_ERROR, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def bad_files(tmp: Path, tagged: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a word the error must contain)."""
    text = tmp / "notes.onnx"
    text.write_text("this is not a model\n")
    truncated = tmp / "truncated.onnx"
    truncated.write_bytes(tagged.read_bytes()[: len(tagged.read_bytes()) // 3])
    untagged = tmp / "untagged.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])), untagged)
    return {"not-onnx": (text, "not a readable ONNX model"),
            "truncated": (truncated, "ONNX"),
            "untagged": (untagged, "no module information"),
            "missing": (tmp / "absent.onnx", "no such file"),
            "directory": (tmp, "directory")}


COMMANDS = {
    "analyze": lambda f, o: ["analyze", f],
    "validate": lambda f, o: ["validate", f],
    "compare": lambda f, o: ["compare", f, f],
    "extract": lambda f, o: ["extract", f, "--module", "fc", "-o", o],
    "profile": lambda f, o: ["profile", f, "--repeats", 1],
    "optimize": lambda f, o: ["optimize", f, "--with", "onnxscript", "-o", o],
    "retag": lambda f, o: ["retag", f, "--reference", f, "-o", o],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", ["not-onnx", "truncated", "untagged", "missing", "directory"])
def test_bad_files_get_one_line_and_no_output(tmp_path, tagged, command, kind):
    path, needle = bad_files(tmp_path, tagged)[kind]
    out = tmp_path / "out.onnx"
    code, _, err = run(*COMMANDS[command](path, out))
    assert_one_line_error(code, err, needle)
    assert not out.exists()


WRITING_TOOLS = ["analyze", "extract", "optimize", "retag", "profile"]


def writing_tool(command: str, file: Path, output: Path, reference: Path) -> list[object]:
    """A tool reading ``file`` (retag: also ``reference``) and writing ``output``."""
    return {"analyze": ["analyze", file, "--format", "json", "-o", output],
            "extract": ["extract", file, "--module", "fc", "-o", output],
            "optimize": ["optimize", file, "--with", "ort", "-o", output],
            "retag": ["retag", file, "--reference", reference, "-o", output],
            "profile": ["profile", file, "-o", output]}[command]


@pytest.mark.parametrize("command", WRITING_TOOLS)
def test_unwritable_output(tmp_path, tagged, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "out.onnx"  # a path under a regular file cannot be created
    code, _, err = run(*writing_tool(command, tagged, target, tagged))
    assert_one_line_error(code, err, "cannot write")


@pytest.mark.parametrize("command", WRITING_TOOLS)
def test_a_tool_never_writes_over_the_file_it_reads(tmp_path, tagged, command):
    source = tmp_path / "model.onnx"
    source.write_bytes(tagged.read_bytes())
    file = tagged if command == "retag" else source  # retag is refused over its reference
    code, _, err = run(*writing_tool(command, file, source, source))
    assert_one_line_error(code, err, "is the input file")
    assert source.read_bytes() == tagged.read_bytes()


@pytest.mark.parametrize(("argv", "needle"), [
    (["export", "--model", "zoo:bert", "-o", "x.onnx", "--atol", "-1"],
     "--atol: must be 0 or more"),
    (["export", "--model", "zoo:bert", "-o", "x.onnx", "--batch-size", "-2"],
     "--batch-size: must be at least 1, not -2"),
    (["export", "--model", "zoo:bert", "-o", "x.onnx", "--rtol", "nan"], "--rtol"),
    (["validate", "x.onnx", "--sequence-length", "0"], "--sequence-length: must be at least 1"),
    (["profile", "x.onnx", "--repeats", "many"], "--repeats: must be a whole number"),
    (["zoo", "run", "--jobs", "0"], "--jobs: must be at least 1"),
])
def test_nonsense_arguments_are_one_line_errors(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "x.onnx").exists()


def test_argument_errors_print_one_line_without_the_usage(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--model", "zoo:bert", "-o", "x.onnx", "--atol", "-1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["modelexport export: error: argument --atol: must be 0 or more, not -1 "
                     "(see modelexport export --help)"]


def test_unknown_module_and_bad_options(tmp_path, tagged):
    code, _, err = run("extract", tagged, "--module", "fc.nope", "-o", tmp_path / "x.onnx")
    assert_one_line_error(code, err, "no nodes of module 'fc.nope'")
    assert not (tmp_path / "x.onnx").exists()
    code, _, err = run("analyze", tagged, "--filter", "nothing-like-this")
    assert_one_line_error(code, err, "nothing-like-this")
    code, _, err = run("validate", tagged, "--per-module")
    assert_one_line_error(code, err, "--model")
    code, _, err = run("profile", tagged, "--dim", "batch=zero")
    assert_one_line_error(code, err, "NAME=POSITIVE_INT")
    code, _, err = run("validate", tagged, "--model", "zoo:no_such_model")
    assert_one_line_error(code, err, "no_such_model")


def test_a_sidecar_that_is_not_json_is_ignored(tmp_path, tagged):
    copy = tmp_path / "copy.onnx"
    shutil.copy(tagged, copy)
    sidecar_path_for(copy).write_text("{ not json")
    code, out, _ = run("analyze", copy)
    assert code == 0 and "fc" in out


@pytest.mark.parametrize("damage", [{"modules": 5}, {"modules": [{"class": "X"}]},
                                    {"nodes": ["a"]}, {"nodes": {"n": {"module": 3}}}])
def test_a_malformed_sidecar_is_ignored_by_every_tool_and_named_by_validate(
        tmp_path, tagged, damage):
    copy = tmp_path / "copy.onnx"
    shutil.copy(tagged, copy)
    sidecar = json.loads(sidecar_path_for(tagged).read_text())
    sidecar_path_for(copy).write_text(json.dumps({**sidecar, **damage}))
    for args in (["analyze", copy], ["extract", copy, "--module", "fc", "-o", tmp_path / "l.onnx"],
                 ["profile", copy, "--repeats", "2"], ["compare", copy, tagged]):
        code, _, err = run(*args)
        assert code == 0 and "Traceback" not in err, (args, err)
    code, out, _ = run("validate", copy)
    assert "the sidecar beside the file is unusable" in out and "not a well-formed sidecar" in out


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("modelexport.source", "banana", "modelexport.source is 'banana'"),
    ("modelexport.call", "abc", "modelexport.call is 'abc', not a whole number"),
    ("modelexport.call", "-1", "modelexport.call is '-1'"),
])
def test_tag_values_the_schema_forbids_fail_validate_and_one_line_everywhere_else(
        tmp_path, tagged, key, value, needle):
    from modelexport.tags import MalformedTagError, read_tags

    model = onnx.load(str(tagged))
    node = model.graph.node[0]
    kept = [p for p in node.metadata_props if p.key != key]
    del node.metadata_props[:]
    node.metadata_props.extend(kept)
    entry = node.metadata_props.add()
    entry.key, entry.value = key, value
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    shutil.copy(sidecar_path_for(tagged), sidecar_path_for(bad))
    code, out, _ = run("validate", bad)
    assert code == 1 and "[malformed-tag] 1 nodes" in out and needle in out
    with pytest.raises(MalformedTagError, match=needle.replace("(", r"\(")):
        read_tags(bad)
    for args in (["retag", bad, "--reference", tagged, "-o", tmp_path / "a.onnx"],
                 ["retag", tagged, "--reference", bad, "-o", tmp_path / "b.onnx"]):
        code, _, err = run(*args)
        assert_one_line_error(code, err, needle)
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[int | None, list[tuple[int, int]]]:
    """A truncation point (or none) and a few byte overwrites."""
    cut = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=4000)))
    flips = draw(st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6))
    return cut, flips


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption=corruptions())
def test_corrupted_bytes_never_crash_analyze_or_validate(tagged, corruption):
    """Whatever the bytes, a tool either works or says why in one line."""
    cut, flips = corruption
    data = bytearray(tagged.read_bytes())
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "fuzzed.onnx"
        path.write_bytes(bytes(data))
        for command in ("analyze", "validate"):
            code, _, err = run(command, path)
            assert code in (0, 1, 2), (command, code)
            assert "Traceback" not in err
            if code == EXIT_USER_ERROR:
                lines = err.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("error: "), err


def test_profile_says_when_generated_inputs_do_not_fit_and_dim_fixes_it(tmp_path):
    shape = onnx.helper.make_tensor("shape", onnx.TensorProto.INT64, [2], [2, 3])
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Reshape", ["x", "shape"], ["y"], name="/block/Reshape"),
         onnx.helper.make_node("Relu", ["y"], ["z"], name="/block/act/Relu")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n"])],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2, 3])],
        initializer=[shape]), opset_imports=[onnx.helper.make_opsetid("", 18)])
    path = tmp_path / "reshape.onnx"
    onnx.save(model, path)
    code, _, err = run("profile", path, "--repeats", 1)  # n defaults to 1: no 2x3 reshape
    assert_one_line_error(code, err, "--dim")
    code, out, _ = run("profile", path, "--repeats", 2, "--dim", "n=6")
    assert code == 0 and "block" in out
