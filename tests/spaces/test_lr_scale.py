"""The LR follows the optimizer (issue 11): searched among SGD and Adam-like optimizers, the LR
is drawn after the optimizer, from the space's range (SGD's) times the chosen one's
``TrickSpec.lr_scale``; a space without that choice uses its range as written."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tricksearch.recipe import Recipe
from tricksearch.spaces import load_space
from tricksearch.tricks import get_trick

optuna.logging.set_verbosity(optuna.logging.WARNING)

ADAPTIVE = ("adamw", "radam", "adabound")


def _draws(space, n: int = 300, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        space(trial)
        study.tell(trial, 0.0)
        out.append(trial.params)
    return out


def _space(tmp_path: Path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path)


def test_adam_like_optimizers_declare_their_lr_scale() -> None:
    assert get_trick("sgd").lr_scale == 1.0
    for name in ADAPTIVE:
        assert get_trick(name).lr_scale == pytest.approx(0.02)


def test_the_default_space_draws_each_optimizer_its_own_lr_range() -> None:
    space = load_space("default")
    draws = _draws(space)
    seen = {}
    for p in draws:
        opt, lr = p["optimizer.optimizer"], p["budget.lr"]
        seen.setdefault(opt, []).append(lr)
        if opt == "sgd":
            assert 1e-3 <= lr <= 1.0
        else:
            assert 1e-3 * 0.02 <= lr <= 1.0 * 0.02
    assert set(seen) == {"sgd", *ADAPTIVE}
    # log-uniform in each range: the median of each family sits near its range's middle
    for opt, lrs in seen.items():
        middle = (1e-3 * 1.0) ** 0.5 * (1.0 if opt == "sgd" else 0.02)
        assert middle / 4 < sorted(lrs)[len(lrs) // 2] < middle * 4
    assert "× 0.02 with adamw" in space.describe()


def test_a_recipe_comes_back_from_its_point_at_its_optimizers_scale() -> None:
    space = load_space("default")
    base = Recipe.from_dict({"model": {"name": "cnn-small"}})
    adam = base.with_trick("adamw", {}).with_changes(budget={**base.budget.to_dict(), "lr": 1e-4})
    assert space.point(adam)["budget.lr"] == pytest.approx(1e-4)
    assert space.to_recipe(base, space.point(adam)).budget.lr == pytest.approx(1e-4)
    # an SGD recipe at the same LR is below SGD's range: moved to its low end
    sgd = base.with_changes(budget={**base.budget.to_dict(), "lr": 1e-4})
    assert space.point(sgd)["budget.lr"] == pytest.approx(1e-3)
    # and an AdamW recipe at an SGD LR is moved into Adam's range
    hot = base.with_trick("adamw", {}).with_changes(budget={**base.budget.to_dict(), "lr": 0.5})
    assert space.point(hot)["budget.lr"] == pytest.approx(0.02)


def test_without_a_choice_between_scales_the_range_is_used_as_written(tmp_path) -> None:
    # only Adam-like members: the user's range is Adam's
    space = _space(
        tmp_path,
        "include: [adamw, radam]\nbudget:\n  lr: {low: 0.0001, high: 0.01, log: true}\n",
    )
    assert all(1e-4 <= p["budget.lr"] <= 1e-2 for p in _draws(space, 60))
    assert "×" not in space.describe()
    # a fixed LR: nothing to scale
    fixed = _space(tmp_path, "include: [sgd, adamw]\nbudget:\n  lr: 0.01\n")
    assert all("budget.lr" not in p for p in _draws(fixed, 20))


def test_lr_drawn_after_the_optimizer_is_one_optuna_parameter_across_trials(tmp_path) -> None:
    # Optuna keeps one parameter "budget.lr" whose range depends on the optimizer: TPE samples
    # it (multivariate, grouped) without errors and stays inside each range
    space = _space(tmp_path, "include: [sgd, adamw]\n")
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=0, n_startup_trials=5, multivariate=True, group=True
        ),
    )

    def objective(trial: optuna.Trial) -> float:
        space(trial)
        return -abs(trial.params["budget.lr"] - 0.001)

    study.optimize(objective, n_trials=25)
    for t in study.trials:
        lr = t.params["budget.lr"]
        low, high = (1e-3, 1.0) if t.params["optimizer.optimizer"] == "sgd" else (2e-5, 0.02)
        assert low <= lr <= high
