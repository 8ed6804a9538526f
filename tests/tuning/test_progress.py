"""Live progress: the estimate of the time left accounts for ASHA and the time budget
(``estimate_left``, on planted numbers worked out by hand), the search's progress lines carry it,
and the retraining's lines carry elapsed and an estimate (mean seconds × jobs left / slots)."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace
from typing import Any

import pytest

from tricksearch.tuning import SearchConfig, _progress, _retrain
from tricksearch.tuning._progress import (
    Left,
    ProgressCallback,
    asha_epochs_left,
    estimate_left,
    jobs_left,
)
from tricksearch.tuning._retrain import RetrainJob, run_jobs

ASHA = {"max_t": 9, "grace": 1, "reduction_factor": 3}


def test_asha_expected_epochs_follow_the_rungs() -> None:
    # rungs 1, 3, then 9: to epoch 1 surely, on to 3 with 1/3, on to 9 with 1/9
    assert asha_epochs_left(0, 9, 1, 3) == pytest.approx(1 + 2 / 3 + 6 / 9)  # 2.33, not 9
    assert asha_epochs_left(1, 9, 1, 3) == pytest.approx(2 + 6 / 3)  # past rung 1: to 3 surely
    assert asha_epochs_left(3, 9, 1, 3) == pytest.approx(6)  # past rung 3: to the end
    assert asha_epochs_left(9, 9, 1, 3) == 0
    assert asha_epochs_left(0, 20, 2, 2) == pytest.approx(2 + 2 / 2 + 4 / 4 + 8 / 8 + 4 / 16)
    assert asha_epochs_left(2, 9, None, None) == 7  # no ASHA: every epoch


def test_no_trial_finished_yet_new_trials_are_expected_to_run_what_asha_lets_them() -> None:
    # 9 trials × 7/3 epochs = 21 trial-epochs, 3 slots: 7 epochs of 10 s each
    left = estimate_left(
        trials_left=9, running=[], slots=3, seconds_per_epoch=10.0, mean_epochs=None, **ASHA
    )
    assert left == Left(pytest.approx(70.0), capped=False)
    assert left.text() == "~1:10 left"


def test_the_mean_epochs_of_the_finished_trials_replace_asha_s_expectation() -> None:
    left = estimate_left(
        trials_left=9, running=[], slots=3, seconds_per_epoch=10.0, mean_epochs=4.0, **ASHA
    )
    assert left.seconds == pytest.approx(120.0)  # 9 × 4 / 3 × 10
    # running trials at epochs 1 and 3 still have 4 and 6 epochs to go (ASHA promoted them)
    left = estimate_left(
        trials_left=7, running=[1, 3], slots=3, seconds_per_epoch=5.0, mean_epochs=3.0, **ASHA
    )
    assert left.seconds == pytest.approx((7 * 3 + 4 + 6) / 3 * 5)  # 51.7 s
    assert left.text() == "~0:52 left"


def test_the_last_trial_sets_the_end_whatever_the_slots() -> None:
    left = estimate_left(
        trials_left=0, running=[3], slots=3, seconds_per_epoch=10.0, mean_epochs=2.0, **ASHA
    )
    assert left.seconds == pytest.approx(60.0)  # 6 epochs of one trial, not 6 / 3
    done = estimate_left(
        trials_left=0, running=[], slots=3, seconds_per_epoch=10.0, mean_epochs=2.0, **ASHA
    )
    assert done.seconds == 0


def test_the_time_budget_caps_the_estimate() -> None:
    kw: dict[str, Any] = dict(trials_left=9, running=[], slots=3, mean_epochs=None, **ASHA)
    capped = estimate_left(seconds_per_epoch=10.0, budget_left=45.0, **kw)
    assert capped == Left(45.0, capped=True)
    assert capped.text() == "≤ 0:45 left (time budget)"
    roomy = estimate_left(seconds_per_epoch=10.0, budget_left=500.0, **kw)
    assert roomy == Left(pytest.approx(70.0), capped=False)
    # the issue's case: 200 trials left at 60 s per full trial, 23 minutes of budget left
    issue = estimate_left(
        trials_left=200,
        running=[],
        slots=1,
        seconds_per_epoch=60.0,
        mean_epochs=None,
        max_t=20,
        grace=5,
        reduction_factor=3,
        budget_left=23 * 60,
    )
    assert issue.text() == "≤ 23:00 left (time budget)"
    spent = estimate_left(seconds_per_epoch=10.0, budget_left=-3.0, **kw)
    assert spent == Left(0.0, capped=True)


def test_no_measured_epoch_yet_says_estimating_or_the_budget() -> None:
    kw: dict[str, Any] = dict(trials_left=9, running=[], slots=3, mean_epochs=None, **ASHA)
    nothing = estimate_left(seconds_per_epoch=None, **kw)
    assert nothing == Left(None) and nothing.text() == "estimating…"
    budget = estimate_left(seconds_per_epoch=None, budget_left=300.0, **kw)
    assert budget.text() == "≤ 5:00 left (time budget)"


class _T:
    def __init__(self, tid: str, result: dict | None = None) -> None:
        self.trial_id, self.last_result = tid, result or {}


@pytest.fixture
def frozen_clock(monkeypatch) -> None:
    """The callback's clock stands still: elapsed is 0:00 however slow the machine."""
    monkeypatch.setattr(_progress, "time", SimpleNamespace(monotonic=lambda: 1000.0))


def _three_running(**kw: Any) -> tuple[ProgressCallback, io.StringIO]:
    out = io.StringIO()
    cb = ProgressCallback(
        total=12, already_done=0, metric="val_acc", mode="max", stream=out, **ASHA, **kw
    )
    before = "≤ 0:30 left (time budget)" if kw.get("time_budget") == 30 else "estimating…"
    assert cb.line().endswith(f" elapsed, {before}")  # no epoch measured yet
    for tid in "abc":
        cb.on_trial_start(0, [], _T(tid))
        cb.on_trial_result(
            0, [], _T(tid), {"training_iteration": 1, "time_this_iter_s": 10.0, "val_acc": 0.5}
        )
    cb.on_trial_complete(0, [], _T("a", {"training_iteration": 1, "val_acc": 0.5}))  # pruned
    return cb, out


@pytest.mark.parametrize("slots", [3, None])  # None: the most trials seen running at once
def test_the_progress_line_carries_the_asha_estimate(slots: int | None, frozen_clock) -> None:
    cb, out = _three_running(slots=slots)
    # 9 new trials × 1 epoch (the mean of "a") + b and c at epoch 1 (4 epochs each to go),
    # over 3 slots, 10 s per trial-epoch: 17 / 3 × 10 = 56.7 s
    assert cb.left(0.0).seconds == pytest.approx(17 / 3 * 10)
    text = out.getvalue()
    assert "\r" not in text and "\033" not in text  # not a terminal: plain lines
    (line,) = text.splitlines()
    assert line.startswith("[ 1/12] running 2  pruned 1  failed 0  best val_acc -  ")
    assert line.endswith("0:00 elapsed, ~0:57 left")


def test_the_progress_line_says_when_the_time_budget_ends_the_search_first(frozen_clock) -> None:
    cb, out = _three_running(slots=3, time_budget=30.0)
    assert cb.left(10.0) == Left(20.0, capped=True)
    assert out.getvalue().rstrip().endswith("0:00 elapsed, ≤ 0:30 left (time budget)")


def test_a_failed_trial_counts_its_epochs_in_the_mean(frozen_clock) -> None:
    cb, _ = _three_running(slots=3)
    cb.on_trial_result(0, [], _T("b"), {"training_iteration": 3, "time_this_iter_s": 10.0})
    cb.on_trial_error(0, [], _T("b"))
    # finished: a (1 epoch), b (3): mean 2; 9 new trials × 2 + c at epoch 1 (4 to go) = 22
    assert cb.left(0.0).seconds == pytest.approx(22 / 3 * 10)


def test_jobs_left_is_the_mean_times_the_jobs_over_the_slots() -> None:
    assert jobs_left(30.0, 9, 3) == pytest.approx(90.0)
    assert jobs_left(30.0, 2, 3) == pytest.approx(30.0)  # one round, however many slots
    assert jobs_left(30.0, 0, 3) == 0


def test_retraining_lines_carry_elapsed_and_the_estimate(monkeypatch) -> None:
    jobs = [RetrainJob(label, {}, seed) for label in ("baseline", "trial 3") for seed in (0, 1)]

    def fake_map(fn, tasks, **kw):
        for i in range(len(tasks)):
            if i == 1:
                yield i, RuntimeError("planted")  # no seconds: the mean is of the others
            else:
                yield i, {"seed": jobs[i].seed, "val_acc": 0.9, "seconds": 30.0}

    monkeypatch.setattr("tricksearch.tuning._parallel.map_tasks", fake_map)
    monkeypatch.setattr(_retrain, "_slots", lambda config: 2)
    out = io.StringIO()
    results = run_jobs(jobs, None, SearchConfig(), out)
    assert len(results) == 4
    lines = out.getvalue().splitlines()
    clock = r"\d+:\d\d elapsed"
    expected = [
        rf"  retrained 1/4: baseline seed 0: val_acc 0\.9000  \({clock}, ~0:45 left\)",  # 30×3/2
        rf"  retrained 2/4: baseline seed 1: failed  \({clock}, ~0:30 left\)",  # 30×2/2
        rf"  retrained 3/4: trial 3 seed 0: val_acc 0\.9000  \({clock}, ~0:30 left\)",  # 30×1/1
        rf"  retrained 4/4: trial 3 seed 1: val_acc 0\.9000  \({clock}\)",
    ]
    assert len(lines) == 4
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), line
