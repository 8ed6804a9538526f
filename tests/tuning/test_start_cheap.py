"""Start cheap (issue 11): the points a fresh search evaluates first, and the baseline as a
reference stopped at ASHA's first rung."""

from __future__ import annotations

import optuna
import pytest
from ray.tune.schedulers import TrialScheduler

from tricksearch.recipe import Recipe
from tricksearch.spaces import load_space, preset_recipe
from tricksearch.tuning._searcher import RecordingASHA, TruthfulOptunaSearch
from tricksearch.tuning._tune import FIRST_PRESETS, first_points, reference_point


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def _base(epochs: int = 12) -> Recipe:
    return Recipe.from_dict({"model": {"name": "cnn-small"}, "budget": {"epochs": epochs}})


def test_first_points_are_the_baseline_then_known_good_presets_within_a_quarter() -> None:
    space, base = load_space("default"), _base()
    points = first_points(space, base, 32)
    expected = [space.point(preset_recipe(name, base)) for name in FIRST_PRESETS]
    assert points == expected  # all four distinct in the default space
    assert points[0] == reference_point(space, base)
    adamw = points[FIRST_PRESETS.index("adamw-cosine")]
    # AdamW at the base LR (0.05) × Adam's scale 0.02, inside the LR range drawn for AdamW
    assert adamw["optimizer.optimizer"] == "adamw" and adamw["budget.lr"] == pytest.approx(1e-3)
    # at most a quarter of the trials beyond the baseline; always the baseline
    assert first_points(space, base, 8) == expected[:3]
    assert first_points(space, base, 4) == expected[:2]
    assert first_points(space, base, 1) == expected[:1]


def test_first_points_are_distinct_in_a_small_space() -> None:
    space = load_space("minimal")
    points = first_points(space, _base(), 32)
    assert len(points) == len({repr(sorted(p.items())) for p in points})
    assert points[0] == reference_point(space, _base())


def _asha(max_t: int = 12, grace: int = 3) -> RecordingASHA:
    asha = RecordingASHA(
        time_attr="training_iteration", max_t=max_t, grace_period=grace, reduction_factor=3
    )
    asha.set_search_properties("val_acc", "max")
    return asha


def _report(asha: RecordingASHA, trial: _Trial, epoch: int, value: float) -> str:
    return asha.on_trial_result(None, trial, {"training_iteration": epoch, "val_acc": value})


def test_the_reference_trial_stops_at_the_first_rung_and_sets_the_bar_there() -> None:
    asha = _asha()
    assert asha.first_rung == 3
    ref, other, worse = _Trial("ref"), _Trial("other"), _Trial("worse")
    for t in (ref, other, worse):
        asha.on_trial_add(None, t)
    asha.references.add("ref")
    # before its first rung the reference runs as any trial
    assert _report(asha, ref, 1, 0.5) == TrialScheduler.CONTINUE
    assert _report(asha, ref, 2, 0.7) == TrialScheduler.CONTINUE
    # at the first rung: stopped even though nothing was there to beat (a plain trial goes on)
    assert _report(asha, ref, 3, 0.9) == TrialScheduler.STOP
    assert "ref" in asha.pruned
    # its value is the rung's bar: a trial below it is stopped, one above goes on
    assert _report(asha, worse, 3, 0.8) == TrialScheduler.STOP
    assert _report(asha, other, 3, 0.95) == TrialScheduler.CONTINUE
    assert "other" not in asha.pruned


def test_a_plain_first_trial_is_not_stopped_at_the_first_rung() -> None:
    asha = _asha()
    first = _Trial("first")
    asha.on_trial_add(None, first)
    assert _report(asha, first, 3, 0.1) == TrialScheduler.CONTINUE


def test_without_a_rung_below_the_budget_the_reference_runs_to_the_end() -> None:
    asha = _asha(max_t=2, grace=2)  # no rung below max_t
    assert asha.first_rung == 2


def test_the_searcher_names_the_trial_of_the_reference_point_once() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, base = load_space("minimal"), _base(6)
    points = first_points(space, base, 8)
    named: list[str] = []
    searcher = TruthfulOptunaSearch(
        space,
        metric="val_acc",
        mode="max",
        points_to_evaluate=points,
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_t=6,
        reference=points[0],
        on_reference=named.append,
    )
    configs = [searcher.suggest(f"t{i}") for i in range(5)]
    assert configs[: len(points)] == points
    assert named == ["t0"]
    trials = searcher._ot_study.get_trials(deepcopy=False)
    assert [bool(t.user_attrs.get("reference")) for t in trials] == [True] + [False] * 4
