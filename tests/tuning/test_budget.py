"""``--time-budget`` over the whole search (``tuning/_budget.py``): the plan of the work after the
tuning on hand-computed cases, the tuning's moving deadline, the progress estimate that never
passes the budget's end, the decision trimmed by a plan; and one real search on digits whose
retraining the budget must cut (slow)."""

from __future__ import annotations

import io
import json
import random
import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest
import ray.cloudpickle
import torch
from torch import nn

from tricksearch.recipe import Recipe
from tricksearch.spaces import space_from_dict
from tricksearch.tuning import SearchConfig, _decide
from tricksearch.tuning._artifacts import time_budget_line
from tricksearch.tuning._budget import (
    Plan,
    Rates,
    TimeBudget,
    Work,
    budget_line,
    plan_after_tuning,
    stop_tuning,
    tuning_reserve,
    work_seconds,
)
from tricksearch.tuning._candidates import TrialRecord
from tricksearch.tuning._decide import decide, plan_work
from tricksearch.tuning._progress import Left, ProgressCallback, TuningStopper, estimate_left

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

# 10 s per trial-epoch, 12 epochs: one training is 120 s; 2 at a time
RATES = Rates(epoch=10.0, startup=0.0, slots=2)
WORK = Work(epochs=12, candidates=3, seeds=3)


# --- the plan ---------------------------------------------------------------------------------
def test_the_plan_keeps_what_fits_in_the_time_left() -> None:
    # minimum: best candidate + baseline × 2 seeds = 4 trainings = 2 waves = 240 s
    # 3 seeds: 6 trainings, 3 waves, 360 s; 2 candidates × 3 seeds: 9, 5 waves, 600 s (fits);
    # 3 candidates: 12 trainings, 6 waves, 720 s > 600
    plan = plan_after_tuning(600.0, RATES, WORK)
    assert (plan.candidates, plan.seeds, plan.tuned, plan.minimal) == (2, 3, False, False)
    assert plan.seconds == 600.0 and plan.over == 0.0
    everything = plan_after_tuning(720.0, RATES, WORK)
    assert (everything.candidates, everything.seeds) == (3, 3)


def test_the_tuned_baseline_and_the_minimal_recipe_come_after_the_candidates() -> None:
    work = Work(epochs=12, candidates=3, seeds=3, tuned_trials=4, minimal_tricks=2)
    # all 3 candidates × 3 seeds: 6 waves (720 s); + tuned baseline: 4 trials (2 waves) and its
    # 3 retrainings: (3 + 1 + 1) × 3 = 15 trainings, 8 waves: 10 waves, 1200 s: fits exactly;
    # + minimal recipe (2 tricks: 3 steps × ⌈3 / 2⌉ = 6 waves): 1920 s, does not
    plan = plan_after_tuning(1200.0, RATES, work)
    assert (plan.candidates, plan.seeds, plan.tuned, plan.minimal) == (3, 3, True, False)
    assert plan.seconds == 1200.0
    # without the room for the tuned baseline, the (cheaper) minimal recipe still gets in:
    # 720 + 6 × 120 = 1440 s
    plan = plan_after_tuning(1500.0, RATES, replace_work(work, tuned_trials=40))
    assert (plan.tuned, plan.minimal, plan.seconds) == (False, True, 1440.0)
    assert plan.to_dict()["tuned_baseline_asked"] and not plan.to_dict()["tuned_baseline"]


def replace_work(work: Work, **change: Any) -> Work:
    from dataclasses import replace

    return replace(work, **change)


def test_the_minimum_runs_even_when_it_does_not_fit_and_says_by_how_much() -> None:
    plan = plan_after_tuning(100.0, RATES, WORK)
    assert (plan.candidates, plan.seeds) == (1, 2)  # never below 2 seeds, never no candidate
    assert plan.seconds == 240.0 and plan.over == 140.0
    # fewer seeds asked than the minimum: kept as asked, never raised
    one = plan_after_tuning(100.0, RATES, replace_work(WORK, seeds=1))
    assert (one.candidates, one.seeds, one.seconds) == (1, 1, 120.0)  # 2 trainings, one wave
    # no candidate at all (every trial was the baseline's point): the baseline alone
    alone = plan_after_tuning(1000.0, RATES, replace_work(WORK, candidates=0))
    assert (alone.candidates, alone.seeds, alone.seconds) == (0, 3, 240.0)


def test_the_worker_start_is_paid_once_and_the_folds_count() -> None:
    rates = Rates(epoch=10.0, startup=30.0, slots=2)
    assert work_seconds(rates, WORK, candidates=1, seeds=2) == 30.0 + 240.0
    cv = replace_work(WORK, epochs=12 * 5)  # --cv 5: each training is 5 folds
    assert work_seconds(RATES, cv, candidates=1, seeds=2) == 5 * 240.0


def test_the_seed_race_is_bounded_by_the_time_left() -> None:
    work = Work(epochs=12, candidates=1, seeds=3, auto=True, max_seeds=10)
    # 1 candidate × 3 seeds: 6 trainings, 360 s; each raced seed: leader + baseline, one wave
    plan = plan_after_tuning(600.0, RATES, work)
    assert (plan.seeds, plan.race, plan.seconds) == (3, 2, 600.0)
    roomy = plan_after_tuning(10_000.0, RATES, work)
    assert roomy.race == 7  # up to --max-seeds 10


# --- the tuning's moving deadline ---------------------------------------------------------------
def test_the_reserve_is_what_was_asked_at_most_half_the_budget_unless_the_minimum_needs_more():
    # asked: 3 candidates + baseline × 3 seeds = 12 trainings, 6 waves, 720 s; minimum 240 s
    assert tuning_reserve(3600.0, RATES, WORK) == 720.0
    assert tuning_reserve(1000.0, RATES, WORK) == 500.0  # half the budget
    assert tuning_reserve(200.0, RATES, WORK) == 240.0  # the minimum, though past the budget


def test_the_deadline_moves_with_the_reserve() -> None:
    assert not stop_tuning(100.0, 600.0, None)  # nothing to retrain yet: only the budget's end
    assert stop_tuning(600.0, 600.0, None)
    assert not stop_tuning(359.0, 600.0, 240.0)
    assert stop_tuning(360.0, 600.0, 240.0)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _T:
    def __init__(self, tid: str, result: dict | None = None) -> None:
        self.trial_id, self.last_result = tid, result or {}


def _budgeted(seconds: float = 600.0) -> tuple[TimeBudget, ProgressCallback, TuningStopper, _Clock]:
    clock = _Clock()
    budget = TimeBudget(seconds, WORK, slots=2, clock=clock)
    progress = ProgressCallback(
        total=20,
        already_done=0,
        max_t=12,
        metric="val_acc",
        mode="max",
        stream=None,
        slots=2,
        grace=3,
        reduction_factor=3,
        time_budget=seconds,
    )
    stopper = TuningStopper(budget, progress)
    clock.now += 5  # Ray sets the run up: not counted, as for its own ``time_budget_s``
    assert not stopper.stop_all()  # the first step starts the clock
    assert budget.start == clock.now
    clock.now = budget.start = 1000.0
    return budget, progress, stopper, clock


def _epoch(
    progress: ProgressCallback,
    tid: str,
    step: int,
    wall: float,
    own: float,
    data_fraction: float | None = None,
) -> None:
    result = {"training_iteration": step, "time_this_iter_s": wall, "epoch_seconds": own}
    if data_fraction is not None:
        result["data_fraction"] = data_fraction
    progress.on_trial_result(0, [], _T(tid), result)


def test_the_stopper_stops_the_tuning_at_the_budget_minus_the_measured_reserve() -> None:
    budget, progress, stopper, clock = _budgeted(600.0)
    assert stopper("t", {}) is False  # never one trial: the whole tuning
    clock.now += 100
    assert not stopper.stop_all()  # nothing measured: the deadline is the budget's end
    # the first epochs carry their worker's start (8 s): kept apart, not in the per-epoch time
    _epoch(progress, "a", 1, wall=18.0, own=10.0)
    assert progress.seconds_per_epoch() == 10.0
    assert not stopper.stop_all() and budget.reserve is None  # one trial: nothing to retrain
    _epoch(progress, "b", 1, wall=18.0, own=10.0)
    assert not stopper.stop_all()
    # asked: startup 8 s + 6 waves × 120 s = 728 s, more than half of 600 s; the minimum
    # (8 + 2 waves × 120 = 248 s) is less: the reserve is half the budget, 300 s
    assert budget.reserve == 300.0
    clock.now = 1000.0 + 299
    assert not stopper.stop_all()
    clock.now = 1000.0 + 300
    assert stopper.stop_all()
    assert budget.stopped_early == 300.0


def test_the_reserve_is_re_estimated_as_trials_report() -> None:
    budget, progress, stopper, clock = _budgeted(3600.0)
    _epoch(progress, "a", 1, wall=10.0, own=10.0)
    _epoch(progress, "b", 1, wall=10.0, own=10.0)
    stopper.stop_all()
    assert budget.reserve == 720.0  # 6 waves × 12 epochs × 10 s
    for _ in range(8):  # slower epochs: 20 s each, mean 18 s
        _epoch(progress, "a", 2, wall=20.0, own=20.0)
    stopper.stop_all()
    assert budget.reserve == pytest.approx(6 * 12 * 18.0)
    clock.now += 3600 - 6 * 12 * 18.0
    assert stopper.stop_all()


def test_the_stopper_and_the_budget_survive_ray_pickling_them() -> None:
    budget, _, stopper, _ = _budgeted()
    copy = ray.cloudpickle.loads(ray.cloudpickle.dumps(stopper))
    assert copy.budget.seconds == budget.seconds and copy.progress.budget is copy.budget


# --- the estimate never passes the budget's end -------------------------------------------------
def test_the_estimate_counts_the_retraining_and_never_passes_the_budget_end() -> None:
    kw: dict[str, Any] = dict(
        trials_left=9, running=[], slots=3, mean_epochs=None, max_t=9, grace=1, reduction_factor=3
    )
    # tuning alone: 9 × 7/3 epochs over 3 slots × 10 s = 70 s; then 200 s of retraining
    roomy = estimate_left(seconds_per_epoch=10.0, budget_left=1000.0, reserve=200, after=200, **kw)
    assert roomy == Left(pytest.approx(270.0), capped=False)
    # the tuning stops 200 s before the end: 50 s of it, then the retraining: the budget's end
    tight = estimate_left(seconds_per_epoch=10.0, budget_left=250.0, reserve=200, after=200, **kw)
    assert tight == Left(pytest.approx(250.0), capped=True)
    rng = random.Random(0)
    for _ in range(500):
        left = rng.uniform(-50, 5000)
        got = estimate_left(
            trials_left=rng.randrange(0, 300),
            running=[rng.randrange(0, 9) for _ in range(rng.randrange(0, 4))],
            slots=rng.randrange(1, 5),
            seconds_per_epoch=rng.choice([None, rng.uniform(0.01, 500)]),
            mean_epochs=rng.choice([None, rng.uniform(1, 9)]),
            max_t=9,
            grace=1,
            reduction_factor=3,
            budget_left=left,
            reserve=rng.uniform(0, 3000),
            after=rng.uniform(0, 6000),
        )
        assert got.seconds is not None and got.seconds <= max(0.0, left) + 1e-9


def test_a_slow_first_epoch_does_not_inflate_the_estimate() -> None:
    # the "~11:26:47 left": a worker's start (60 s) counted as an epoch of a 1 s search
    progress = ProgressCallback(
        total=200, already_done=0, max_t=20, metric="val_acc", mode="max", stream=None, slots=1
    )
    progress.on_trial_start(0, [], _T("a"))
    _epoch(progress, "a", 1, wall=61.0, own=1.0)
    assert progress.seconds_per_epoch() == 1.0
    assert progress.rates(1) == Rates(1.0, 60.0, 1)
    # 200 trials × 20 epochs (no ASHA) at 1 s: about 66 minutes, not 66 hours
    assert progress.left(0.0).seconds == pytest.approx((199 * 20 + 19) * 1.0)


def test_epochs_on_a_fraction_of_the_data_count_whole_for_the_retraining() -> None:
    # --fidelity data: a 1/9 epoch of 2 s is a whole-split epoch of 18 s for the reserve and
    # the plan (the retraining trains on all of it); the tuning's own estimate keeps 2 s
    progress = ProgressCallback(
        total=20, already_done=0, max_t=9, metric="val_acc", mode="max", stream=None, slots=1
    )
    progress.on_trial_start(0, [], _T("a"))
    _epoch(progress, "a", 1, wall=2.0, own=2.0, data_fraction=1 / 9)
    _epoch(progress, "a", 2, wall=6.0, own=6.0, data_fraction=1 / 3)
    _epoch(progress, "a", 3, wall=20.0, own=20.0)
    assert progress.seconds_per_epoch() == pytest.approx((2 + 6 + 20) / 3)
    assert progress.rates(1).epoch == pytest.approx((18 + 18 + 20) / 3)


def test_the_progress_line_with_a_budget_ends_with_it() -> None:
    _, progress, _, clock = _budgeted(600.0)
    for tid in "ab":
        progress.on_trial_start(0, [], _T(tid))
        _epoch(progress, tid, 1, wall=10.0, own=10.0)
    clock.now += 250
    left = progress.left(250.0)
    assert left.capped and left.seconds == pytest.approx(350.0)  # never past the budget's end
    assert left.text() == "≤ 5:50 left (time budget)"


# --- the lines and the record -------------------------------------------------------------------
def _record(plan: Plan, **outcome: Any) -> dict[str, Any]:
    return {"seconds": 3600.0, "plan": plan.to_dict(), **outcome}


def test_the_closing_line_names_what_was_cut() -> None:
    work = Work(epochs=12, candidates=3, seeds=3, tuned_trials=4, minimal_tricks=2)
    plan = plan_after_tuning(600.0, RATES, work)
    line = budget_line(_record(plan, minimal="skipped"))
    assert line == (
        "time budget: retrained 2 of 3 candidates × 3 seeds; tuned baseline and minimal recipe "
        "skipped to fit 3600 s"
    )
    short = plan_after_tuning(100.0, RATES, work)
    line = budget_line(_record(short, used_seconds=3742.0))
    assert line.startswith("time budget: retrained 1 of 3 candidates × 2 of 3 seeds; ")
    assert "tuned baseline skipped" in line and "exceed it by ~2:20" in line
    assert line.endswith("(used 1:02:22)")
    everything = plan_after_tuning(10_000.0, RATES, work)
    assert budget_line(_record(everything, minimal="ran")) == (
        "time budget: nothing cut to fit 3600 s"
    )
    assert "nothing was planned" in budget_line({"seconds": 60.0})


def test_the_budget_line_says_the_tuning_stopped_early_for_the_retraining() -> None:
    counts = {"complete": 3, "pruned": 2, "fail": 0, "stopped": 2, "oom": 0}
    config = SearchConfig(time_budget=600, trials=20)
    assert time_budget_line(counts, config) == (
        "time budget of 600 s reached: 7 of 20 trials ran, 2 of them cut short by it"
    )
    line = time_budget_line(counts, config, stopped_early=240.4)
    assert line == (
        "time budget of 600 s reached: 7 of 20 trials ran, 2 of them cut short by it; the "
        "tuning stopped 240 s before the budget's end, kept for the retraining"
    )
    idle = dict(counts, stopped=0)
    assert "0 of them cut short" in (time_budget_line(idle, config, stopped_early=9.0) or "")
    assert time_budget_line(idle, SearchConfig(trials=20)) is None


# --- the decision trimmed by the plan -----------------------------------------------------------
TRICKS = ("label_smoothing", "mixup", "hflip")
SPACE = space_from_dict(
    {"budget": {"lr": None, "batch_size": None}, "tricks": {t: {} for t in TRICKS}},
    source="test",
    name="test",
)
BASE = Recipe.from_dict({"model": {"name": "cnn-small"}, "budget": {"epochs": 4}})


def _trial(number: int, tricks: tuple[str, ...], value: float) -> TrialRecord:
    recipe = BASE
    for t in tricks:
        recipe = recipe.with_trick(t)
    curve = {e: value - 0.05 * (4 - e) for e in range(1, 5)}
    return TrialRecord(number, "COMPLETE", value, curve, SPACE.point(recipe), 4, train_seconds=40)


RECORDS = [
    _trial(0, (), 0.80),
    _trial(1, ("label_smoothing", "mixup", "hflip"), 0.86),
    _trial(2, ("mixup",), 0.84),
    _trial(3, ("hflip",), 0.79),
]


def _plant(monkeypatch: pytest.MonkeyPatch, clock: _Clock) -> list[Any]:
    """Trainings replaced by their planted score (mixup helps); each batch costs the clock
    its waves of 2 trainings of 4 epochs × 10 s."""
    ran: list[Any] = []

    def run_jobs(jobs, ctx, config, out):
        clock.now += -(-len(jobs) // 2) * 40.0
        results = []
        for job in jobs:
            ran.append(job)
            tricks = Recipe.from_dict(job.recipe).tricks_on()
            own = random.Random(f"{sorted(tricks)}-{job.seed}").gauss(0, 0.002)
            score = 0.8 + 0.05 * ("mixup" in tricks) + random.Random(job.seed).gauss(0, 0.02) + own
            results.append(
                {"label": job.label, "seed": job.seed, "val_acc": score, "test_acc": score}
            )
        return results

    monkeypatch.setattr(_decide, "run_jobs", run_jobs)
    return ran


def test_decide_retrains_what_the_plan_keeps_and_skips_the_minimal_recipe(monkeypatch) -> None:
    clock = _Clock()
    config = SearchConfig(epochs=4, top_k=3, seeds=3, tuned_baseline=0)
    prep = SimpleNamespace(config=config, base=BASE, space=SPACE)
    work = TimeBudget.for_search(SearchConfig(epochs=4, top_k=3, seeds=3, time_budget=200), 2).work
    budget = TimeBudget(200.0, work, slots=2, clock=clock)
    ran = _plant(monkeypatch, clock)
    # measured from the records: 40 s / 4 epochs = 10 s per epoch; a training is 40 s
    plan = plan_work(prep, RECORDS, budget)
    assert plan is not None and budget.rates == Rates(10.0, 0.0, 2)
    # 200 s: 1 candidate × 3 seeds = 6 trainings, 3 waves, 120 s; 2 candidates: 9, 5 waves,
    # 200 s; the minimal recipe (3 tricks of the best: 5 steps × 2 waves) does not fit
    assert (plan.candidates, plan.seeds, plan.minimal) == (2, 3, False)
    out = io.StringIO()
    decision = decide(prep, None, RECORDS, None, out, budget=budget)
    assert decision.candidates == ["trial 1", "trial 2"]
    assert {(j.label, j.seed) for j in ran} == {
        (label, s) for label in ("trial 1", "trial 2", "baseline") for s in (0, 1, 2)
    }
    assert decision.trick_helped and decision.minimal is None and decision.path is None
    assert "minimal recipe: skipped to fit the time budget" in out.getvalue()
    record = budget.record()
    assert record["minimal"] == "skipped" and record["seeds"] == [0, 1, 2]
    assert budget_line(record).startswith(
        "time budget: retrained 2 of 3 candidates × 3 seeds; minimal recipe skipped to fit 200 s"
    )


def test_without_a_budget_decide_is_unchanged(monkeypatch) -> None:
    clock = _Clock()
    ran = _plant(monkeypatch, clock)
    config = SearchConfig(epochs=4, top_k=3, seeds=2, tuned_baseline=0, minimal=False)
    prep = SimpleNamespace(config=config, base=BASE, space=SPACE)
    decision = decide(prep, None, RECORDS, None, None)
    assert len(decision.candidates) == 3 and len(ran) == 4 * 2


# --- a real search (slow) -----------------------------------------------------------------------
class SlowLinear(nn.Module):
    """A linear model whose training batches take at least 40 ms each (digits: 9 batches, so
    ≥ 0.36 s an epoch on any machine): the retraining below cannot fit the budget anywhere."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 16:  # not the pre-flight's batches of 16
            time.sleep(0.04)
        return self.fc(x.flatten(1))


@pytest.mark.slow
def test_a_search_within_its_time_budget_cuts_the_retraining(tmp_path, capsys) -> None:
    import tricksearch

    budget = 45
    run = tmp_path / "run"
    t0 = time.monotonic()
    tricksearch.search(
        dataset="digits",
        model=SlowLinear,
        space="minimal",
        trials=6,
        epochs=16,
        top_k=3,
        seeds=3,
        tuned_baseline=4,
        time_budget=budget,
        out=run,
    )
    seconds = time.monotonic() - t0
    out = capsys.readouterr().out
    summary = json.loads((run / "results.json").read_text())["summary"]
    record = summary["search"]["time_budget"]
    plan = record["plan"]
    # the whole run (tuned baseline 4 × 16 epochs, 5 × 3 retrainings of 16 epochs at ≥ 0.36 s
    # an epoch on 2 slots: > 50 s, the minimal recipe) cannot fit in what the tuning leaves of
    # 45 s: the plan cut some of it, and the closing lines say so
    cut = (
        plan["candidates"] < plan["candidates_asked"]
        or plan["seeds"] < plan["seeds_asked"]
        or not plan["tuned_baseline"]
    )
    assert cut, record
    line = budget_line(record)
    assert f"  {line}" in out and "to fit 45 s" in line
    assert "skipped" in line or "of 3 candidates" in line
    assert "time budget:" in out and "retraining" in out  # the plan said before the retraining
    assert (run / "best_recipe.yaml").is_file() and "verdict:" in out and "gain" in summary
    assert len(summary["seeds"]) == plan["seeds"] >= 2
    # a behaviour check, not a speed target: Ray's start and stop are outside the budget
    assert seconds < budget + 60, (seconds, record)
