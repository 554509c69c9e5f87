"""Fitting the selector from results, and scoring it in-sample and cross-validated."""

from __future__ import annotations

import json

import pytest

from modelexport.cli.commands import main
from modelexport.harness.cells import CellResult
from modelexport.harness.results import write_results
from modelexport.harness.selector_fit import (
    cross_validate,
    examples_for,
    fit_fallback_order,
    fit_objective,
    fit_rules,
)
from modelexport.names import Objective
from modelexport.selection.selector import RULES_SCHEMA, matching_rule


def cell(model, strategy, family, features, seconds, status="ok", latency=1.0):
    return CellResult(model=model, strategy=strategy, status=status, seconds=seconds,
                      coverage=1.0, exact=1.0, inherited=0.0, anchored_accuracy=1.0,
                      category=family, features=features, ort_latency_ms=latency)


def world(families=("audio", "vision", "decoder"), per_family=9):
    """Models where ``random_ops`` decides: the TorchScript trace fails on them, DYNAMO copes."""
    cells = []
    for family in families:
        for index in range(per_family):
            random = index % 3 == 0
            features = {"random_ops": random, "op_calls": float(10 * index)}
            name = f"{family}-{index}"
            cells.append(cell(name, "htp", family, features, 0.1,
                              status="export-failed" if random else "ok"))
            cells.append(cell(name, "dynamo", family, features, 1.0, latency=0.5))
            cells.append(cell(name, "usage_based", family, features, 0.4,
                              status="export-failed" if random else "ok"))
    return cells


def test_fit_finds_the_feature_that_decides_and_says_its_counts():
    table = fit_objective(examples_for(world(), Objective.SPEED))
    first, default = table["rules"][0], table["rules"][-1]
    assert first["when"] == [["random_ops", "is", True]] and first["strategy"] == "dynamo"
    assert (first["matched"], first["right"]) == (9, 9)
    assert default["when"] == [] and default["strategy"] == "htp"
    assert default["matched"] == 18 and default["right"] == 18
    assert table["fallback_order"][0] == "htp"


def test_runtime_objective_picks_the_fastest_file_not_the_fastest_export():
    table = fit_objective(examples_for(world(), Objective.RUNTIME))
    assert [r["strategy"] for r in table["rules"]] == ["dynamo"]


def test_cross_validation_recovers_a_rule_every_family_shares():
    score = cross_validate(world(), Objective.SPEED)
    assert score.scored_models == 27 and score.accuracy == 1.0 and score.regret == 0.0


def _vision_quirk():
    """On vision models only (marked by a feature only they have) HTP fails."""
    cells = world()
    for c in cells:
        vision = c.model.startswith("vision-")
        c.features = {**c.features, "uses_patches": vision}
        if vision and c.strategy == "htp":
            c.status = "export-failed"
    return cells


def test_a_rule_one_family_alone_supports_flatters_in_sample_and_fails_cross_validation(
        monkeypatch):
    import modelexport.harness.selector_fit as selector_fit

    monkeypatch.setattr(selector_fit, "MIN_FAMILIES", 1)
    monkeypatch.setattr(selector_fit, "MIN_FAMILY_FOLDS", 2)  # leave one of its families out
    cells = _vision_quirk()
    examples = examples_for(cells, Objective.SPEED)
    unpruned = fit_objective(examples, rule_limit=8)["rules"]
    assert all(matching_rule(unpruned, e.features)["strategy"] in e.best for e in examples)
    validated = cross_validate(cells, Objective.SPEED)
    assert validated.accuracy < 1.0
    missed = [v for v in validated.verdicts if v.correct is False]
    assert missed and all(v.model.startswith("vision-") for v in missed)
    assert all(v.regret > 0 for v in missed)  # the failed HTP attempt costs time


def test_the_fit_learns_no_rule_that_only_one_family_supports():
    table = fit_objective(examples_for(_vision_quirk(), Objective.SPEED))
    assert not any(t[0] == "uses_patches" for r in table["rules"] for t in r["when"])


def test_rules_that_do_not_carry_to_held_out_families_are_pruned_away():
    """Labels that no feature explains: any rule fitted on them is noise, so none is kept."""
    import random

    rng = random.Random(0)
    cells = []
    for family in ("audio", "vision", "decoder", "encoder"):
        for index in range(12):
            features = {f"flag{i}": rng.random() < 0.5 for i in range(6)}
            features["size"] = float(rng.randint(1, 100))
            htp_fails = rng.random() < 0.45
            name = f"{family}-{index}"
            cells.append(cell(name, "htp", family, features, 0.1,
                              status="export-failed" if htp_fails else "ok"))
            cells.append(cell(name, "dynamo", family, features, 1.0))
    examples = examples_for(cells, Objective.SPEED)
    assert fit_objective(examples, rule_limit=8)["rules"][:-1], "unpruned, the fit finds rules"
    table = fit_objective(examples)
    assert table["rule_limit"] == 0 and [r["strategy"] for r in table["rules"]] == ["htp"]


def test_rules_that_carry_are_kept():
    table = fit_objective(examples_for(world(), Objective.SPEED))
    assert table["rule_limit"] >= 1 and len(table["rules"]) == 2


def test_fallback_order_puts_next_what_is_best_where_the_first_fails():
    examples = examples_for(world(), Objective.SPEED)
    assert fit_fallback_order(examples, ["usage_based", "dynamo", "htp"])[:2] == \
        ["htp", "dynamo"]


def test_a_model_missing_a_feature_never_matches_a_rule_on_it():
    table = fit_objective(examples_for(world(), Objective.SPEED))
    assert matching_rule(table["rules"], {})["when"] == []


def _world_results(folder):
    """``world()`` written as a wide-tier results.json of commit abc."""
    results = folder / "results.json"
    write_results(results, {"environment": {"git_commit": "abc"},
                            "settings": {"tier": "wide", "models": ["m"]},
                            "cells": [c.to_dict() for c in world()]})
    return results


def test_fit_selector_cli_writes_rules_that_the_selector_reads(tmp_path, capsys):
    results = _world_results(tmp_path)
    rules = tmp_path / "rules.json"
    assert main(["zoo", "fit-selector", str(results), "--out", str(rules)]) == 0
    out = capsys.readouterr().out
    assert "random_ops -> dynamo (best on 9 of 9)" in out
    assert "cross-validated: accuracy 100.0% of 27 models (always htp: 66.7%)" in out
    table = json.loads(rules.read_text())
    assert table["schema"] == RULES_SCHEMA and set(table["objectives"]) == {
        "speed", "quality", "runtime"}
    sources = table["objectives"]["speed"]["fitted_from"]
    assert sources[0]["tier"] == "wide"
    assert table == json.loads(json.dumps(fit_rules(_qualified(world()), sources)))


def test_fit_selector_refits_only_the_objectives_named(tmp_path, capsys):
    """``--objective quality``: speed and runtime keep the shipped tables, sources included."""
    from modelexport.selection.selector import load_rules

    results = _world_results(tmp_path)
    rules = tmp_path / "rules.json"
    assert main(["zoo", "fit-selector", str(results), "--out", str(rules),
                 "--objective", "quality"]) == 0
    assert "speed (kept as shipped)" in capsys.readouterr().out
    table, shipped = json.loads(rules.read_text()), load_rules()
    for kept in ("speed", "runtime"):
        assert table["objectives"][kept] == shipped["objectives"][kept]
    assert table["objectives"]["quality"]["fitted_from"][0]["git_commit"] == "abc"
    assert table["objectives"]["quality"] != shipped["objectives"]["quality"]


def _qualified(cells):
    for c in cells:
        c.model = f"wide:{c.model}"
    return cells


def test_fit_selector_dry_run_writes_nothing_and_bad_results_fail_in_one_line(tmp_path,
                                                                               capsys):
    results = tmp_path / "results.json"
    write_results(results, {"environment": {}, "settings": {"tier": "tiny", "models": []},
                            "cells": [c.to_dict() for c in world()]})
    rules = tmp_path / "rules.json"
    assert main(["zoo", "fit-selector", str(results), "--out", str(rules), "--dry-run"]) == 0
    assert not rules.exists()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    capsys.readouterr()
    assert main(["zoo", "fit-selector", str(broken), "--out", str(rules)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot read results")
    assert not rules.exists()


@pytest.mark.parametrize("objective", list(Objective))
def test_shipped_rules_cover_every_objective(objective):
    from modelexport.selection.selector import load_rules

    table = load_rules()["objectives"][objective.value]
    assert table["rules"][-1]["when"] == []
    assert all(0 <= r["right"] <= r["matched"] for r in table["rules"])
    assert sorted(table["fallback_order"]) == sorted(["dynamo", "htp", "usage_based", "fx"])


def test_too_few_families_hold_out_models_instead():
    """Leaving out one of three families would fit on a fragment of the data."""
    from modelexport.harness.selector_fit import MIN_FAMILY_FOLDS, held_out_groups

    cells = _vision_quirk()
    examples = examples_for(cells, Objective.SPEED)
    families = {e.family for e in examples}
    assert len(families) < MIN_FAMILY_FOLDS
    groups = held_out_groups(examples)
    assert not families & set().union(*groups)  # models, not families, are held out
    assert "too few to leave one out" in cross_validate(cells, Objective.SPEED).validation
