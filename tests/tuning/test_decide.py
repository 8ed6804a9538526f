"""The decision on planted effects: the trainings are replaced by a function of the recipe's
tricks and the seed (shared seed noise, as paired trainings have), everything else is real: the
space, the recipes, the ranking, the racing, the verdicts and the ablation path."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from tricksearch.recipe import Recipe
from tricksearch.spaces import space_from_dict
from tricksearch.tuning import SearchConfig, _decide
from tricksearch.tuning._candidates import TrialRecord
from tricksearch.tuning._decide import BASELINE, decide
from tricksearch.tuning._evidence import NO_TRICK_HELPED, evidence_summary, verdict_lines
from tricksearch.tuning._verdict import BETTER, NOT_DISTINGUISHABLE, WORSE

TRICKS = ("label_smoothing", "mixup", "hflip")
SPACE = space_from_dict(
    {"budget": {"lr": None, "batch_size": None}, "tricks": {t: {} for t in TRICKS}},
    source="test",
    name="test",
)
BASE = Recipe.from_dict({"model": {"name": "cnn-small"}, "budget": {"epochs": 4}})


def _prep(**settings: Any) -> SimpleNamespace:
    config = SearchConfig(**({"epochs": 4, "top_k": 3} | settings))
    return SimpleNamespace(config=config, base=BASE, space=SPACE)


def _record(number: int, tricks: tuple[str, ...], value: float) -> TrialRecord:
    recipe = BASE
    for t in tricks:
        recipe = recipe.with_trick(t)
    curve = {e: value - 0.05 * (4 - e) for e in range(1, 5)}
    return TrialRecord(number, "COMPLETE", value, curve, SPACE.point(recipe), 4)


def _plant(monkeypatch: pytest.MonkeyPatch, effects: dict[str, float], noise: float = 0.001):
    """Replace the trainings: val/test = 0.8 + the effects of the tricks on + seed noise shared
    by every recipe (paired) + a little noise of the recipe's own. Returns the list of jobs."""
    ran: list[Any] = []

    def run_jobs(jobs, ctx, config, out):
        results = []
        for job in jobs:
            ran.append(job)
            tricks = Recipe.from_dict(job.recipe).tricks_on()
            shared = random.Random(job.seed).gauss(0, 0.02)
            own = random.Random(f"{sorted(tricks)}-{job.seed}").gauss(0, noise)
            score = 0.8 + sum(effects.get(t, 0.0) for t in tricks) + shared + own
            results.append(
                {"label": job.label, "seed": job.seed, "val_acc": score, "test_acc": score - 0.01}
            )
        return results

    monkeypatch.setattr(_decide, "run_jobs", run_jobs)
    return ran


RECORDS = [
    _record(0, (), 0.80),  # the enqueued baseline: takes no candidate slot
    _record(1, ("label_smoothing", "mixup", "hflip"), 0.86),
    _record(2, ("mixup",), 0.84),
    _record(3, ("hflip",), 0.79),
]


def test_a_recipe_worse_than_the_baseline_is_not_exported(monkeypatch) -> None:
    _plant(monkeypatch, {"label_smoothing": -0.04, "mixup": -0.05, "hflip": -0.03})
    decision = decide(_prep(), None, RECORDS, None, None)
    assert decision.winner["label"] == BASELINE and not decision.trick_helped
    assert decision.selection.verdict == WORSE
    assert decision.path is None and decision.minimal is None
    summary = evidence_summary(
        decision, "val_acc", SimpleNamespace(y_val=[0] * 600, y_test=[0] * 600)
    )
    assert summary["verdict"]["summary"] == NO_TRICK_HELPED
    assert summary["verdict"]["exported"] == "baseline"
    assert summary["verdict"]["test"]["verdict"] in (WORSE, NOT_DISTINGUISHABLE)
    assert summary["recipe"] == summary["baseline"]
    assert any(NO_TRICK_HELPED in line for line in verdict_lines(summary))


def test_a_strongly_helping_trick_is_better_beyond_noise(monkeypatch) -> None:
    _plant(monkeypatch, {"mixup": 0.06})
    decision = decide(_prep(minimal=False), None, RECORDS, None, None)
    assert decision.trick_helped and "mixup" in decision.winner["recipe"].tricks_on()
    test = decision.test_verdict(decision.recommended, decision.baseline, "val_acc")
    assert test.verdict == BETTER and test.low > 0
    assert test.gain == pytest.approx(0.06, abs=0.005)


def test_the_minimal_recipe_drops_the_passengers(monkeypatch) -> None:
    ran = _plant(monkeypatch, {"mixup": 0.06})  # label smoothing and hflip do nothing
    decision = decide(_prep(), None, RECORDS, None, None)
    assert set(decision.winner["recipe"].tricks_on()) == set(TRICKS)  # trial 1 leads on val
    assert decision.path is not None and decision.path.minimal == ("mixup",)
    assert list(decision.recommended["recipe"].tricks_on()) == ["mixup"]
    summary = evidence_summary(
        decision, "val_acc", SimpleNamespace(y_val=[0] * 40, y_test=[0] * 40)
    )
    assert summary["verdict"]["exported"] == "minimal"
    assert summary["minimal"]["tricks"] == ["mixup"]
    assert sorted(summary["minimal"]["removed"]) == ["hflip", "label_smoothing"]
    assert (
        summary["small_data"]["test"] == 40 and summary["small_data"]["detectable_test_gain"] > 0.1
    )
    # no recipe and seed is trained twice
    keys = [(Recipe.from_dict(j.recipe).dumps("json"), j.seed) for j in ran]
    assert len(keys) == len(set(keys))


def test_seeds_auto_races_until_the_verdict_is_decided(monkeypatch) -> None:
    _plant(monkeypatch, {"mixup": 0.01}, noise=0.006)
    fixed = decide(_prep(minimal=False), None, RECORDS, None, None)
    raced = decide(_prep(minimal=False, seeds="auto", max_seeds=12), None, RECORDS, None, None)
    assert len(fixed.seeds) == 3 and not fixed.selection.decided
    assert len(raced.seeds) > 3 and (raced.selection.decided or len(raced.seeds) == 12)
    assert raced.selection.n == len(raced.seeds)


def test_the_tuned_baseline_is_retrained_with_the_same_seeds(monkeypatch) -> None:
    _plant(monkeypatch, {"mixup": 0.06})
    tuned = BASE.with_changes(budget=BASE.budget.to_dict() | {"lr": 0.2})
    decision = decide(_prep(minimal=False), None, RECORDS, tuned, None)
    assert decision.tuned is not None and [r["seed"] for r in decision.tuned["rows"]] == [0, 1, 2]
    summary = evidence_summary(
        decision, "val_acc", SimpleNamespace(y_val=[0] * 600, y_test=[0] * 600)
    )
    assert summary["tuned_baseline"]["lr"] == 0.2
    assert summary["tuned_baseline"]["verdict"]["verdict"] == BETTER


def test_candidates_exclude_the_baseline_configuration(monkeypatch) -> None:
    _plant(monkeypatch, {})
    decision = decide(_prep(top_k=2), None, RECORDS, None, None)
    assert decision.candidates == ["trial 1", "trial 2"]


def test_a_space_that_fixes_a_trick_on_has_no_baseline_trial(monkeypatch) -> None:
    # Every trial of this space has the same (empty) parameters and flooding on: none of them is
    # the baseline, so none may be excluded as if it were.
    fixed = space_from_dict(
        {
            "include": ["flooding"],
            "budget": {"lr": None, "batch_size": None},
            "tricks": {"flooding": {"switch": "on", "level": 3.0}},
        },
        source="test",
        name="fixed",
    )
    _plant(monkeypatch, {"flooding": -0.5})
    prep = _prep(top_k=1)
    prep.space = fixed
    records = [TrialRecord(0, "COMPLETE", 0.1, {4: 0.1}, {}, 4)]
    decision = decide(prep, None, records, None, None)
    assert decision.candidates == ["trial 0"] and decision.selection.verdict == WORSE
    assert decision.winner["label"] == BASELINE


def test_one_seed_cannot_show_a_gain_and_says_so(monkeypatch) -> None:
    _plant(monkeypatch, {"mixup": 0.2})
    decision = decide(_prep(seeds=1, minimal=False), None, RECORDS, None, None)
    assert decision.winner["label"] == BASELINE and decision.selection.low is None
    data = SimpleNamespace(y_val=[0] * 600, y_test=[0] * 600)
    lines = verdict_lines(evidence_summary(decision, "val_acc", data))
    assert any("with one seed there is no interval" in line for line in lines)


def test_no_recipe_is_exported_when_the_baseline_cannot_be_retrained(monkeypatch) -> None:
    """A leader with a gain against a baseline that never trained would read "gain +nan": the
    search fails in one line with the baseline's cause instead (and keeps the study)."""
    from pathlib import Path

    from tricksearch.tuning._result import SearchFailed

    ran = _plant(monkeypatch, {"mixup": 0.06})
    planted = _decide.run_jobs

    def baseline_fails(jobs, ctx, config, out):
        results = planted(jobs, ctx, config, out)
        for row in results:
            if not Recipe.from_dict(
                next(j for j in jobs if j.label == row["label"]).recipe
            ).tricks_on():
                row.pop("val_acc"), row.pop("test_acc")
                row["error"] = "ModuleNotFoundError: No module named 'tricksearch'"
        return results

    monkeypatch.setattr(_decide, "run_jobs", baseline_fails)
    prep = _prep()
    prep.run_dir = Path("/runs/x")
    with pytest.raises(SearchFailed) as err:
        decide(prep, None, RECORDS, None, None)
    message = str(err.value)
    assert message.startswith("the baseline failed when retrained (ModuleNotFoundError: No module")
    assert "no recipe was written" in message and "/runs/x/study.db" in message
    assert "\n" not in message and ran  # the candidates were trained: the failure is the baseline's
