"""What a search writes at the end, from plain records (no Ray)."""

from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import pytest

from tricksearch.recipe import Recipe
from tricksearch.tuning import SearchConfig
from tricksearch.tuning._artifacts import (
    Timings,
    closing_lines,
    nothing_usable,
    outcome_counts,
    save_outcome,
    search_summary,
    stored_result,
    time_budget_line,
    write_trials_csv,
)
from tricksearch.tuning._candidates import TrialRecord, candidate_table
from tricksearch.tuning._decide import Decision
from tricksearch.tuning._verdict import paired_verdict

RECORDS = [
    TrialRecord(0, "COMPLETE", 0.9, {1: 0.5, 2: 0.9}, {"budget.lr": 0.1}, 2, seconds=3.0),
    TrialRecord(1, "PRUNED", None, {1: 0.4}, {"budget.lr": 0.2, "x": "a"}, 1, train_seconds=1.0),
    TrialRecord(2, "FAIL", None, {}, {"budget.lr": 0.3}, 0, outcome="STOPPED"),
    TrialRecord(3, "FAIL", None, {}, {}, 0),
]


def test_trials_csv_has_one_row_per_trial(tmp_path) -> None:
    write_trials_csv(RECORDS, tmp_path / "trials.csv")
    rows = list(csv.reader((tmp_path / "trials.csv").open()))
    assert rows[0] == ["number", "state", "value", "epochs", "seconds", "budget.lr", "x"]
    assert rows[1] == ["0", "COMPLETE", "0.9", "2", "3.0", "0.1", ""]
    assert rows[2] == ["1", "PRUNED", "", "1", "", "0.2", "a"]
    assert [r[1] for r in rows[1:]] == ["COMPLETE", "PRUNED", "STOPPED", "FAIL"]


def test_outcome_counts_and_what_the_time_budget_cut() -> None:
    counts = outcome_counts(RECORDS)
    assert counts == {"complete": 1, "pruned": 1, "fail": 1, "stopped": 1, "oom": 0}
    assert time_budget_line(counts, SearchConfig()) is None  # no budget set
    line = time_budget_line(counts, SearchConfig(time_budget=30, trials=8))
    assert line == "time budget of 30 s reached: 4 of 8 trials ran, 1 of them cut short by it"


def test_nothing_usable_says_why(tmp_path) -> None:
    config = SearchConfig(time_budget=0.5)
    stopped = {"complete": 0, "pruned": 0, "fail": 0, "stopped": 3}
    assert "larger --time-budget" in nothing_usable(stopped, 3, config, tmp_path)
    both = stopped | {"fail": 1}
    assert "1 failed and 3 were stopped" in nothing_usable(both, 4, config, tmp_path)
    failed = {"complete": 0, "pruned": 0, "fail": 2, "stopped": 0}
    msg = nothing_usable(failed, 2, SearchConfig(), tmp_path)
    assert msg.startswith("every trial failed (2 failed of 2)") and "error.txt" in msg


def test_results_written_and_read_back_for_a_resume(tmp_path) -> None:
    config = SearchConfig(epochs=2, seeds=2, lr=0.05)
    base = Recipe.from_dict({"model": {"name": "cnn-small"}, "budget": {"epochs": 2}})
    recipes = {"trial 0": base.with_changes(loss={"label_smoothing": {}}), "baseline": base}
    rows = [
        {"label": label, "seed": s, "val_acc": v, "test_acc": v - 0.1}
        for label, v in (("trial 0", 0.9), ("baseline", 0.8))
        for s in (0, 1)
    ]
    rows[1]["val_acc"] += 0.001  # the gain is not exactly constant: an interval of some width
    table = candidate_table(recipes, rows, "val_acc")
    decision = Decision(
        table=table,
        seeds=[0, 1],
        baseline=table[1],
        winner=table[0],
        leader=table[0],
        selection=paired_verdict([0.9, 0.901], [0.8, 0.8]),
        candidates=["trial 0"],
    )
    data = SimpleNamespace(y_val=[0] * 1000, y_test=[0] * 1000)
    summary = search_summary(config, RECORDS, decision, data, timings=Timings(12.345, 1.0), slots=2)
    assert summary["search"]["candidates"] == ["trial 0"]
    assert summary["search"]["trials"]["stopped"] == 1 and summary["search"]["trial_epochs"] == 3
    assert summary["search"]["seconds"] == 12.3 and summary["search"]["tune_seconds"] == 0.0
    assert summary["gain"]["test_acc"] == pytest.approx(0.1)
    assert summary["verdict"]["summary"] == "better beyond noise"
    assert summary["verdict"]["exported"] == "winner" and summary["small_data"] is None
    assert summary["search"]["failures"] == ["failed 1 × unknown cause (no error recorded)"]
    assert stored_result(tmp_path) is None

    out = io.StringIO()
    result = save_outcome(config, tmp_path, decision, summary, out)
    assert list(result.best.tricks_on()) == ["label_smoothing"] and result.best.provenance
    assert "best recipe:" in out.getvalue() and "verdict: better beyond noise" in out.getvalue()
    assert "gain +0.1000 (95 % CI" in out.getvalue()
    # no study here, so no report: a warning, and the recipe is kept
    assert "warning: the report could not be written" in out.getvalue()
    stored = stored_result(tmp_path)
    assert stored is not None and stored.summary == json.loads(json.dumps(summary))
    assert [c["label"] for c in stored.candidates] == ["trial 0", "baseline"]
    assert closing_lines(stored.best, stored.summary, stored.recipe_path, config) in out.getvalue()

    (tmp_path / "results.json").write_text("{broken")
    assert stored_result(tmp_path) is None  # damaged: the retraining is redone
