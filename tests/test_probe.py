"""Work an export no longer does twice, and the results it must keep.

The probe forward is skipped where the capture counts calls itself; the
file is loaded into ONNX Runtime once for the self-check and parity.

An export needs each module's call count (call indices in the tags, the
sidecar's "ran" flags, parameter ownership).  A TorchScript trace runs the
forward once with module hooks firing, so HTP and USAGE_BASED count there
instead of in a separate eager forward, and USAGE_BASED records its module
calls there too.  These tests hold the result to the one the probe gives,
and keep the probe's other jobs working without it: inputs that don't fit
are named by a probe run late, after the capture failed; a KV cache nobody
asked for stops the capture, which runs again without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

import model_zoo
import modelexport.api
from modelexport import export_model
from modelexport.attribution.usage import UsageAttribution
from modelexport.errors import InputMismatchError
from modelexport.inputs import ModelInputs, cache_left_to_model
from modelexport.output.files import sidecar_path_for
from modelexport.tags import read_tags

# plain PyTorch, a Hugging Face CNN and ViT, shared and tied modules: none returns a cache
DEFERRED_MODELS = ["resnet", "vit", "small_cnn", "shared_block", "nested_calls", "tied_weights"]


def _export(name: str, strategy: str, path: Path, **options: object):
    entry = model_zoo.get_entry(name)
    model = entry.build("tiny").eval()
    return export_model(model, entry.inputs(model, "tiny"), path, strategy=strategy, **options)


def _tags_and_modules(path: Path) -> tuple[dict, list]:
    """Every node's tag (module, call index, source) and the sidecar's module rows."""
    sidecar = json.loads(sidecar_path_for(path).read_text())
    return read_tags(str(path)), sidecar["modules"]


@pytest.mark.parametrize("strategy", ["htp", "usage_based"])
@pytest.mark.parametrize("name", DEFERRED_MODELS)
def test_counting_in_the_capture_gives_the_probes_tags(name: str, strategy: str,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    skipped = _export(name, strategy, tmp_path / "skipped.onnx")
    assert "probe" not in skipped.timings  # the capture counted: no probe forward ran
    not_counting = _not_counting(modelexport.api.get_strategy)
    monkeypatch.setattr(modelexport.api, "get_strategy", not_counting)
    probed = _export(name, strategy, tmp_path / "probed.onnx")
    assert "probe" in probed.timings
    assert _tags_and_modules(tmp_path / "skipped.onnx") == _tags_and_modules(
        tmp_path / "probed.onnx")
    assert skipped.anchored == probed.anchored
    assert skipped.coverage == probed.coverage


@pytest.mark.parametrize(("name", "tier"), [*((n, "tiny") for n in DEFERRED_MODELS),
                                           ("bert", "tiny"), ("gpt2", "tiny"),
                                           ("transformer_encoder", "idioms"),
                                           ("root_sequential", "idioms")])
def test_usage_based_reads_the_calls_of_the_capture_s_own_forward(
        name: str, tier: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One forward fewer, and tags that agree with HTP's at least as often.

    Not always the same tags: under a trace, transformers builds a BERT
    attention mask inside the attention module (a ``Where`` the graph
    keeps), and the calls recorded in the trace see it there, while an eager
    forward takes another path and leaves those nodes unplaced.
    """
    entry = model_zoo.get_entry(name)
    model = entry.build(tier).eval()
    inputs = entry.inputs(model, tier)
    export_model(model, inputs, tmp_path / "htp.onnx", strategy="htp")
    forwards: list[int] = []
    handle = model.register_forward_pre_hook(lambda *_: forwards.append(1))
    in_capture = export_model(model, inputs, tmp_path / "in_capture.onnx",
                              strategy="usage_based")
    ran = len(forwards)
    monkeypatch.setattr(UsageAttribution, "reads_calls", False)
    own_forward = export_model(model, inputs, tmp_path / "own_forward.onnx",
                               strategy="usage_based")
    handle.remove()
    assert len(forwards) - ran == ran + 1  # the attribution's own forward
    assert in_capture.anchored == own_forward.anchored
    assert in_capture.anchored["accuracy"] in (1.0, None)
    htp = read_tags(str(tmp_path / "htp.onnx"))

    def agreeing(path: Path) -> int:
        return sum(tag.module == htp[node].module for node, tag in read_tags(str(path)).items()
                   if node in htp)

    assert agreeing(tmp_path / "in_capture.onnx") >= agreeing(tmp_path / "own_forward.onnx")


def _not_counting(get_strategy):
    """``get_strategy`` whose strategies cannot count calls: the export probes first."""
    class NotCounting:
        def __init__(self, strategy) -> None:
            self._strategy = strategy

        counts_calls = False

        def __getattr__(self, name: str):
            return getattr(self._strategy, name)

    return lambda name: NotCounting(get_strategy(name))


@pytest.mark.parametrize("strategy", ["htp", "usage_based"])
def test_a_cache_returned_in_the_capture_is_dropped_without_a_probe(strategy: str,
                                                                    tmp_path: Path) -> None:
    report = _export("gpt2", strategy, tmp_path / "g.onnx", validate=True)
    assert "probe" not in report.timings
    assert any(note.startswith("use_cache=False") for note in report.warnings)
    assert [a.strategy for a in report.summary.attempts] == [strategy]
    assert report.summary.attempts[0].success and report.parity["passed"]
    assert not any("present" in o.name for o in onnx.load(str(tmp_path / "g.onnx")).graph.output)


def test_inputs_that_do_not_fit_are_still_named_as_such(tmp_path: Path) -> None:
    model = model_zoo.get_entry("resnet").build("tiny").eval()
    with pytest.raises(InputMismatchError, match="do not fit ResNetModel"):
        export_model(model, torch.randn(3, 5), tmp_path / "bad.onnx", strategy="htp")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_cache_behind_keyword_arguments_is_dropped_in_the_capture(tmp_path: Path) -> None:
    entry = model_zoo.get_entry("gpt2")
    inner = entry.build("tiny").eval()

    class KeywordsOnly(nn.Module):
        """No ``use_cache`` in the signature, no config: only ``**kwargs`` could take it."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs: torch.Tensor) -> object:
            return self.inner(**kwargs)

    model = KeywordsOnly()
    inputs = entry.inputs(inner, "tiny")
    report = export_model(model, inputs, tmp_path / "k.onnx", strategy="htp", validate=True)
    assert any(note.startswith("use_cache=False") for note in report.warnings)
    assert "probe" not in report.timings  # the capture saw the cache and ran again
    assert [a.strategy for a in report.summary.attempts] == ["htp"]
    assert report.summary.attempts[0].success and report.parity["passed"]


class _Plain(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Named(nn.Module):
    def forward(self, x: torch.Tensor, use_cache: bool = True) -> torch.Tensor:
        return x


class _Keywords(nn.Module):
    def forward(self, x: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return x


@pytest.mark.parametrize(("model", "kwargs", "expected"), [
    (_Plain(), {}, False),  # cannot take use_cache at all
    (_Named(), {}, True),  # names it
    (_Named(), {"use_cache": False}, False),  # the caller decided
    (_Keywords(), {}, True),  # could take it through **kwargs
])
def test_cache_left_to_model(model: nn.Module, kwargs: dict, expected: bool) -> None:
    inputs = ModelInputs(args=(torch.zeros(1),), kwargs=kwargs)
    assert cache_left_to_model(model, inputs) is expected


def _count_session_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import modelexport.validation.file_checks as file_checks
    import modelexport.validation.parity as parity

    opened: list[str] = []

    def counting(original):
        def open_session(source, options=None):
            opened.append(str(source))
            return original(source, options)
        return open_session

    monkeypatch.setattr(file_checks, "open_session", counting(file_checks.open_session))
    monkeypatch.setattr(parity, "open_session", counting(parity.open_session))
    return opened


def test_validate_runs_parity_on_the_self_checks_session(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved file is loaded into ONNX Runtime once, not once to check and once for parity."""
    opened = _count_session_opens(monkeypatch)
    report = _export("small_cnn", "htp", tmp_path / "v.onnx", validate=True)
    assert report.parity["passed"] and report.check["passed"]
    assert len(opened) == 1
    assert "session" not in report.check  # the session never reaches the report


def test_the_validate_command_opens_the_file_once(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``modelexport validate --model``: the structural check's session runs the parity too."""
    from modelexport.cli.commands import main

    _export("small_cnn", "htp", tmp_path / "v.onnx")
    opened = _count_session_opens(monkeypatch)
    assert main(["validate", str(tmp_path / "v.onnx"), "--model", "zoo:small_cnn"]) == 0
    assert len(opened) == 1
    opened.clear()
    assert main(["validate", str(tmp_path / "v.onnx")]) == 0  # structure only: one load too
    assert len(opened) == 1
