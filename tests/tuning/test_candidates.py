"""Choosing the candidates and the winner: pure functions over hand-made records (no Ray)."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from tricksearch.tuning._candidates import (
    TrialRecord,
    candidate_table,
    choose_winner,
    estimated_final,
    evidence,
    mean_std,
    pick_candidates,
    rank,
    trial_record,
)
from tricksearch.tuning._result import SearchFailed
from tricksearch.tuning._study import STOPPED_ATTR


def rec(
    number: int,
    state: str,
    value: float | None = None,
    steps: dict[int, float] | None = None,
    params: dict[str, Any] | None = None,
) -> TrialRecord:
    steps = steps or {}
    return TrialRecord(
        number=number,
        state=state,
        value=value,
        intermediate_values=steps,
        params={"x": number} if params is None else params,
        epochs=max(steps, default=0),
    )


FULL = {1: 0.5, 2: 0.6, 3: 0.7}  # the full budget: 3 epochs

RECORDS = [
    rec(0, "PRUNED", steps={1: 0.99}),  # the best value, but stopped after 1 epoch
    rec(1, "COMPLETE", 0.70, FULL),
    rec(2, "PRUNED", steps={1: 0.4, 2: 0.5}),  # got further than 0 and 8
    rec(3, "COMPLETE", 0.80, FULL),
    rec(4, "FAIL"),
    rec(5, "PRUNED"),  # no value at all: never a candidate
    rec(6, "COMPLETE"),  # no value (Optuna could not be told one)
    rec(7, "RUNNING", steps={1: 0.9}),
    rec(8, "PRUNED", steps={1: 0.5}),
]


def test_trials_rank_by_their_estimated_full_budget_value() -> None:
    # The finished trials (1 and 3) still gained +0.2 after epoch 1 and +0.1 after epoch 2, so
    # trial 0 (0.99 at epoch 1) is heading for ~1.19, trial 8 (0.45 at epoch 1) for ~0.65 and
    # trial 2 (0.5 at epoch 2) for ~0.6: all ranked by that estimate, not "finished first".
    records = [r if r.number != 8 else rec(8, "PRUNED", steps={1: 0.45}) for r in RECORDS]
    assert [r.number for r in rank(records, "max")] == [0, 3, 1, 8, 2]
    assert [r.number for r in rank(records, "min")] == [2, 8, 1, 3, 0]


def test_the_fashion_mnist_case_a_deep_pruned_trial_is_not_passed_over() -> None:
    # Seen on Fashion-MNIST: a trial cut at epoch 8 with val 0.909 was passed over for two
    # finished trials at 0.902 and 0.901 that had gained about 0.004 over their last 2 epochs.
    curve = {e: 0.80 + 0.01 * e for e in range(1, 9)}
    a = rec(1, "COMPLETE", 0.902, curve | {9: 0.900, 10: 0.902})
    b = rec(2, "COMPLETE", 0.901, curve | {9: 0.899, 10: 0.901})
    cut = rec(3, "PRUNED", steps={e: 0.85 + 0.0074 * e for e in range(1, 9)})
    assert [r.number for r in rank([a, b, cut], "max", 10)] == [3, 1, 2]
    assert estimated_final(cut, [a, b], 10) == pytest.approx(0.85 + 0.0074 * 8 + 0.0215)


def test_without_finished_trials_the_estimate_is_the_last_value() -> None:
    records = [rec(0, "PRUNED", steps={1: 0.7}), rec(1, "PRUNED", steps={1: 0.6, 2: 0.65})]
    assert [r.number for r in rank(records, "max", 3)] == [0, 1]


def test_the_baseline_configuration_takes_no_candidate_slot() -> None:
    records = [
        rec(0, "COMPLETE", 0.9, FULL, {"a": 0}),  # the enqueued baseline
        rec(1, "COMPLETE", 0.8, FULL, {"a": 1}),
        rec(2, "COMPLETE", 0.7, FULL, {"a": 2}),
    ]
    picked = pick_candidates(records, "max", 2, exclude=[{"a": 0}])
    assert [r.number for r in picked] == [1, 2]


def test_ties_keep_the_study_order() -> None:
    records = [rec(5, "COMPLETE", 0.5, FULL), rec(2, "COMPLETE", 0.5, FULL)]
    assert [r.number for r in rank(records, "max")] == [5, 2]
    assert [r.number for r in rank(records, "min")] == [5, 2]


def test_a_pruned_trial_scores_its_last_value() -> None:
    assert rec(0, "PRUNED", steps={2: 0.3, 1: 0.9}).score == 0.3
    assert rec(0, "COMPLETE", 0.8, FULL).score == 0.8


def test_candidates_are_distinct_configurations() -> None:
    records = [
        rec(0, "COMPLETE", 0.9, FULL, {"a": 1}),
        rec(1, "COMPLETE", 0.8, FULL, {"a": 1}),  # the same configuration again: counted once
        rec(2, "COMPLETE", 0.7, FULL, {"a": 2}),
        rec(3, "PRUNED", steps={1: 0.95}, params={"a": 3}),
    ]
    # trial 3 is heading for 0.95 + 0.2 (what the finished trials gained after epoch 1)
    assert [r.number for r in pick_candidates(records, "max", 2)] == [3, 0]
    assert [r.number for r in pick_candidates(records, "max", 10)] == [3, 0, 2]
    assert [r.number for r in pick_candidates(records, "min", 1)] == [2]
    assert pick_candidates([rec(0, "FAIL"), rec(1, "PRUNED")], "max", 3) == []


def _row(label: str, seed: int, val: float | None, test: float = 0.5) -> dict[str, Any]:
    if val is None:
        return {"label": label, "seed": seed, "error": "diverged"}
    return {"label": label, "seed": seed, "val_acc": val, "val_loss": 1 - val, "test_acc": test}


RECIPES: dict[str, Any] = {"trial 3": "r3", "trial 1": "r1", "baseline": "rb"}  # recipes by label
RESULTS = [
    _row("trial 3", 1, 0.9, 0.8),
    _row("trial 3", 0, 0.7, 0.6),
    _row("trial 1", 0, 0.95),
    _row("trial 1", 1, None),  # a failed seed
    _row("baseline", 0, 0.99),
    _row("baseline", 1, 0.98),
]


def test_table_means_over_the_seeds_that_did_not_fail() -> None:
    table = candidate_table(RECIPES, RESULTS, "val_acc")
    assert [c["label"] for c in table] == ["trial 3", "trial 1", "baseline"]
    t3, t1, _ = table
    assert t3["recipe"] == "r3" and t3["ok"]
    assert [r["seed"] for r in t3["rows"]] == [0, 1]
    assert t3["val_mean"] == pytest.approx(0.8)
    assert t3["val_std"] == pytest.approx(statistics.stdev([0.7, 0.9]))
    assert not t1["ok"] and len(t1["rows"]) == 2
    assert (t1["val_mean"], t1["val_std"]) == (0.95, 0.0)
    assert evidence(t1)["failed_seeds"] == [1] and evidence(t1)["val_acc"] == [0.95]
    ev = evidence(t3)
    assert ev["test_acc"] == [0.6, 0.8] and ev["test_acc_mean"] == pytest.approx(0.7)
    assert ev["failed_seeds"] == []


def test_winner_has_the_best_mean_no_failed_seed_and_is_never_the_baseline() -> None:
    table = candidate_table(RECIPES, RESULTS, "val_acc")
    # trial 1's mean is higher but one of its seeds failed; the baseline is only a reference
    assert choose_winner(table, "max")["label"] == "trial 3"
    table = candidate_table(
        RECIPES, [*RESULTS[:3], _row("trial 1", 1, 0.93), *RESULTS[4:]], "val_loss"
    )
    assert choose_winner(table, "min")["label"] == "trial 1"  # lowest mean val_loss
    assert choose_winner(table, "max")["label"] == "trial 3"


def test_winner_on_a_tie_is_the_better_ranked_candidate() -> None:
    rows = [_row("trial 3", 0, 0.8), _row("trial 1", 0, 0.8), _row("baseline", 0, 0.1)]
    assert choose_winner(candidate_table(RECIPES, rows, "val_acc"), "max")["label"] == "trial 3"


def test_every_candidate_failing_is_a_search_failure() -> None:
    rows = [_row("trial 3", 0, None), _row("trial 1", 0, None), _row("baseline", 0, 0.5)]
    with pytest.raises(SearchFailed, match="every top candidate failed"):
        choose_winner(candidate_table(RECIPES, rows, "val_acc"), "max")


def test_mean_std() -> None:
    assert all(math.isnan(v) for v in mean_std([]))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([1.0, 3.0]) == (2.0, statistics.stdev([1.0, 3.0]))


def test_trial_record_of_optuna_trials() -> None:
    dist = {"budget.lr": FloatDistribution(0.01, 1.0)}
    done = create_trial(
        params={"budget.lr": 0.1},
        distributions=dist,
        value=0.9,
        intermediate_values={1: 0.5, 2: 0.9},
        user_attrs={"epochs": 2, "train_seconds": 1.5},
    )
    r = trial_record(done)
    assert (r.state, r.outcome, r.value, r.epochs, r.train_seconds) == (
        "COMPLETE",
        "COMPLETE",
        0.9,
        2,
        1.5,
    )
    assert r.params == {"budget.lr": 0.1} and r.intermediate_values == {1: 0.5, 2: 0.9}
    cut = create_trial(
        params={"budget.lr": 0.2},
        distributions=dist,
        state=TrialState.PRUNED,
        intermediate_values={1: 0.4, 3: 0.6},
        user_attrs={STOPPED_ATTR: True},
    )
    r = trial_record(cut)
    assert (r.state, r.outcome, r.value, r.epochs, r.score) == ("PRUNED", "STOPPED", None, 3, 0.6)
