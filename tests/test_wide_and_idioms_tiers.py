"""The generated wide tier and the idioms tier: coverage, shrinking, probing, scoring."""

from __future__ import annotations

import pytest
from transformers.models.auto import modeling_auto

import model_zoo
from model_zoo import wide
from model_zoo.shrink import shrink_dict
from modelexport.cli.commands import main
from modelexport.harness.cells import NOT_RUNNABLE, OK, CellResult
from modelexport.harness.scoreboard import family_pass_rates


def test_wide_tier_has_one_entry_per_architecture_of_the_installed_transformers():
    names = {e.name for e in model_zoo.entries("wide")}
    assert names == {wide.PREFIX + t for t in modeling_auto.MODEL_MAPPING_NAMES} | {
        wide.PREFIX + t + wide.GENERATION_SUFFIX
        for t in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES} | {
        wide.PREFIX + t + wide.SEQ2SEQ_GENERATION_SUFFIX
        for t in modeling_auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES}
    assert {e.category for e in model_zoo.entries("wide") if e.category} <= set(wide.CATEGORIES)


@pytest.mark.parametrize(("model_type", "category"), [
    ("clip_vision_model", "vision"), ("aimv2", "multimodal"), ("dac", "audio")])
def test_a_type_no_task_mapping_names_is_categorised_from_its_forward(model_type, category):
    entry = model_zoo.get_entry(wide.PREFIX + model_type)
    assert entry.category == ""
    assert entry.categorize(entry.build("wide")) == category


def test_zoo_list_probe_reports_the_family_read_off_the_model():
    probe = model_zoo.get_entry(wide.PREFIX + "clip_vision_model").probe("wide")
    assert probe.runs and probe.family == "vision"


@pytest.mark.parametrize(("model_type", "category"), [
    ("llama", "decoder"), ("bert", "encoder"), ("t5", "encoder-decoder"),
    ("vit", "vision"), ("wav2vec2", "audio"), ("clip", "multimodal")])
def test_categories_come_from_the_task_mappings(model_type, category):
    assert wide.category(model_type) == category


def test_shrinking_only_shrinks_and_follows_the_layer_count():
    shrunk = shrink_dict({
        "hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 28,
        "layer_types": ["full"] * 28, "vocab_size": 151_936, "pad_token_id": 151_643,
        "eos_token_id": 151_645, "num_channels": 3, "depths": [3, 4, 6, 3],
        "hidden_sizes": [256, 512, 1024, 2048], "out_features": ["stage4"],
        "rope_scaling": {"mrope_section": [16, 24, 24]},
        "text_config": {"model_type": "x", "d_model": 1024, "intermediate_size": 16},
    })
    assert shrunk["hidden_size"] == 32 and shrunk["num_attention_heads"] == 2
    assert shrunk["num_hidden_layers"] == 2 and shrunk["layer_types"] == ["full"] * 2
    assert shrunk["vocab_size"] == 1024 and shrunk["num_channels"] == 3
    assert shrunk["pad_token_id"] < 1024 and shrunk["eos_token_id"] < 1024
    assert shrunk["pad_token_id"] != shrunk["eos_token_id"]
    assert shrunk["depths"] == [1, 1, 1, 1]
    assert shrunk["hidden_sizes"] == [16, 32, 64, 128]  # ratios kept
    assert shrunk["out_features"] is None  # re-derived by the config
    assert sum(shrunk["rope_scaling"]["mrope_section"]) == 8  # half of a 16-wide head
    assert shrunk["text_config"] == {"model_type": "x", "d_model": 32, "intermediate_size": 16}


@pytest.mark.parametrize("model_type", ["qwen2", "mixtral", "whisper", "swin"])
def test_a_shrunk_default_config_builds_a_small_model_that_runs(model_type):
    entry = model_zoo.get_entry(wide.PREFIX + model_type)
    probe = entry.probe("wide")
    assert probe.runs, probe.reason
    assert 0 < probe.parameters <= wide.MAX_PARAMETERS


def test_an_architecture_too_large_after_shrinking_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(wide, "MAX_PARAMETERS", 1000)
    probe = model_zoo.get_entry(wide.PREFIX + "bert").probe("wide")
    assert not probe.runs and "parameters after shrinking" in probe.reason


def test_zoo_list_wide_names_why_an_entry_cannot_run(capsys, monkeypatch):
    monkeypatch.setattr(wide, "MAX_PARAMETERS", 1000)
    keep = {wide.PREFIX + "bert"}
    monkeypatch.setattr(model_zoo, "entries",
                        lambda tier=None: [e for e in model_zoo.registry.entries(tier)
                                           if e.name in keep])
    assert main(["zoo", "list", "--tier", "wide"]) == 0
    out = capsys.readouterr().out
    assert "hf-bert" in out and "does not run: ValueError: still" in out
    assert "0 of 1 entries build and run eagerly" in out


def test_idioms_tier_covers_what_the_issue_lists():
    names = {e.name for e in model_zoo.entries("idioms")}
    assert len(names) >= 15
    assert {"root_sequential", "nested_sequential", "transformer_encoder",
            "transformer_decoder", "multihead_attention", "lstm", "gru",
            "moduledict_routing", "modulelist_residual", "module_called_twice",
            "shared_submodule", "functional_root", "folded_batchnorm", "tied_embedding",
            "where_gating", "dict_output", "nested_outputs", "int_bool_inputs"} <= names


@pytest.mark.parametrize("name", [e.name for e in model_zoo.entries("idioms")])
def test_every_idiom_runs_eagerly(name):
    entry = model_zoo.get_entry(name)
    probe = entry.probe("idioms")
    assert probe.runs, probe.reason


def test_family_pass_rates_leave_models_that_cannot_run_out_of_the_denominator():
    cells = [CellResult("a", "auto", OK, category="decoder"),
             CellResult("b", "auto", "export-failed", category="decoder"),
             CellResult("c", "auto", NOT_RUNNABLE, category="decoder"),
             CellResult("d", "auto", OK, category="vision")]
    rates = family_pass_rates(cells, ["auto"])
    assert rates["decoder"]["auto"] == {"ok": 1, "runs": 2}
    assert rates["all"]["auto"] == {"ok": 2, "runs": 3}
    assert list(rates)[-1] == "all"


def test_signature_driven_inputs_cover_text_vision_audio_and_encoder_decoder():
    from modelexport.input_generation.from_signature import generate_inputs

    def inputs_for(model_type: str) -> dict:
        return generate_inputs(model_zoo.get_entry(wide.PREFIX + model_type).build("wide"))

    assert set(inputs_for("bert")) == {"input_ids", "attention_mask"}
    assert set(inputs_for("vit")) == {"pixel_values"}
    assert set(inputs_for("wav2vec2")) == {"input_values"}
    assert {"input_features", "decoder_input_ids"} <= set(inputs_for("whisper"))
    assert {"input_ids", "pixel_values"} <= set(inputs_for("clip"))


def test_every_idiom_exports_under_auto_with_right_tags():
    """The whole idioms tier through the matrix, AUTO only: every cell must be ok
    (self-check, coverage 1.0, parity on fresh inputs)."""
    from modelexport.harness.runner import run_matrix

    run = run_matrix(tier="idioms", strategies=["auto"], jobs=2)
    failed = {c.model: f"{c.status}: {c.error}" for c in run.cells if c.status != OK}
    assert not failed
    assert all(c.coverage == 1.0 and c.anchored_accuracy in (None, 1.0) for c in run.cells)
