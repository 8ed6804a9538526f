"""Per-trick importance: key -> trick mapping, grouping, normalisation, the default evaluator."""

from __future__ import annotations

import random

import pytest

from tricksearch.report._importance import (
    MIN_RATED,
    choose_fidelity,
    entry_label,
    group_by_trick,
    trick_importance,
    trick_of_key,
    tricks_of_params,
)


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("loss.label_smoothing", "label_smoothing"),
        ("loss.label_smoothing.epsilon", "label_smoothing"),
        ("schedule.cosine.min_lr_factor", "cosine"),
        ("schedule.decay", "decay"),
        ("optimizer.optimizer", "optimizer"),
        ("augment.multiscale.scales", "multiscale"),
        ("budget.lr", "budget.lr"),
        ("budget.batch_size", "budget.batch_size"),
    ],
)
def test_trick_of_key(key: str, entry: str) -> None:
    assert trick_of_key(key) == entry


def test_entry_label_marks_group_choices() -> None:
    assert entry_label("decay") == "decay [group choice]"
    assert entry_label("label_smoothing") == "label_smoothing"


def test_tricks_of_params_reads_switches_and_group_choices() -> None:
    params = {
        "budget.lr": 0.1,
        "loss.label_smoothing": True,
        "loss.label_smoothing.epsilon": 0.1,
        "mixing.mixup": False,
        "schedule.decay": "cosine",
        "augment.policy": "none",
    }
    assert tricks_of_params(params) == ["cosine", "label_smoothing"]


def test_group_by_trick_sums_switch_and_params_and_normalises() -> None:
    raw = {
        "loss.label_smoothing": 0.2,
        "loss.label_smoothing.epsilon": 0.2,
        "schedule.decay": 0.1,
        "schedule.cosine.min_lr_factor": 0.1,
        "budget.lr": 0.4,
    }
    out = group_by_trick(raw)
    assert out == pytest.approx(
        {"label_smoothing": 0.4, "budget.lr": 0.4, "decay": 0.1, "cosine": 0.1}
    )
    assert sum(out.values()) == pytest.approx(1.0, abs=1e-6)
    assert next(iter(out)) in ("label_smoothing", "budget.lr")  # sorted, largest first
    assert group_by_trick({"loss.flooding": 0.0, "loss.focal": 0.0}) == {
        "flooding": 0.5,
        "focal": 0.5,
    }
    assert group_by_trick({}) == {}


def _study(n: int, *, signal: bool = True, complete: int | None = None, epochs: int = 6):
    """``n`` trials whose value depends on label smoothing (``signal``); with ``complete``, only
    the first ``complete`` run ``epochs`` epochs, the others are PRUNED after 1 to 3 epochs (the
    same ranking at every epoch: value − 0.02 per epoch left)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name="tricksearch")
    rng = random.Random(1)
    for _ in range(n):
        ls = rng.random() < 0.5
        params = {
            "loss.label_smoothing": ls,
            "budget.lr": 10 ** rng.uniform(-3, 0),
            "mixing.mixup": rng.random() < 0.5,
        }
        dists = {
            "loss.label_smoothing": CategoricalDistribution([False, True]),
            "budget.lr": FloatDistribution(1e-3, 1.0, log=True),
            "mixing.mixup": CategoricalDistribution([False, True]),
        }
        if ls:
            params["loss.label_smoothing.epsilon"] = rng.uniform(0.0, 0.3)
            dists["loss.label_smoothing.epsilon"] = FloatDistribution(0.0, 0.3)
        value = 0.9 + (0.05 * ls if signal else 0.0) + rng.uniform(0, 0.005)
        done = complete is None or len(study.trials) < complete
        reached = epochs if done else 1 + len(study.trials) % 3
        study.add_trial(
            create_trial(
                params=params,
                distributions=dists,
                value=value if done else None,
                state=TrialState.COMPLETE if done else TrialState.PRUNED,
                intermediate_values={e: value - 0.02 * (epochs - e) for e in range(1, reached + 1)},
            )
        )
    return study


def test_trick_importance_sums_to_one_and_finds_the_signal() -> None:
    res = trick_importance(_study(80))
    assert res.ok and res.reason is None
    assert res.evaluator == "PedAnovaImportanceEvaluator"  # Optuna 5's default
    assert sum(res.by_trick.values()) == pytest.approx(1.0, abs=1e-6)
    assert set(res.by_trick) <= {"label_smoothing", "budget.lr", "mixup"}
    assert max(res.by_trick, key=res.by_trick.get) == "label_smoothing"
    assert res.n_complete == 80


def test_trick_importance_explains_instead_of_failing() -> None:
    res = trick_importance(_study(1))
    assert not res.ok and "at least 2 rated trials" in res.reason and res.by_trick == {}
    assert "1 COMPLETE trials" in res.reason
    import optuna

    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: 0.5 + 0 * t.suggest_float("budget.lr", 0.01, 1.0), n_trials=3)
    res = trick_importance(study)
    assert not res.ok and "same value" in res.reason


def test_few_complete_trials_are_rated_at_the_deepest_epoch_enough_trials_reached() -> None:
    # 60 trials, 3 COMPLETE; pruned after 1, 2, 3 epochs in turn: 60 reached epoch 1, ~41
    # epoch 2, ~22 epoch 3 (>= MIN_RATED = 20), 3 the full 6 epochs.
    study = _study(60, complete=3)
    reached3 = sum(3 in t.intermediate_values for t in study.trials)
    assert reached3 >= MIN_RATED > sum(4 in t.intermediate_values for t in study.trials)
    assert choose_fidelity(study.trials) == (3, reached3)
    res = trick_importance(study)
    assert res.ok and res.epoch == 3 and res.n_rated == reached3 and res.n_complete == 3
    assert max(res.by_trick, key=res.by_trick.get) == "label_smoothing"
    assert sum(res.by_trick.values()) == pytest.approx(1.0, abs=1e-6)


def test_fidelity_choice() -> None:
    # Enough COMPLETE trials: their final values.
    assert choose_fidelity(_study(MIN_RATED).trials) == (None, MIN_RATED)
    # No epoch reached by MIN_RATED trials: the epoch most trials reached, if more than COMPLETE.
    assert choose_fidelity(_study(12, complete=2).trials) == (1, 12)
    # As many COMPLETE trials as at any epoch: the final values win the tie.
    assert choose_fidelity(_study(5, complete=5).trials) == (None, 5)


# --- what the report shows: budget entries in their own rows, the winner's entries marked -----
def test_budget_entries_are_never_folded_into_others() -> None:
    from tricksearch.report._importance import importance_rows

    by_trick = {
        "label_smoothing": 0.99,
        "budget.lr": 0.004,
        "budget.batch_size": 0.0,
        "mixup": 0.003,
        "cutmix": 0.003,
    }
    rows = importance_rows(by_trick)
    labels = [r.label for r in rows]
    assert labels == [
        "label_smoothing",
        "learning rate (budget.lr)",
        "batch size (budget.batch_size)",
        "2 others (mixup, cutmix)",
    ]
    assert rows[-1].folded == ("mixup", "cutmix") and rows[-1].importance == pytest.approx(0.006)
    assert not any(r.in_recipe for r in rows)


def test_the_winners_entries_are_marked_and_kept() -> None:
    from tricksearch.recipe import Recipe
    from tricksearch.report._importance import entries_in_recipe, importance_rows

    winner = Recipe.from_dict({"schedule": {"cosine": {}}, "mixing": {"mixup": {"alpha": 0.2}}})
    entries = ["label_smoothing", "mixup", "decay", "budget.lr", "budget.batch_size", "cutmix"]
    assert entries_in_recipe(entries, winner) == {
        "mixup",
        "decay",
        "budget.lr",
        "budget.batch_size",
    }
    # a group left to its default member is not named by the recipe
    assert "decay" not in entries_in_recipe(entries, Recipe())
    by_trick = {
        "label_smoothing": 0.9,
        "decay": 0.09,
        "mixup": 0.001,
        "cutmix": 0.001,
        "budget.lr": 0.008,
    }
    rows = importance_rows(by_trick, entries_in_recipe(by_trick, winner))
    marked = {r.label: r.in_recipe for r in rows}
    assert marked == {
        "label_smoothing": False,
        "decay [group choice]": True,
        "mixup": True,  # small, but the winner uses it: its own row
        "learning rate (budget.lr)": True,
        "1 others (cutmix)": False,
    }


def test_trick_importance_marks_the_winners_entries() -> None:
    import optuna
    from optuna.distributions import FloatDistribution

    from tricksearch.recipe import Recipe

    rng = random.Random(0)
    study = optuna.create_study(direction="maximize")
    for _ in range(30):
        lr, eps = 10 ** rng.uniform(-3, 0), rng.uniform(0.0, 0.2)
        study.add_trial(
            optuna.trial.create_trial(
                params={"budget.lr": lr, "loss.label_smoothing.epsilon": eps},
                distributions={
                    "budget.lr": FloatDistribution(1e-3, 1.0, log=True),
                    "loss.label_smoothing.epsilon": FloatDistribution(0.0, 0.2),
                },
                value=-abs(lr - 0.1) + 0.01 * eps,
            )
        )
    winner = Recipe.from_dict({"loss": {"label_smoothing": {"epsilon": 0.1}}})
    result = trick_importance(study, recipe=winner)
    assert result.ok
    assert result.in_recipe == {"budget.lr", "label_smoothing"}
    assert {r.label for r in result.rows()} == {"learning rate (budget.lr)", "label_smoothing"}
    assert trick_importance(study).in_recipe == set()
