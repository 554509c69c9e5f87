"""Matching initializers to parameters by what the TorchScript exporter wrote them from.

The recorded sources let the tag phase skip comparing every transposed
weight value by value; these tests hold the shortcut to giving what the
value comparison gives, to refusing a source that does not fit what was
written, and to recording on the installed torch at all (if a torch upgrade
stops it, matching silently falls back to the slower comparison, and this is
where that shows).
"""

from __future__ import annotations

import io
import threading
import warnings

import onnx
import pytest
import torch

from modelexport.capture.exporter_sources import recording_sources
from modelexport.hierarchy import ModuleTree
from modelexport.parameters import match_initializers, storage_key


class Projector(torch.nn.Module):
    """Linear layers on 3-D input: constant folding stores their weights transposed."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.up = torch.nn.Linear(16, 32)
        self.norm = torch.nn.LayerNorm(32)
        self.down = torch.nn.Linear(32, 16)
        self.head = torch.nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight  # tied, read transposed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(self.norm(self.up(self.embed(ids)))))


def _export(model: torch.nn.Module, example: tuple,
            ) -> tuple[onnx.ModelProto, dict[str, torch.Tensor]]:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), recording_sources(model) as sources:
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, buffer, dynamo=False, do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue()), dict(sources)


@pytest.fixture(scope="module")
def projector() -> tuple[torch.nn.Module, onnx.ModelProto, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = Projector().eval()
    graph, sources = _export(model, (torch.randint(0, 50, (2, 5)),))
    return model, graph, sources


def test_the_installed_torch_records_a_transposed_weight_as_a_view_of_the_parameter(projector):
    model, graph, sources = projector
    names = {init.name for init in graph.graph.initializer}
    assert set(sources) <= names
    folded = {name: t for name, t in sources.items() if name not in dict(model.named_parameters())}
    assert folded, f"no folded initializer recorded among {sorted(sources)}"
    keys = {storage_key(p): name for name, p in model.named_parameters()}
    for name, tensor in folded.items():
        assert storage_key(tensor) in keys, name
        owner = dict(model.named_parameters())[keys[storage_key(tensor)]]
        assert tuple(tensor.shape) == tuple(owner.t().shape), name


def test_sources_give_the_holdings_comparing_values_gives(projector):
    model, graph, sources = projector
    tree = ModuleTree(model)
    by_source = match_initializers(graph, tree, model, sources=sources)
    by_value = match_initializers(graph, tree, model)
    for name, holding in by_value.items():
        assert by_source[name] == holding, name
    # The one addition: a tied weight read transposed.  Comparing values only
    # considers parameters no initializer kept by name, and the tie keeps
    # ``embed.weight``; the exporter's record says what it is.
    extra = {name: by_source[name] for name in set(by_source) - set(by_value)}
    assert [h.owners for h in extra.values()] == [("embed", "head")], extra


def test_a_source_that_does_not_fit_the_written_values_falls_back_to_comparing(projector):
    """``up.weight`` has the shape of ``down.weight`` transposed: a wrong record would fit it."""
    model, graph, sources = projector
    tree = ModuleTree(model)
    down = storage_key(model.down.weight)
    folded = next(name for name, t in sources.items() if storage_key(t) == down)
    truth = match_initializers(graph, tree, model, sources=sources)[folded]
    assert truth.owners == ("down",) and not truth.folded_identity
    assert model.up.weight.shape == sources[folded].shape
    wrong = {**sources, folded: model.up.weight}
    assert match_initializers(graph, tree, model, sources=wrong)[folded] == truth


def test_fresh_memory_a_fold_computed_is_not_recorded():
    """A Conv with its BatchNorm fused in is new memory: recording it would hold it alive."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    model[1].running_mean.uniform_()
    graph, sources = _export(model, (torch.randn(1, 3, 8, 8),))
    owned = {storage_key(t) for t in (*model.parameters(), *model.buffers())}
    conv_weights = [i.name for i in graph.graph.initializer if len(i.dims) == 4]
    assert conv_weights and not set(conv_weights) & set(sources)
    assert all(storage_key(t) in owned for t in sources.values())


def test_an_export_in_another_thread_does_not_record_into_this_ones_dict():
    model = torch.nn.Linear(4, 4).eval()
    entered, exported = threading.Event(), threading.Event()
    seen: dict[str, torch.Tensor] = {}

    def recorder() -> None:
        with recording_sources(model) as sources:
            entered.set()
            exported.wait(timeout=120)
            seen.update(sources)

    thread = threading.Thread(target=recorder)
    thread.start()
    entered.wait(timeout=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 3, 4),), io.BytesIO(), dynamo=False)
    exported.set()
    thread.join()
    assert seen == {}


def test_tensors_without_plain_memory_are_skipped_not_fatal():
    model = torch.nn.Sequential(torch.nn.LazyLinear(4), torch.nn.Linear(4, 4, device="meta"))
    with recording_sources(model) as sources:
        pass
    assert sources == {}
    assert storage_key(model[0].weight) is None and storage_key(model[1].weight) is None


class Shifted(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.register_buffer("offset", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.offset.float()  # a no-op Cast: folded, renamed, same memory


def test_initializers_merged_for_equal_values_hold_what_comparing_values_says():
    """Two layers' zero offsets become one initializer: it stands for both, not its first."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(Shifted(), Shifted()).eval()
    graph, sources = _export(model, (torch.randn(2, 3, 4),))
    names = {init.name for init in graph.graph.initializer}
    assert set(sources) - names, "the exporter merged nothing: the test lost its case"
    tree = ModuleTree(model)
    assert match_initializers(graph, tree, model, sources=sources) == \
        match_initializers(graph, tree, model)
