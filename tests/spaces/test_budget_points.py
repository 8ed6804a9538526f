"""``SearchSpace.with_budget_points``: the baseline's own lr and batch size become allowed points
of the space, so its enqueued trial is the baseline itself, not its nearest point."""

from __future__ import annotations

import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.spaces import SearchSpace, load_space
from tricksearch.tricks import SearchSpec


def test_the_baseline_point_round_trips_exactly() -> None:
    base = Recipe.from_dict({"budget": {"lr": 0.0007, "batch_size": 100}})
    plain = load_space("default")
    snapped = plain.point(base)
    assert (snapped["budget.lr"], snapped["budget.batch_size"]) == (0.001, 128)  # today's snap

    space = plain.with_budget_points(lr=0.0007, batch_size=100)
    point = space.point(base)
    assert point["budget.lr"] == 0.0007 and point["budget.batch_size"] == 100
    back = space.to_recipe(base, point)
    assert back.budget.lr == 0.0007 and back.budget.batch_size == 100
    assert back == base
    assert space.batch_size == SearchSpec(choices=(64, 100, 128, 256, 512))
    assert space.lr == SearchSpec(low=0.0007, high=1.0, log=True)
    assert "budget.batch_size: 100 added to the choices (the baseline's 100)" in space.notes
    assert any(
        n.startswith("budget.lr: range [0.001, 1] log widened to [0.0007, 1]") for n in space.notes
    )
    # the tricks are untouched
    assert space.tricks == plain.tricks


def test_values_already_allowed_change_nothing() -> None:
    space = load_space("default")
    same = space.with_budget_points(lr=0.05, batch_size=128)
    assert same == space and same.notes == space.notes
    assert space.with_budget_points() == space


def test_a_stepped_range_gets_the_value_as_a_choice() -> None:
    space = SearchSpace(
        {},
        lr={"low": 0.1, "high": 0.5, "step": 0.1},
        batch_size={"low": 32, "high": 128, "step": 32},
    ).with_budget_points(lr=0.25, batch_size=100)
    assert space.batch_size == SearchSpec(choices=(32, 64, 96, 100, 128))
    assert space.lr == SearchSpec(choices=(0.1, 0.2, 0.25, 0.3, 0.4, 0.5))
    # on the grid but outside: the range is widened and keeps its step
    wide = SearchSpace({}, batch_size={"low": 64, "high": 128, "step": 32}).with_budget_points(
        batch_size=256
    )
    assert wide.batch_size == SearchSpec(low=64, high=256, step=32)
    # a long grid loses its step instead of becoming hundreds of choices
    long = SearchSpace({}, batch_size={"low": 1, "high": 1001, "step": 10}).with_budget_points(
        batch_size=5
    )
    assert long.batch_size == SearchSpec(low=1, high=1001)


def test_fixed_values_stay_fixed() -> None:
    space = SearchSpace({}, lr=0.01, batch_size=None).with_budget_points(lr=0.05, batch_size=100)
    assert space.lr == 0.01 and space.batch_size is None


def test_bad_values_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"budget\.lr: got -1\.0"):
        load_space("default").with_budget_points(lr=-1.0)
