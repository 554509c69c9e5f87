"""Fitting the selector's rules from zoo results, and scoring them honestly.

The rules (``selection_rules.json``) are an ordered decision list per
objective, learned by sequential covering: starting from "always pick the
strategy most often best", add the rule (one test, or two joined by *and*,
on the analyzer's features) that most raises the number of models whose
pick lands in the best set, among the models no earlier rule caught; stop
when no rule gains at least ``MIN_GAIN`` models in at least ``MIN_FAMILIES``
architecture families (a rule only one family supports is that family's
quirk, and cannot carry to models nobody here wrote).  How many of those
rules to keep is chosen by cross-validation on the fitted models (none, if
none carry to families they were not fitted on).  A decision list stays
readable, and each rule keeps the counts it was fitted on (``matched``,
``right``) so the confidence it reports is a measured share.

The fallback order AUTO follows after the pick is fitted too: each next
strategy is the one most often best among the models where every earlier
one fails to give a usable file.

In-sample accuracy flatters any fit, so every figure is also given
cross-validated by architecture family: the rules for a family's models are
fitted, rule count included, without that family (``cross_validate``).  A
rule that only memorised one family cannot hide there, and every score
carries the best constant pick's accuracy beside it, so neither can a
selector that does no better than always naming one strategy.  Only the
built-in strategies are candidates: a rule names an ``ExportStrategy``.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelexport.analysis.analyzer import ModelAnalyzer
from modelexport.errors import ModelExportError, one_line
from modelexport.harness.cells import NOT_RUNNABLE, CellResult
from modelexport.harness.results import read_results
from modelexport.harness.scoring import (
    SelectorScore,
    best_cells,
    by_model,
    eligible,
    score_selector,
)
from modelexport.names import ExportStrategy, Objective
from modelexport.selection.selector import RULES_SCHEMA, describe_tests, matching_rule

MAX_RULES = 8  # per objective: beyond this a list stops being readable
MAX_FOLDS = 10  # cross-validation folds at most
MIN_GAIN = 2  # a rule must fix at least this many training models
MIN_SUPPORT = 3  # and match at least this many
MIN_FAMILIES = 2  # and gain in this many families: one family's quirk does not generalise
# Cross-validation leaves one family out only with at least this many families;
# with fewer, a held-out family takes away most of the data (see holds_out_families).
MIN_FAMILY_FOLDS = 5
QUANTILES = (0.2, 0.4, 0.6, 0.8)  # thresholds tried on numeric features
CANDIDATES = tuple(s.value for s in ExportStrategy if s is not ExportStrategy.AUTO)

Test = tuple[str, str, Any]


@dataclass(frozen=True)
class Example:
    """One model as the fit sees it: features, family, and which strategies were best."""

    model: str
    family: str
    features: dict[str, Any]
    best: frozenset[str]
    usable: frozenset[str]
    seconds: dict[str, float]  # export CPU time of each usable strategy


def examples_for(cells: list[CellResult], objective: Objective) -> list[Example]:
    """Every model with at least one eligible cell (others have no right answer)."""
    found = []
    for model, by_strategy in by_model(cells).items():
        candidates = [c for s, c in by_strategy.items() if s in CANDIDATES]
        best = best_cells(candidates, objective)
        if not best:
            continue
        first = candidates[0]
        features = next((c.features for c in candidates if c.features), {})
        usable = [c for c in candidates if eligible(c)]
        found.append(Example(model, first.category or "other", features,
                             frozenset(c.strategy for c in best),
                             frozenset(c.strategy for c in usable),
                             {c.strategy: c.judged_seconds for c in usable}))
    return found


def _mask(examples: list[Example], keep: Any) -> int:
    return sum(1 << i for i, example in enumerate(examples) if keep(example))


def _is_flag(values: list[Any]) -> bool:
    return all(isinstance(v, bool) for v in values)


def _threshold(value: float) -> float:
    """Two significant figures: a readable threshold (``op_calls >= 1200``)."""
    return float(f"{value:.2g}")


def single_tests(examples: list[Example]) -> list[tuple[tuple[Test, ...], int]]:
    """Every one-test condition worth trying, with the examples it matches.

    Flags are tested both ways; numbers at their quantiles.  Conditions that
    match the same examples as an earlier one are dropped.
    """
    names = sorted({name for e in examples for name in e.features})
    found: list[tuple[tuple[Test, ...], int]] = []
    seen: set[int] = set()

    def add(test: Test, mask: int) -> None:
        if mask and mask not in seen:
            seen.add(mask)
            found.append(((test,), mask))

    for name in names:
        values = [e.features[name] for e in examples if name in e.features]
        if _is_flag(values):
            for wanted in (True, False):
                add((name, "is", wanted), _mask(examples, lambda e, n=name, w=wanted:
                                                  n in e.features and e.features[n] is w))
            continue
        if len(values) < 2:
            continue
        percentiles = statistics.quantiles(values, n=100)
        cuts = sorted({_threshold(percentiles[round(q * 100) - 1]) for q in QUANTILES})
        for cut in cuts:
            add((name, ">=", cut), _mask(examples, lambda e, n=name, c=cut:
                                         n in e.features and e.features[n] >= c))
            add((name, "<", cut), _mask(examples, lambda e, n=name, c=cut:
                                        n in e.features and e.features[n] < c))
    return found


def conditions(examples: list[Example]) -> list[tuple[tuple[Test, ...], int]]:
    """Single tests, and pairs of tests on different features joined by *and*."""
    singles = single_tests(examples)
    pairs = []
    seen = {mask for _, mask in singles}
    for (first, a), (second, b) in itertools.combinations(singles, 2):
        both = a & b
        if first[0][0] != second[0][0] and both.bit_count() >= MIN_SUPPORT and both not in seen:
            seen.add(both)
            pairs.append((first + second, both))
    return singles + pairs


def by_export_time(examples: list[Example], strategies: Iterable[str]) -> list[str]:
    """``strategies``, fastest median export first (over the models each could export)."""
    def median_seconds(strategy: str) -> float:
        times = [e.seconds[strategy] for e in examples if strategy in e.seconds]
        return statistics.median(times) if times else float("inf")

    return sorted(strategies, key=median_seconds)


def _most_often_best(within: int, best: dict[str, int], strategies: list[str]) -> str:
    """The strategy most often best; within ``MIN_GAIN`` models of that, the fastest to export.

    A difference smaller than a rule would need is no evidence, and then the
    strategy that costs the user less time is the better default: under the
    runtime objective HTP and USAGE_BASED write the same file.
    """
    counts = {s: (within & best[s]).bit_count() for s in strategies}
    top = max(counts.values())
    return next(s for s in strategies if counts[s] > top - MIN_GAIN)


def fit_objective(examples: list[Example], strategies: Iterable[str] = CANDIDATES,
                  rule_limit: int | None = None) -> dict[str, Any]:
    """The decision list and fallback order for one objective (see module doc).

    ``rule_limit`` None: as many rules as cross-validate best on ``examples``
    themselves (:func:`cross_validated_rule_limit`), so the list stops where
    further rules would only describe the families they were fitted on.
    """
    strategies = by_export_time(examples, [s for s in strategies
                                           if any(s in e.usable for e in examples)]
                                or list(strategies))
    if rule_limit is None:
        rule_limit = cross_validated_rule_limit(examples, strategies)
    rules, defaults = _greedy_rules(examples, strategies, rule_limit)
    return {"fitted_models": len(examples), "rule_limit": rule_limit,
            "fallback_order": fit_fallback_order(examples, strategies),
            "rules": [*rules, defaults[-1]]}


def _greedy_rules(examples: list[Example], strategies: list[str], limit: int,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Sequential covering, up to ``limit`` rules.

    Returns the rules and, for every prefix of them, the default rule that
    would close the list there (``defaults[k]`` follows the first k rules).
    """
    everything = (1 << len(examples)) - 1
    best = {s: _mask(examples, lambda e, s=s: s in e.best) for s in strategies}
    families = [_mask(examples, lambda e, f=f: e.family == f)
                for f in sorted({e.family for e in examples})]
    need_families = min(MIN_FAMILIES, len(families))
    uncovered = everything
    options = conditions(examples)
    rules: list[dict[str, Any]] = []
    defaults: list[dict[str, Any]] = []
    while True:
        default = _most_often_best(uncovered or everything, best, strategies)
        defaults.append(_rule((), default, uncovered.bit_count(),
                              (uncovered & best[default]).bit_count()))
        if len(rules) >= limit:
            break
        chosen = None
        for tests, mask in options:
            within = uncovered & mask
            support = within.bit_count()
            if support < MIN_SUPPORT:
                continue
            base = (within & best[default]).bit_count()
            for strategy in strategies:
                right = (within & best[strategy]).bit_count()
                key = (right - base, -len(tests), right / support)
                if right - base < MIN_GAIN or (chosen is not None and key <= chosen[0]):
                    continue
                if _families_gaining(within, best[strategy], best[default],
                                     families) >= need_families:
                    chosen = (key, tests, mask, strategy, support, right)
        if chosen is None:
            break
        _, tests, mask, strategy, support, right = chosen
        rules.append(_rule(tests, strategy, support, right))
        uncovered &= ~mask
    return rules, defaults


def holds_out_families(examples: list[Example]) -> bool:
    """Whether cross-validation leaves one family out (else it holds out models in folds).

    Only with ``MIN_FAMILY_FOLDS`` families or more.  The tiny tier has three
    (cnn, transformer, custom) and 13 of its 23 models are transformers:
    holding that family out fitted the rules on ten CNNs and custom models,
    whose default then hinged on which of two near-equal strategies exported
    those ten faster: the tier's cross-validated speed accuracy measured 39%
    on code whose earlier run had set a floor of 87%.
    """
    return len({e.family for e in examples}) >= MIN_FAMILY_FOLDS


def held_out_groups(examples: list[Example]) -> list[set[str]]:
    """What cross-validation holds out in turn: families, or models (``holds_out_families``).

    At most ``MAX_FOLDS`` groups: beyond that, groups are dealt round-robin
    into folds, so a single large family costs ten fits, not one per model.
    """
    families = sorted({e.family for e in examples})
    names = families if holds_out_families(examples) else sorted(e.model for e in examples)
    folds: list[set[str]] = [set() for _ in range(min(MAX_FOLDS, len(names)))]
    for index, name in enumerate(names):
        folds[index % len(folds)].add(name)
    return folds


def _group_of(example: Example, by_family: bool) -> str:
    return example.family if by_family else example.model


def cross_validated_rule_limit(examples: list[Example], strategies: list[str]) -> int:
    """The rule count (0 to ``MAX_RULES``) whose lists pick best on held-out groups.

    Ties go to the shorter list: fewer rules that do as well are the better
    bet on models nobody here wrote.
    """
    by_family = holds_out_families(examples)
    right = [0] * (MAX_RULES + 1)
    for held in held_out_groups(examples):
        training = [e for e in examples if _group_of(e, by_family) not in held]
        testing = [e for e in examples if _group_of(e, by_family) in held]
        if not training or not testing:
            continue
        rules, defaults = _greedy_rules(training, strategies, MAX_RULES)
        for count in range(MAX_RULES + 1):
            table = [*rules[:count], defaults[min(count, len(rules))]]
            right[count] += sum(matching_rule(table, e.features)["strategy"] in e.best
                                for e in testing)
    return right.index(max(right))


def _families_gaining(within: int, chosen: int, default: int, families: list[int]) -> int:
    """In how many families the rule fixes more models than it breaks."""
    return sum(1 for family in families
               if (within & family & chosen).bit_count() > (within & family & default).bit_count())


def _rule(tests: tuple[Test, ...], strategy: str, matched: int, right: int) -> dict[str, Any]:
    name = describe_tests(tests) or "default"
    return {"name": name, "when": [list(t) for t in tests], "strategy": strategy,
            "matched": matched, "right": right}


def fit_fallback_order(examples: list[Example], strategies: list[str]) -> list[str]:
    """Each next strategy: most often best where every earlier one gave no usable file."""
    best = {s: _mask(examples, lambda e, s=s: s in e.best) for s in strategies}
    usable = {s: _mask(examples, lambda e, s=s: s in e.usable) for s in strategies}
    order: list[str] = []
    remaining = (1 << len(examples)) - 1
    while len(order) < len(strategies):
        left = [s for s in strategies if s not in order]
        pick = max(left, key=lambda s: ((remaining & best[s]).bit_count(),
                                        (remaining & usable[s]).bit_count(),
                                        usable[s].bit_count(), -strategies.index(s)))
        order.append(pick)
        remaining &= ~usable[pick]
    return order


def fit_rules(cells: list[CellResult], sources: list[dict[str, Any]],
              objectives: Iterable[Objective] | None = None,
              kept: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole ``selection_rules.json``: the ``objectives`` (default all) fitted on ``cells``.

    The others keep their tables from ``kept`` (the shipped rules), each
    with the results it was fitted from: an objective whose measurements
    are not to be trusted in this run is not refitted from them.
    """
    refit = set(Objective) if objectives is None else set(objectives)
    tables = {}
    for objective in Objective:
        if objective in refit:
            table = fit_objective(examples_for(cells, objective))
            tables[objective.value] = {**table, "fitted_from": sources}
        elif kept is None:
            raise ValueError(f"no rules to keep for the {objective} objective")
        else:
            tables[objective.value] = kept["objectives"][objective.value]
    return {
        "schema": RULES_SCHEMA,
        "about": ("Fitted by `modelexport zoo fit-selector` from zoo results; do not edit by "
                  "hand. Per objective, the first rule whose tests all hold picks the "
                  "strategy; 'matched' models of the fit reached the rule and on 'right' of "
                  "them its strategy was in the best set; 'fitted_from' names the results. "
                  "See docs/strategies.md, 'Selector and AUTO'."),
        "objectives": tables,
    }


def _chooser(picks: dict[str, tuple[str, list[str]]]):
    def choose(model: str, _evidence: dict[str, Any]) -> tuple[str | None, list[str]]:
        return picks.get(model, (None, []))

    return choose


def in_sample(cells: list[CellResult], objective: Objective) -> SelectorScore:
    """The rules fitted on every model, scored on the same models (flattering)."""
    return score_table(cells, objective, fit_objective(examples_for(cells, objective)))


def cross_validate(cells: list[CellResult], objective: Objective) -> SelectorScore:
    """Each group's picks come from a fit, rule count included, made without that group.

    Groups are architecture families (leave one family out); a run with
    fewer than ``MIN_FAMILY_FOLDS`` families (the tiny or idioms tier alone)
    holds out models in folds instead, so the figure is still out-of-sample.
    The rule count is chosen inside each fit by the same kind of
    cross-validation on its own training models: the score is of the whole
    procedure (nested), not of a count tuned on the models it is scored on.
    ``validation`` on the score says how.
    """
    examples = examples_for(cells, objective)
    by_family = holds_out_families(examples)
    picks: dict[str, tuple[str, list[str]]] = {}
    for held in held_out_groups(examples):
        training = [e for e in examples if _group_of(e, by_family) not in held]
        if not training:  # a single model: nothing to learn from
            continue
        table = fit_objective(training)
        for example in examples:
            if _group_of(example, by_family) in held:
                rule = matching_rule(table["rules"], example.features)
                picks[example.model] = (rule["strategy"], table["fallback_order"])
    score = score_selector(cells, objective, _chooser(picks))
    families = len({e.family for e in examples})
    score.validation = (f"leave one family out ({families} families)" if by_family
                        else f"models held out in folds ({families} "
                             f"famil{'y' if families == 1 else 'ies'}: too few to leave one out)")
    return score


def load_cells(paths: list[Path]) -> tuple[list[CellResult], list[dict[str, Any]]]:
    """Cells of several results files, model names qualified by tier (``wide:hf-bert``)."""
    cells: list[CellResult] = []
    sources = []
    for path in paths:
        try:
            results = read_results(path)
        except (OSError, ValueError) as exc:
            raise ModelExportError(f"cannot read results {path}: {one_line(exc)}") from None
        tier = results["settings"]["tier"]
        for data in results["cells"]:
            cell = CellResult.from_dict(data)
            cell.model = f"{tier}:{cell.model}"
            cells.append(cell)
        sources.append({"file": path.name, "tier": tier,
                        "models": len(results["settings"]["models"]),
                        "git_commit": results["environment"].get("git_commit"),
                        "versions": results["environment"].get("versions")})
    return cells, sources


def refresh_features(cells: list[CellResult],
                     progress: Callable[[int, int, str], None] | None = None) -> list[str]:
    """Recompute every model's features with the installed analyzer; the models it could not.

    The outcomes in a results file do not depend on the analyzer, so after
    the analyzer learns a feature the rules can be refitted without running
    the matrix again: each zoo entry is rebuilt (seeded, as the run built it)
    and watched for one forward.  Models are named ``tier:entry``.
    """
    from model_zoo import get_entry

    grouped: dict[str, list[CellResult]] = {}
    for cell in cells:
        if cell.status != NOT_RUNNABLE:
            grouped.setdefault(cell.model, []).append(cell)
    failed = []
    for index, (key, group) in enumerate(grouped.items(), 1):
        if progress is not None:
            progress(index, len(grouped), key)
        tier, name = key.split(":", 1)
        try:
            entry = get_entry(name)
            model = entry.build(tier)
            features = ModelAnalyzer.analyze_model(model, entry.inputs(model, tier)).features()
        except Exception:  # the model no longer builds here: keep what the run recorded
            failed.append(key)
            continue
        for cell in group:
            cell.features = features
    return failed


def fit_report(cells: list[CellResult], sources: list[dict[str, Any]],
               objectives: Iterable[Objective] | None = None,
               kept: dict[str, Any] | None = None,
               ) -> tuple[dict[str, Any], dict[str, dict[str, SelectorScore]]]:
    """The fitted rules, and per objective the in-sample and cross-validated scores of the fit.

    An objective kept as shipped is scored twice too: its kept rules on
    ``cells``, and the cross-validated fit, which says what refitting it on
    this run would give.
    """
    refit = list(Objective) if objectives is None else list(objectives)
    rules = fit_rules(cells, sources, refit, kept)
    scores = {}
    for objective in Objective:
        if objective in refit:
            first = ("in-sample", in_sample(cells, objective))
        else:
            first = ("kept rules", score_table(cells, objective,
                                               rules["objectives"][objective.value]))
        scores[objective.value] = dict([first, ("cross-validated",
                                                cross_validate(cells, objective))])
    return rules, scores


def score_table(cells: list[CellResult], objective: Objective,
                table: dict[str, Any]) -> SelectorScore:
    """One objective's rule table scored on ``cells``, from their recorded features."""
    picks = {e.model: (matching_rule(table["rules"], e.features)["strategy"],
                       table["fallback_order"])
             for e in examples_for(cells, objective)}
    return score_selector(cells, objective, _chooser(picks))
