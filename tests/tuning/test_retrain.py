"""The retraining plan: every distinct recipe once per seed, results shared by identical recipes."""

from __future__ import annotations

import io
from typing import Any

from tricksearch.recipe import Recipe
from tricksearch.tuning import SearchConfig, _retrain
from tricksearch.tuning._candidates import TrialRecord
from tricksearch.tuning._retrain import candidate_recipes, plan_jobs, retrain

BASE = Recipe.from_dict({"model": {"name": "cnn-small"}, "budget": {"epochs": 2}})
SMOOTHED = BASE.with_changes(loss={"label_smoothing": {"epsilon": 0.1}})


def test_identical_recipes_are_trained_once_the_baseline_first() -> None:
    recipes = {"trial 4": SMOOTHED, "trial 2": BASE.baseline(), "baseline": BASE.baseline()}
    jobs, alias = plan_jobs(recipes, [0, 1])
    assert [(j.label, j.seed) for j in jobs] == [
        ("baseline", 0),
        ("baseline", 1),
        ("trial 4", 0),
        ("trial 4", 1),
    ]
    assert jobs[2].recipe == SMOOTHED.to_dict()
    assert alias == {"baseline": "baseline", "trial 4": "trial 4", "trial 2": "baseline"}


def test_retrain_shares_the_results_of_identical_recipes(monkeypatch) -> None:
    ran: list[tuple[str, int]] = []

    def fake_run(jobs, ctx, config, out) -> list[dict[str, Any]]:
        ran.extend((j.label, j.seed) for j in jobs)
        return [{"label": j.label, "seed": j.seed, "val_acc": 0.5} for j in jobs]

    monkeypatch.setattr(_retrain, "run_jobs", fake_run)
    recipes = {"trial 4": SMOOTHED, "trial 2": BASE.baseline(), "baseline": BASE.baseline()}
    results = retrain(recipes, [0], ctx=None, config=SearchConfig(), out=io.StringIO())
    assert ran == [("baseline", 0), ("trial 4", 0)]
    assert [(r["label"], r["seed"]) for r in results] == [
        ("trial 4", 0),
        ("trial 2", 0),
        ("baseline", 0),
    ]


def test_candidate_recipes_are_labelled_by_trial_and_end_with_the_baseline() -> None:
    from tricksearch.spaces import load_space

    space = load_space("minimal")
    params = space.point(SMOOTHED)
    record = TrialRecord(3, "COMPLETE", 0.9, {2: 0.9}, params, 2)
    recipes = candidate_recipes([record], space, BASE)
    assert list(recipes) == ["trial 3", "baseline"]
    assert recipes["trial 3"].to_dict() == space.to_recipe(BASE, params).to_dict()
    assert recipes["baseline"].to_dict() == BASE.baseline().to_dict()


def test_cv_retrains_on_every_fold_and_reports_the_means(digits, short_recipe) -> None:
    from tricksearch.data import cv_fold
    from tricksearch.engine import fit
    from tricksearch.spaces import load_space
    from tricksearch.tuning._trainable import TrialContext, retrain_one

    ctx = TrialContext(
        base=short_recipe.to_dict(),
        space=load_space("minimal"),
        cpus_per_trial=1,
        device="cpu",
        data=digits,
        cv=3,
    )
    res = retrain_one(short_recipe.to_dict(), 0, ctx)
    assert len(res["folds"]) == 3
    assert res["val_acc"] == sum(f["val_acc"] for f in res["folds"]) / 3
    assert res["test_acc"] == sum(f["test_acc"] for f in res["folds"]) / 3
    # fold 1 is exactly a training on that fold of train + val (same seed, same numbers)
    fold = cv_fold(digits, 1, 3, seed=short_recipe.data.split_seed)
    alone = fit(
        short_recipe.with_changes(budget=short_recipe.budget.to_dict() | {"seed": 0}),
        data=fold,
        evaluate_test=True,
    )
    assert res["folds"][1]["val_acc"] == alone.val_acc
    assert len(set(f["val_acc"] for f in res["folds"])) > 1  # three different val folds
