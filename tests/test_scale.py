"""The matrix at scale: shards that merge into a single run's figures, and Dask workers.

Timings differ between any two runs, so a real shard-and-merge is compared
with a real single run on the figures that do not rest on a clock (verdicts,
coverage, anchored accuracy, node counts, the quality objective's scores);
splitting one run's own results into shards and merging them back must give
every figure, timed ones included, exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelexport.harness.cells import CellResult
from modelexport.harness.runner import merge_runs, run_matrix
from modelexport.harness.sharding import Shard, assign, cell_costs, model_costs, shard_models

FAULTY = str(Path(__file__).parent / "plugins" / "faulty_strategies.py")
MODELS = ["small_cnn", "shared_block", "bert"]
STRATEGIES = ["htp", "usage_based", "dynamo"]
UNTIMED = ("status", "coverage", "anchored_accuracy", "nodes", "exact", "inherited", "root",
           "operator_known", "reference_agreement")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelexport.cli", *args],
                          capture_output=True, text=True, check=False)


def untimed(results: dict) -> dict:
    return {(c["model"], c["strategy"]): tuple(c[k] for k in UNTIMED) for c in results["cells"]}


def test_assignment_is_deterministic_complete_and_balanced():
    costs = {f"m{i}": float(c) for i, c in enumerate([50, 1, 7, 30, 30, 2, 9, 14, 3, 21])}
    models = list(costs)
    shards = assign(models, costs, 3)
    assert assign(models, costs, 3) == shards
    assert sorted(m for s in shards for m in s) == sorted(models)
    for part in shards:  # each shard keeps the tier's order
        assert part == [m for m in models if m in part]
    loads = [sum(costs[m] for m in part) for part in shards]
    # longest-first to the lightest shard is within 4/3 of the best split
    assert max(loads) <= 4 / 3 * max(sum(loads) / 3, max(costs.values()))


def test_unknown_costs_count_as_the_median():
    shards = assign(["a", "b", "c", "new"], {"a": 1.0, "b": 5.0, "c": 9.0}, 2)
    assert sorted(map(len, shards)) == [2, 2]


def test_a_shard_keeps_both_weight_modes_of_an_entry():
    models = ["a", "a@native", "b", "b@native", "c", "c@native"]
    parts = [shard_models(models, {"a": 1.0, "b": 2.0, "c": 3.0}, Shard(i, 2)) for i in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(models)
    for part in parts:
        assert {m.partition("@")[0] for m in part} == {m for m in part if "@" not in m}


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0"])
def test_bad_shard_is_a_one_line_argument_error(text):
    with pytest.raises(ValueError):
        Shard.parse(text)
    done = cli("zoo", "run", "--shard", text)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture(scope="module")
def single_and_sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale")
    # a 3-model subset is judged on equality with the single run, not on the
    # tiny tier's selector floors (on 3 models, one timing flip is a third)
    ungated = out / "no-expectations.json"
    ungated.write_text('{"schema": "modelexport.zoo-expectations/1", "tiers": {}}')
    common = ["zoo", "run", "--models", *MODELS, "--strategies", *STRATEGIES,
              "--weights", "seeded", "--expectations", str(ungated)]
    single = cli(*common, "--out", str(out / "single"))
    assert single.returncode == 0, single.stderr
    costs = out / "costs.json"
    assert cli("zoo", "costs", str(out / "single" / "results.json"), "--out",
               str(costs)).returncode == 0
    for index in (1, 2):
        done = cli(*common, "--shard", f"{index}/2", "--costs", str(costs),
                   "--out", str(out / f"shard{index}"))
        assert done.returncode == 0, done.stderr
    merged = cli("zoo", "merge", str(out / "shard1" / "results.json"),
                 str(out / "shard2" / "results.json"), "--out", str(out / "merged"),
                 "--expectations", str(ungated))
    assert merged.returncode == 0, merged.stderr
    return out


def read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_shards_split_the_models_and_merge_into_the_single_runs_verdicts(single_and_sharded):
    out = single_and_sharded
    parts = [read(out / f"shard{i}" / "results.json")["settings"]["models"] for i in (1, 2)]
    assert sorted(parts[0] + parts[1]) == sorted(MODELS) and parts[0] and parts[1]
    single, merged = read(out / "single" / "results.json"), read(out / "merged" / "results.json")
    assert merged["settings"]["models"] == single["settings"]["models"]
    assert untimed(merged) == untimed(single)
    # The picks rest on features alone; the best sets also on export times
    # (quality breaks its ties by speed), which two runs measure differently.
    picks = [[(v["model"], v["pick"]) for v in run["selector"]["quality"]["verdicts"]]
             for run in (merged, single)]
    assert picks[0] == picks[1] and picks[0]
    assert (out / "merged" / "scoreboard.md").read_text().startswith("# Zoo scoreboard")


@pytest.mark.slow
def test_merging_one_runs_own_shards_gives_every_figure_exactly(single_and_sharded, tmp_path):
    single = read(single_and_sharded / "single" / "results.json")
    cells = [CellResult.from_dict(c) for c in single["cells"]]
    parts = assign(single["settings"]["models"], model_costs(cell_costs(cells)), 2)
    paths = []
    for index, part in enumerate(parts, start=1):
        shard = {**single, "cells": [c for c in single["cells"] if c["model"] in part],
                 "settings": {**single["settings"], "models": part,
                              "shard": {"index": index, "count": 2,
                                        "tier_models": single["settings"]["models"]}}}
        paths.append(tmp_path / f"{index}.json")
        paths[-1].write_text(json.dumps(shard))
    merged = merge_runs(paths).payload()
    for key in ("cells", "summary", "selector", "selector_cv", "family_pass_rates"):
        assert merged[key] == single[key], key


@pytest.mark.slow
def test_merge_refuses_an_incomplete_or_mixed_set(single_and_sharded, tmp_path):
    out = single_and_sharded
    first = str(out / "shard1" / "results.json")
    missing = cli("zoo", "merge", first, "--out", str(tmp_path / "m"))
    assert missing.returncode == 2 and "missing shard 2/2" in missing.stderr
    twice = cli("zoo", "merge", first, first, "--out", str(tmp_path / "m"))
    assert "given twice" in twice.stderr
    not_a_shard = cli("zoo", "merge", str(out / "single" / "results.json"),
                      "--out", str(tmp_path / "m"))
    assert "is not a shard" in not_a_shard.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_distributed_cluster_gives_the_local_verdicts_and_contains_a_killed_worker():
    distributed = pytest.importorskip("distributed")
    import dask

    models, strategies = ["small_cnn", "shared_block"], ["htp", "usage_based", "crashing"]
    local = run_matrix(models=models, strategies=strategies, plugins=[FAULTY], timeout=60)
    # one death is enough to give up on a cell (the default retries it on 3 more workers)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster:
        remote = run_matrix(models=models, strategies=strategies, plugins=[FAULTY],
                            timeout=60, scheduler=cluster.scheduler_address)
    assert [c.key for c in remote.cells] == [c.key for c in local.cells]
    for here, there in zip(local.cells, remote.cells, strict=True):
        assert (there.status, there.coverage, there.nodes) == \
            (here.status, here.coverage, here.nodes), there.key
    crashed = [c for c in remote.cells if c.strategy == "crashing"]
    assert {c.status for c in crashed} == {"crashed"}
    assert all("KilledWorker" in c.error for c in crashed)


@pytest.mark.slow
def test_a_cell_past_its_timeout_on_the_cluster_is_a_timeout_and_the_run_goes_on():
    distributed = pytest.importorskip("distributed")

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        run = run_matrix(models=["small_cnn"], strategies=["hanging", "htp"], plugins=[FAULTY],
                         timeout=15, scheduler=cluster.scheduler_address)
    status = {c.strategy: c.status for c in run.cells}
    assert status == {"hanging": "timeout", "htp": "ok"}


@pytest.mark.parametrize("tier", ["tiny", "idioms"])
def test_recorded_costs_list_every_entry_of_the_tier(tier):
    """The asv suite reads its parameters from this file: it must match the zoo."""
    from model_zoo import entries, get_entry  # noqa: F401  (registers the entries)

    recorded = json.loads((Path(__file__).parents[1] / "model_zoo" / "costs.json").read_text())
    assert sorted(recorded["tiers"][tier]) == sorted(e.name for e in entries(tier))


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_error_line_and_no_output(tmp_path):
    done = cli("zoo", "run", "--models", "small_cnn", "--strategies", "htp",
               "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error: cannot reach the Dask scheduler")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_corrupt_costs_file_is_one_error_line_and_left_as_it_was(tmp_path):
    costs = tmp_path / "costs.json"
    costs.write_text("{not json")
    for command in (["zoo", "costs", str(tmp_path / "none.json"), "--out", str(costs)],
                    ["zoo", "run", "--models", "small_cnn", "--shard", "1/2", "--costs",
                     str(costs), "--out", str(tmp_path / "out")]):
        done = cli(*command)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert costs.read_text() == "{not json"
