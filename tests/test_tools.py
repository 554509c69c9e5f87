"""The tools on a tagged file: analyze, validate, compare, extract, per-module parity,
profile, graphml, Model Explorer namespaces and retag after optimisers."""

from __future__ import annotations

import csv
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

import model_zoo
import modelexport
from modelexport.cli.commands import main
from modelexport.output.files import sidecar_path_for
from modelexport.tags import KEY_MODULE, KEY_NAMESPACE, KEY_TAG, read_tags
from modelexport.tools.analyze import analyze, tensor_bytes
from modelexport.tools.extract import boundary_error, extract_module
from modelexport.tools.module_view import (
    ORIGIN_NAME_SCOPES,
    ORIGIN_NODE_NAMES,
    ORIGIN_SIDECAR,
    ORIGIN_TAGS,
    module_view,
    scope_path,
)
from modelexport.tools.optimizers import OPTIMIZERS, optimize
from modelexport.tools.retag import fold_duplicate_keys, retag
from modelexport.validation.structure import validate_structure


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def copy_export(path: Path, target: Path) -> Path:
    """A writable copy of an export and its sidecar."""
    shutil.copy(path, target)
    shutil.copy(sidecar_path_for(path), sidecar_path_for(target))
    return target


def set_module(node: onnx.NodeProto, module: str) -> None:
    for prop in node.metadata_props:
        if prop.key == KEY_MODULE:
            prop.value = module


class Tiny(torch.nn.Module):
    """Small enough to export with plain torch.onnx in a second."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


# --- analyze ---------------------------------------------------------------

def test_analyze_rolls_nodes_and_parameter_bytes_up_the_tree(exported):
    bert = exported("bert", "htp")
    model = bert.load()
    result = analyze(module_view(model, bert.path))
    rows = {m.path: m for m in result.modules}
    assert result.origin == ORIGIN_TAGS and result.untagged == 0
    assert rows[""].nodes_total == len(model.graph.node)
    assert sum(m.nodes_self for m in result.modules) == len(model.graph.node)
    assert rows[""].param_bytes_total == sum(tensor_bytes(i) for i in model.graph.initializer)
    layer = rows["encoder.layer.0"]
    assert layer.nodes_total == sum(rows[p].nodes_self for p in rows
                                    if p == "encoder.layer.0" or p.startswith("encoder.layer.0."))
    assert rows["encoder.layer.0.attention.self.query"].ops_self["MatMul"] == 1
    # tiny BERT: hidden 32, so query holds a 32x32 weight and 32 biases, float32
    assert rows["encoder.layer.0.attention.self.query"].param_bytes_total == (32 * 32 + 32) * 4


def test_analyze_formats_filter_and_depth(exported, capsys):
    path = exported("bert", "htp").path
    code, out, _ = cli(capsys, "analyze", path, "--format", "json", "--depth", 2)
    data = json.loads(out)
    assert code == 0 and max(m["depth"] for m in data["modules"]) == 2
    code, out, _ = cli(capsys, "analyze", path, "--format", "csv", "--filter", "attention.self")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and all("attention.self" in r["path"] for r in rows)
    code, out, _ = cli(capsys, "analyze", path)
    assert code == 0 and "BertLayer" in out and "(root)" in out


def test_analyze_reads_plain_torch_exports(tmp_path):
    model, x = Tiny().eval(), torch.randn(2, 8)
    scripted, dynamo = tmp_path / "ts.onnx", tmp_path / "dynamo.onnx"
    torch.onnx.export(model, (x,), str(scripted), dynamo=False)
    torch.onnx.export(model, (x,), str(dynamo), dynamo=True)
    for path, origin in [(scripted, ORIGIN_NODE_NAMES), (dynamo, ORIGIN_NAME_SCOPES)]:
        graph = onnx.load(str(path))
        view = module_view(graph, path)
        assert view.origin == origin
        rows = {m.path: m for m in analyze(view).modules}
        assert rows["head"].nodes_total >= 1, path
        assert rows["encoder.0"].param_bytes_total == (8 * 16 + 16) * 4, path
    assert module_view(onnx.load(str(dynamo)), dynamo).classes["head"].endswith("Linear")


def test_scope_path_folds_torchscript_repeats():
    assert scope_path("/encoder/layer/layer.0/attention/MatMul_1") == "encoder.layer.0.attention"
    assert scope_path("/MatMul") == ""
    assert scope_path("MatMul_3") is None


def test_clean_export_is_read_from_its_sidecar(tmp_path, capsys):
    path = tmp_path / "clean.onnx"
    modelexport.export_model(Tiny(), torch.randn(1, 8), path, strategy="htp", clean=True)
    assert module_view(onnx.load(str(path)), path).origin == ORIGIN_SIDECAR
    code, out, _ = cli(capsys, "analyze", path, "--format", "csv")
    assert code == 0 and "encoder.0" in out


def test_graphml_nests_nodes_in_module_groups(exported, tmp_path, capsys):
    bert = exported("bert", "htp")
    out = tmp_path / "bert.graphml"
    code, _, _ = cli(capsys, "analyze", bert.path, "--format", "graphml", "-o", out)
    assert code == 0
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    root = ET.parse(out).getroot()
    group = root.find(".//g:node[@id='module:encoder.layer.0.attention.self']", ns)
    assert group is not None and group.get("yfiles.foldertype") == "group"
    inner = group.findall("./g:graph/g:node", ns)
    assert any(n.find("g:data[@key='d_op']", ns) is not None for n in inner)
    graph = nx.read_graphml(out)  # nested graphs flatten into one
    ops = [n for n, d in graph.nodes(data=True) if d.get("kind") == "op"]
    assert len(ops) == len(bert.load().graph.node)
    assert graph.number_of_edges() > len(ops) // 2


# --- Model Explorer namespace -----------------------------------------------

def test_model_explorer_namespace_nests_every_node_by_module(tmp_path):
    path = tmp_path / "me.onnx"
    modelexport.export_model(Tiny(), torch.randn(1, 8), path, strategy="htp",
                             model_explorer=True)
    model = onnx.load(str(path))
    tags = read_tags(model)
    for node in model.graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        layers = props[KEY_NAMESPACE].split("/")  # as Model Explorer's ONNX adapter splits it
        module = tags[node.name].module
        assert len(layers) == (module.count(".") + 2 if module else 1)
        assert layers[0] == ": Tiny" and layers[-1].startswith(f"{module}: ")
    plain = tmp_path / "plain.onnx"
    modelexport.export_model(Tiny(), torch.randn(1, 8), plain, strategy="htp")
    assert not any(p.key == KEY_NAMESPACE for n in onnx.load(str(plain)).graph.node
                   for p in n.metadata_props)


# --- validate --------------------------------------------------------------

@pytest.mark.parametrize("name,strategy", [("bert", "htp"), ("bert", "dynamo"),
                                           ("resnet", "usage_based"), ("shared_block", "fx")])
def test_validate_passes_on_good_exports(exported, capsys, name, strategy):
    code, out, _ = cli(capsys, "validate", exported(name, strategy).path)
    assert code == 0, out


def test_validate_names_the_offending_nodes(exported, tmp_path, capsys):
    path = copy_export(exported("bert", "htp").path, tmp_path / "bad.onnx")
    model = onnx.load(str(path))
    view = module_view(model, path)
    middle = next(node for node, info in zip(model.graph.node, view.nodes)
                  if node.op_type == "Softmax" and info.module.startswith("encoder.layer.1"))
    set_module(middle, "pooler")  # a layer-1 attention node claimed by the pooler
    set_module(model.graph.node[0], "no.such.module")
    model.graph.node[1].metadata_props.add(key=KEY_MODULE, value="embeddings")
    onnx.save(model, str(path))
    code, out, _ = cli(capsys, "validate", path)
    assert code == 1 and "FAILED" in out
    assert "[unknown-module]" in out and model.graph.node[0].name in out
    assert "[duplicate-keys]" in out and model.graph.node[1].name in out
    assert "[tag-mismatch]" in out
    assert "[non-convex] module 'encoder.layer.1.attention.self'" in out and middle.name in out
    assert "[non-convex] module 'pooler'" in out


class ResidualLoop(torch.nn.Module):
    """``for layer in self.layers: x = x + layer(x)``: the ModuleList itself never runs."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)])

    def forward(self, x):
        for layer in self.layers:
            x = x + layer(x)
        return x


@pytest.mark.parametrize("strategy", ["htp", "dynamo", "usage_based", "fx"])
def test_a_container_that_never_ran_is_no_region_to_judge(tmp_path, capsys, strategy):
    path = tmp_path / "loop.onnx"
    modelexport.export_model(ResidualLoop(), torch.randn(2, 8), path, strategy=strategy)
    code, out, _ = cli(capsys, "validate", path)
    assert code == 0, out
    model = onnx.load(str(path))  # a wrong tag inside a layer that ran is still caught
    view = module_view(model, path)
    add = next(node for node, info in zip(model.graph.node, view.nodes)
               if node.op_type == "Add" and info.module == "")
    set_module(add, "layers.2")
    onnx.save(model, str(path))
    code, out, _ = cli(capsys, "validate", path)
    assert code == 1 and "[non-convex] module 'layers.2'" in out


def test_validate_reports_untagged_nodes():
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"], name="/block/Relu"),
         onnx.helper.make_node("Neg", ["y"], ["z"], name="neg")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2])]))
    report = validate_structure(module_view(model))
    untagged = [f for f in report.findings if f.check == "untagged"]
    assert not report.passed and untagged and untagged[0].nodes == ["neg"]


def test_validate_with_model_checks_parity(exported, capsys):
    code, out, _ = cli(capsys, "validate", exported("bert", "htp").path, "--model", "zoo:bert",
                       "--json")
    report = json.loads(out)
    assert code == 0 and report["parity"]["passed"] and report["passed"]


def test_validate_with_model_fails_tags_that_put_every_node_on_the_root(exported, tmp_path,
                                                                        capsys):
    """Root-only tags are well formed, known and convex; only ownership can catch them.

    Without the model ``validate`` cannot tell (it passes); with it, it asks
    what the export's self-check asks, by the same function.
    """
    path = copy_export(exported("bert", "htp").path, tmp_path / "rooted.onnx")
    model = onnx.load(str(path))
    root_tag = json.loads(sidecar_path_for(path).read_text())["modules"][0]["tag"]
    for node in model.graph.node:
        set_module(node, "")
        for prop in node.metadata_props:
            if prop.key == KEY_TAG:
                prop.value = root_tag
    onnx.save(model, str(path))
    assert cli(capsys, "validate", path)[0] == 0
    code, out, _ = cli(capsys, "validate", path, "--model", "zoo:bert", "--json")
    report = json.loads(out)
    assert code == 1 and report["parity"]["passed"] and not report["passed"]
    assert report["ownership"]["accuracy"] < 0.5
    assert [f["check"] for f in report["findings"]] == ["ownership"]
    good = json.loads(cli(capsys, "validate", exported("bert", "htp").path, "--model",
                          "zoo:bert", "--json")[1])
    assert good["ownership"]["accuracy"] == 1.0 and good["ownership"]["anchored_nodes"] > 0


def test_validate_says_when_the_file_holds_other_weights_than_the_model(exported, capsys):
    """A model rebuilt with another seed: parity fails, and validate says why."""
    good = json.loads(cli(capsys, "validate", exported("small_cnn", "htp").path, "--model",
                          "zoo:small_cnn", "--json")[1])
    assert "other-weights" not in [f["check"] for f in good["findings"]]
    factory = Path(exported("small_cnn", "htp").path).parent / "reseeded.py"
    factory.write_text("import torch\nimport model_zoo\n\ndef build():\n"
                       "    torch.manual_seed(1)\n"
                       "    model = model_zoo.get_entry('small_cnn').builder('tiny').eval()\n"
                       "    return model, torch.randn(1, 3, 32, 32)\n")
    code, out, _ = cli(capsys, "validate", exported("small_cnn", "htp").path, "--model",
                       f"{factory}:build", "--json")
    report = json.loads(out)
    assert code == 1 and not report["parity"]["passed"]
    assert "other-weights" in [f["check"] for f in report["findings"]]


def test_validate_against_another_model_names_what_each_side_has(exported, capsys):
    """The example's own names, never the file's bound to another model's tensors."""
    code, _, err = cli(capsys, "validate", exported("bert", "htp").path, "--model", "zoo:vit")
    assert code == 2
    assert err.strip() == ("error: the ONNX graph expects inputs ['input_ids', "
                           "'attention_mask']; the example has no input_ids, attention_mask "
                           "(it provides pixel_values)")


# --- per-module parity -------------------------------------------------------

def plant_divergence(source: Path, target: Path, module: str) -> Path:
    """Perturb the weights read by ``module``'s own nodes in a copy of an export."""
    copy_export(source, target)
    model = onnx.load(str(target))
    view = module_view(model, target)
    weights = {init.name: init for init in model.graph.initializer}
    planted = 0
    for node, info in zip(model.graph.node, view.nodes):
        for name in node.input:
            if info.module == module and name in weights:
                array = numpy_helper.to_array(weights[name])
                noise = np.random.default_rng(0).normal(0, 0.5, array.shape)
                weights[name].CopyFrom(numpy_helper.from_array(
                    (array + noise).astype(array.dtype), name))
                planted += 1
    assert planted, f"{module} reads no initializer"
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize("name,strategy,module", [
    ("bert", "htp", "encoder.layer.1.attention.self.query"),
    ("bert", "dynamo", "encoder.layer.0.intermediate.dense"),
    ("resnet", "htp", "encoder.stages.1.layers.0.layer.1.convolution"),
])
def test_per_module_parity_names_the_planted_layer(exported, tmp_path, capsys,
                                                   name, strategy, module):
    path = plant_divergence(exported(name, strategy).path, tmp_path / "planted.onnx", module)
    code, out, _ = cli(capsys, "validate", path, "--model", f"zoo:{name}", "--per-module",
                       "--json")
    report = json.loads(out)
    first = report["per_module"]["first_diverged"]
    assert code == 1 and not report["parity"]["passed"]
    assert first and first[0]["module"] == module
    assert report["per_module"]["matched"] > 0  # everything before it still agrees


def test_per_module_parity_finds_nothing_on_a_good_export(exported, capsys):
    code, out, _ = cli(capsys, "validate", exported("gpt2", "htp").path, "--model", "zoo:gpt2",
                       "--per-module")
    assert code == 0 and "0 diverge" in out


# --- compare -----------------------------------------------------------------

def test_compare_same_file_is_identical_and_strategies_differ(exported, capsys):
    htp, dynamo = exported("bert", "htp").path, exported("bert", "dynamo").path
    code, out, _ = cli(capsys, "compare", htp, htp, "--fail-on-difference")
    assert code == 0 and "0 differ" in out
    code, out, _ = cli(capsys, "compare", htp, dynamo, "--json", "--fail-on-difference")
    result = json.loads(out)
    assert code == 1 and not result["identical"]
    changed = {d["path"]: d for d in result["differences"]}
    # TorchScript keeps shape arithmetic as Constant nodes that dynamo folds away
    assert changed[""]["ops_delta"].get("Constant", 0) < 0


# --- extract -----------------------------------------------------------------

@pytest.mark.parametrize("name,strategy,module", [
    ("bert", "htp", "encoder.layer.1"),
    ("bert", "dynamo", "encoder.layer.0.attention"),
    ("resnet", "htp", "encoder.stages.0"),
    ("shared_block", "fx", "shared"),
])
def test_extract_runs_standalone_and_matches_the_boundary(exported, name, strategy, module):
    path = exported(name, strategy).path
    model = onnx.load(str(path))
    view = module_view(model, path)
    extraction = extract_module(view, module)
    out = extraction.model
    onnx.checker.check_model(out, full_check=True)
    assert all(t.module == module or t.module.startswith(module + ".")
               for t in read_tags(out).values() if t is not None and t.module)
    session = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == extraction.boundary.inputs
    for value in list(out.graph.input) + list(out.graph.output):
        assert value.type.tensor_type.HasField("shape"), value.name
    assert boundary_error(model, extraction) <= 1e-5


def test_extract_cli_writes_model_and_sidecar(exported, tmp_path, capsys):
    out = tmp_path / "layer.onnx"
    code, text, _ = cli(capsys, "extract", exported("bert", "htp").path,
                        "--module", "encoder.layer.0", "-o", out, "--verify")
    assert code == 0 and "boundary check" in text
    sidecar = json.loads(sidecar_path_for(out).read_text())
    assert {row["path"] for row in sidecar["modules"]} >= {"", "encoder", "encoder.layer.0"}
    assert not any(row["path"].startswith("encoder.layer.1") for row in sidecar["modules"])
    code, text, _ = cli(capsys, "validate", out)
    assert code == 0, text


def test_a_layer_extracted_from_a_static_model_is_static_and_profiles(tmp_path, capsys):
    entry = model_zoo.get_entry("bert")
    model = entry.build("tiny")
    static = tmp_path / "bert.onnx"
    modelexport.export_model(model, entry.inputs(model, "tiny"), static, strategy="htp",
                             static=True)
    out = tmp_path / "layer.onnx"
    cli(capsys, "extract", static, "--module", "encoder.layer.0", "-o", out)
    graph = onnx.load(str(out))
    for value in [*graph.graph.input, *graph.graph.output]:
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), value
    code, text, _ = cli(capsys, "profile", out, "--repeats", "3")
    assert code == 0 and "attention" in text


# --- profile -----------------------------------------------------------------

def test_profile_attributes_kernel_time_to_modules(exported, tmp_path, capsys):
    out = tmp_path / "profile.json"
    code, _, _ = cli(capsys, "profile", exported("bert", "htp").path, "--repeats", 3,
                     "--warmup", 1, "--format", "json", "-o", out)
    result = json.loads(out.read_text())
    rows = {m["path"]: m for m in result["modules"]}
    assert code == 0 and result["runs"] == 3
    assert result["optimized_nodes"] < result["original_nodes"]  # ORT fused nodes
    assert result["retag"]["coverage_after"] == 1.0
    assert sum(m["self_ms"] for m in result["modules"]) == pytest.approx(result["kernel_ms"])
    assert rows[""]["total_ms"] == pytest.approx(result["kernel_ms"])
    assert rows["encoder.layer.0"]["total_ms"] > 0 and rows["encoder.layer.1"]["total_ms"] > 0
    assert all(m["total_ms"] >= m["self_ms"] - 1e-9 for m in result["modules"])
    parts = result["parts"]
    assert parts["depth"] == 1
    assert parts["accounted_ms"] == pytest.approx(sum(m["self_wall_ms"]
                                                      for m in result["modules"]))
    # the parts are disjoint pieces of the runs: never more than the runs, never less than
    # the kernels' own time (a kernel's wall time is its duration and the wait before it)
    assert result["kernel_ms"] * 0.9999 <= parts["accounted_ms"] <= result["run_ms"] * 1.0001
    code, text, _ = cli(capsys, "profile", exported("resnet", "htp").path, "--repeats", 2,
                        "--depth", 2)
    assert code == 0 and "total ms" in text and "share" in text and "wall ms" in text
    code, text, _ = cli(capsys, "profile", exported("resnet", "htp").path, "--repeats", 2,
                        "--format", "csv", "--top", 3)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert code == 0 and len(rows) == 3 and rows[0]["path"] == ""  # the root has the most



@pytest.mark.parametrize("strategy", ["htp", "dynamo"])
def test_profile_puts_a_cnn_s_relaid_kernels_on_their_modules(exported, strategy, tmp_path,
                                                              capsys):
    """At level all ONNX Runtime rebuilds a CNN's convolutions in its NCHWc layout: new
    nodes named after the tensor they replace, writing new tensors.  They belong to
    the stages' blocks, not to the root."""
    out = tmp_path / "profile.json"
    code, _, _ = cli(capsys, "profile", exported("resnet", strategy).path, "--repeats", 2,
                     "--warmup", 1, "--format", "json", "-o", out)
    result = json.loads(out.read_text())
    # kernel counts, not times: a tiny CNN's kernels take microseconds, too noisy to compare
    kernels = {m["path"]: m["kernels"] for m in result["modules"]}
    in_encoder = sum(n for path, n in kernels.items() if path.startswith("encoder."))
    assert code == 0 and result["retag"]["rules"].get("renamed", 0) > 0
    assert kernels[""] < 0.25 * sum(kernels.values()) and in_encoder > 2 * kernels[""]


def test_profile_draws_the_parts_of_the_run_as_svg_and_png(exported, tmp_path, capsys):
    chart = tmp_path / "profile.svg"
    code, _, err = cli(capsys, "profile", exported("bert", "htp").path, "--repeats", 2,
                       "--depth", 2, "--plot", chart)
    assert code == 0 and "wrote" in err
    svg = ET.parse(chart).getroot()
    bars = [r for r in svg.iter("{http://www.w3.org/2000/svg}rect") if r.find(
        "{http://www.w3.org/2000/svg}title") is not None]
    labels = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert len(bars) >= 3 and "encoder.layer" in labels and "depth 2" in labels
    code, _, err = cli(capsys, "profile", exported("bert", "htp").path, "--repeats", 2,
                       "--depth", 2, "--plot", tmp_path / "profile.png")
    png = (tmp_path / "profile.png").read_bytes()
    assert code == 0 and png.startswith(b"\x89PNG\r\n\x1a\n")
    from PIL import Image

    with Image.open(tmp_path / "profile.png") as image:  # the bars are drawn, not a blank
        assert len(image.getcolors(1 << 16) or []) > 2
    code, _, err = cli(capsys, "profile", exported("bert", "htp").path, "--plot",
                       tmp_path / "profile.jpg")
    assert code != 0 and "SVG or PNG" in err and not (tmp_path / "profile.jpg").exists()


# --- retag after optimisers ----------------------------------------------------

@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name,strategy", [("bert", "htp"), ("gpt2", "htp"), ("llama", "htp"),
                                           ("resnet", "dynamo")])
def test_retag_restores_full_consistent_coverage(exported, optimizer, name, strategy):
    """Llama's attention-mask chains are identical in every layer: the optimisers merge
    them (common-subexpression elimination), and only lifting the merged chain to the
    layers' common ancestor keeps each layer's region convex."""
    path = exported(name, strategy).path
    original = onnx.load(str(path))
    reference = module_view(original, path)
    rewritten = optimize(original, optimizer)
    result = retag(rewritten, reference)
    assert result.coverage_after == 1.0
    view = module_view(rewritten)
    view.sidecar = reference.sidecar
    report = validate_structure(view)
    assert report.passed, [f.line() for f in report.findings]


def test_optimize_cli_reports_coverage_and_validates(exported, tmp_path, capsys):
    out = tmp_path / "slim.onnx"
    code, text, _ = cli(capsys, "optimize", exported("bert", "htp").path, "--with", "ort",
                        "-o", out, "--json")
    result = json.loads(text)
    assert code == 0 and result["coverage_before"] == 0.0 and result["coverage_after"] == 1.0
    assert result["rules"].get("replaced", 0) > 0  # fused nodes placed by what they replaced
    code, text, _ = cli(capsys, "validate", out)
    assert code == 0, text


def test_retag_cli_folds_duplicates_and_restores_dropped_tags(exported, tmp_path, capsys):
    source = exported("bert", "htp").path
    model = onnx.load(str(source))
    for node in model.graph.node[:5]:  # what a careless merge of metadata leaves
        node.metadata_props.add(key=KEY_MODULE, value="pooler")
    for node in model.graph.node[5:40]:  # and what a rewrite that drops metadata leaves
        del node.metadata_props[:]
    rewritten, out = tmp_path / "rewritten.onnx", tmp_path / "retagged.onnx"
    onnx.save(model, str(rewritten))
    code, text, _ = cli(capsys, "retag", rewritten, "--reference", source, "-o", out, "--json")
    result = json.loads(text)
    assert code == 0 and result["duplicates_fixed"] == 5
    assert result["coverage_before"] < 1.0 and result["coverage_after"] == 1.0
    assert read_tags(str(out)) == read_tags(str(source))  # every original tag came back
    code, text, _ = cli(capsys, "validate", out)
    assert code == 0, text


def test_retag_folds_duplicated_keys():
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    node.metadata_props.add(key=KEY_MODULE, value="a")
    node.metadata_props.add(key=KEY_MODULE, value="b")
    assert fold_duplicate_keys(node) and [p.value for p in node.metadata_props] == ["a"]
    assert not fold_duplicate_keys(node)


# --- a save_pretrained folder, end to end ---------------------------------------

def test_folder_model_export_then_validate_per_module(tmp_path, capsys):
    import transformers as hf

    folder = tmp_path / "bert-tiny"
    config = hf.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64)
    hf.BertModel(config).save_pretrained(folder)
    out = tmp_path / "bert.onnx"
    code, _, _ = cli(capsys, "export", "--model", folder, "-o", out, "--strategy", "htp",
                     "--sequence-length", 12)
    assert code == 0
    # validate regenerates inputs at the file's own (static) sequence length of 12
    code, text, _ = cli(capsys, "validate", out, "--model", folder, "--per-module")
    assert code == 0 and "parity passed" in text and "0 diverge" in text


def test_python_api_open_view_and_extract(exported, tmp_path):
    from modelexport.tools.module_view import open_view
    from modelexport.tools.writing import write_model

    view = open_view(exported("small_cnn", "htp").path, external_data=True)
    first = next(m.path for m in analyze(view).modules if m.path and m.nodes_total)
    target = write_model(tmp_path / "part.onnx", extract_module(view, first).model)
    onnx.checker.check_model(str(target), full_check=True)


def test_checks_do_not_spin_and_profiling_keeps_ort_default(tmp_path):
    """A check's few runs do not busy-wait idle threads; a profile times what deployment gets."""
    from modelexport.onnx_runtime.sessions import session_options
    from modelexport.validation.file_checks import check_file

    path = tmp_path / "m.onnx"
    modelexport.export_model(torch.nn.Linear(4, 4), torch.randn(2, 4), path, strategy="htp")
    options = check_file(path, keep_session=True).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(Exception, match="does not have"):  # unset: ONNX Runtime's default, spinning
        session_options(spinning=True).get_session_config_entry("session.intra_op.allow_spinning")
