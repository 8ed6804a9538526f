"""A concise live progress display that replaces Ray's console tables.

One line: trials done / running / pruned / failed (/ stopped by the time budget), best so far,
elapsed and estimated time left (:func:`estimate_left`: the trial-epochs still expected under
ASHA, over the parallel slots, at the measured seconds per trial-epoch, a trial's first epoch
without its worker's start; with a time budget, the retraining after the tuning included and
never past the budget's end). :class:`TuningStopper` ends the tuning at the budget's moving
deadline (``_budget``).
On a terminal the line is rewritten in place; elsewhere (logs, CI) a line is printed whenever a
trial finishes. When trials failed, the run ends with their causes grouped, most common first
(``failed 3 × ValueError: … (see …/error.txt)``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any, NamedTuple

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.stopper import Stopper

from tricksearch._clock import fmt_duration
from tricksearch.tuning._budget import Rates, TimeBudget
from tricksearch.tuning._failures import (
    UNKNOWN_CAUSE,
    Failure,
    FailureGroup,
    format_group,
    group_failures,
)

__all__ = [
    "Left",
    "ProgressCallback",
    "TuningStopper",
    "asha_epochs_left",
    "estimate_left",
    "fmt_duration",
    "jobs_left",
]


class Left(NamedTuple):
    """An estimate of the time left: ``seconds`` (None: no data yet), and whether it is the time
    budget's remainder (the budget ends the search before the trials would)."""

    seconds: float | None
    capped: bool = False

    def text(self) -> str:
        if self.seconds is None:
            return "estimating…"
        if self.capped:
            return f"≤ {fmt_duration(self.seconds)} left (time budget)"
        return f"~{fmt_duration(self.seconds)} left"


def asha_epochs_left(epoch: int, max_t: int, grace: int | None, rf: int | None) -> float:
    """Expected epochs still to run for a trial at ``epoch`` under ASHA (rungs at ``grace·rfᵏ``
    below ``max_t``; a trial goes on past a rung with probability ``1/rf``): to its next rung
    surely, each later stretch with one more factor ``1/rf``. From epoch 0 with grace 1, rf 3,
    max_t 9: ``1 + 2/3 + 6/9 = 2.33``. Without ASHA (``grace`` None): ``max_t - epoch``."""
    if epoch >= max_t:
        return 0.0
    if grace is None or rf is None or rf < 2:
        return float(max_t - epoch)
    rungs = [grace * rf**k for k in range(64) if grace * rf**k < max_t] + [max_t]
    ahead = [r for r in rungs if r > epoch]
    left, prev, p = 0.0, epoch, 1.0
    for rung in ahead:
        left += (rung - prev) * p
        prev, p = rung, p / rf
    return left


def estimate_left(
    *,
    trials_left: int,
    running: Sequence[int],
    slots: int,
    seconds_per_epoch: float | None,
    mean_epochs: float | None,
    max_t: int,
    grace: int | None,
    reduction_factor: int | None,
    budget_left: float | None = None,
    reserve: float = 0.0,
    after: float = 0.0,
) -> Left:
    """The search's time left: the trial-epochs still expected, over ``slots``, times
    ``seconds_per_epoch``; the time budget's remainder ``budget_left`` when that comes first.

    With a budget, the work after the tuning counts too: the tuning ends at the latest
    ``reserve`` seconds before the budget's end (``_budget``'s moving deadline), then ``after``
    seconds of retraining follow; the sum is never past the budget's end.

    ``trials_left``: trials not started yet, each expected to run ``mean_epochs`` (the mean of the
    trials finished so far) or, before any finished, what ASHA lets a new trial run
    (:func:`asha_epochs_left` from 0). ``running``: the epochs each running trial has done (each
    expected to run :func:`asha_epochs_left` more). The search lasts at least as long as its
    longest single trial. No measured seconds yet: ``Left(None)`` ("estimating…"), or the
    budget's remainder when there is a budget.
    """
    budget = None if budget_left is None else max(0.0, budget_left)
    if seconds_per_epoch is None:
        return Left(budget, capped=budget is not None)
    per_new = (
        mean_epochs
        if mean_epochs is not None
        else asha_epochs_left(0, max_t, grace, reduction_factor)
    )
    running_left = [asha_epochs_left(e, max_t, grace, reduction_factor) for e in running]
    work = trials_left * per_new + sum(running_left)
    longest = max([*running_left, per_new if trials_left else 0.0])
    seconds = max(work / max(1, slots), longest) * seconds_per_epoch
    if budget is not None and (reserve or after):
        tuning = min(seconds, max(0.0, budget - reserve))
        total = tuning + after
        return Left(min(total, budget), capped=tuning < seconds or total >= budget)
    if budget is not None and budget < seconds:
        return Left(budget, capped=True)
    return Left(seconds)


def jobs_left(mean_seconds: float, left: int, slots: int) -> float:
    """Seconds left for ``left`` jobs of ``mean_seconds`` each, ``slots`` at a time (one job's
    time at least while any is left)."""
    if left <= 0:
        return 0.0
    return mean_seconds * left / max(1, min(slots, left))


class ProgressCallback(Callback):
    """Counts trial outcomes and prints one status line; keeps the cause of each failed trial.

    ``failures``: trial id -> :class:`Failure` (``RecordingASHA.failures``, filled before Ray
    calls :meth:`on_trial_error`). The estimate of the time left (:func:`estimate_left`) reads
    ``slots`` (default: the most trials seen running at once), ASHA's ``grace`` and
    ``reduction_factor`` (default: no ASHA, every trial runs ``max_t`` epochs, until trials have
    finished: then their mean) and ``time_budget`` (seconds from now; None: none).
    """

    def __init__(
        self,
        *,
        total: int,
        already_done: int,
        max_t: int,
        metric: str,
        mode: str,
        stream: IO[str] | None,
        best: tuple[float, str] | None = None,
        pruned_by_scheduler: set[str] | None = None,
        failures: Mapping[str, Failure] | None = None,
        slots: int | None = None,
        grace: int | None = None,
        reduction_factor: int | None = None,
        time_budget: float | None = None,
        oom: Mapping[str, float] | None = None,
    ) -> None:
        self._pruned_by_scheduler = pruned_by_scheduler  # RecordingASHA.pruned
        self._oom = oom if oom is not None else {}  # RecordingASHA.oom: out of GPU memory
        self.oom = 0
        self._failures = failures if failures is not None else {}  # RecordingASHA.failures
        self.causes: list[Failure] = []  # one per trial that failed here
        self.total = total
        self.done = already_done
        self.start_done = already_done
        self.max_t = max_t
        self.metric = metric
        self.mode = mode
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.running: set[str] = set()
        self.pruned = 0
        self.failed = 0
        self.stopped = 0  # cut by the time budget (before or after their first epoch)
        self.best = best
        self.slots = slots
        self.grace = grace
        self.reduction_factor = reduction_factor
        self.time_budget = time_budget
        self._peak = 0  # the most trials running at once
        self._epochs: dict[str, int] = {}  # running trial -> epochs done
        self._finished_epochs: list[int] = []  # one per trial ended here (not by the budget)
        self._epoch_seconds = [0.0, 0]  # seconds of the trial-epochs measured, their number
        # the same as whole-split epochs (``--fidelity data``: an epoch on a fraction f of the
        # train split counts 1/f times its seconds), for the retraining's reserve and plan
        self._full_epoch_seconds = [0.0, 0]
        self._started: set[str] = set()  # trials whose first epoch (worker start) was seen
        self._startup = 0.0  # the longest worker start seen (a first epoch's extra seconds)
        self.budget: TimeBudget | None = None  # --time-budget (``TuningStopper`` sets it)
        self.t0 = time.monotonic()
        self._last_draw = 0.0

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the run config (experiment checkpoint); the console stream stays here.
        state = self.__dict__.copy()
        state["stream"] = None
        return state

    # -- Ray hooks ----------------------------------------------------------------------------
    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.running.add(trial.trial_id)
        self._peak = max(self._peak, len(self.running))
        self._draw(force=False)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        self._epochs[trial.trial_id] = int(result.get("training_iteration") or 0)
        seconds = result.get("time_this_iter_s", result.get("epoch_seconds"))
        own = result.get("epoch_seconds")
        if trial.trial_id not in self._started and isinstance(own, (int, float)) and own >= 0:
            # A trial's first epoch also started its worker (importing torch, loading the data):
            # seconds that a steady epoch does not cost are kept apart as the startup; the
            # run's first epoch also waited for Ray to start the first workers, as the
            # retraining's fresh workers will.
            waited = [float(seconds)] if isinstance(seconds, (int, float)) else []
            if not self._started:
                waited.append(time.monotonic() - self.t0)
            self._startup = max([self._startup, *(w - float(own) for w in waited)])
            seconds = own
        self._started.add(trial.trial_id)
        if isinstance(seconds, (int, float)) and seconds >= 0:
            self._epoch_seconds[0] += float(seconds)
            self._epoch_seconds[1] += 1
            fraction = result.get("data_fraction")
            scale = 1.0 / fraction if isinstance(fraction, (int, float)) and fraction > 0 else 1.0
            self._full_epoch_seconds[0] += float(seconds) * scale  # evaluation included: errs long
            self._full_epoch_seconds[1] += 1
        self._draw(force=False)

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._started.discard(trial.trial_id)  # its next epoch starts a worker again

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        if trial.trial_id in self._oom:  # not the configuration's doing (``_packing``)
            self.running.discard(trial.trial_id)
            self._epochs.pop(trial.trial_id, None)
            self.oom += 1
            self._draw(force=True)
            return
        if trial.trial_id in self._failures:  # raised in its own code, or timed out
            self.on_trial_error(iteration, trials, trial)
            return
        self.running.discard(trial.trial_id)
        self._epochs.pop(trial.trial_id, None)
        self.done += 1
        result = trial.last_result or {}
        value = result.get(self.metric)
        step = result.get("training_iteration") or 0
        by_scheduler = self._pruned_by_scheduler
        if step == 0 or (
            step < self.max_t and by_scheduler is not None and trial.trial_id not in by_scheduler
        ):
            self.stopped += 1  # cut by the time budget
            self._draw(force=True)
            return
        self._finished_epochs.append(int(step))
        if step < self.max_t:
            self.pruned += 1
        elif value is not None:
            better = self.best is None or (
                value > self.best[0] if self.mode == "max" else value < self.best[0]
            )
            if better:
                self.best = (float(value), trial.trial_id)
        self._draw(force=True)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self.running.discard(trial.trial_id)
        self._finished_epochs.append(self._epochs.pop(trial.trial_id, 0))
        self.done += 1
        self.failed += 1
        failure = self._failures.get(trial.trial_id)
        self.causes.append(failure or Failure(UNKNOWN_CAUSE, getattr(trial, "error_file", None)))
        self._draw(force=True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self.stream is None:
            return
        if self.tty:
            self.stream.write("\n")
        for line in self.failure_lines():
            self.stream.write(line + "\n")
        self.stream.flush()

    # -- display ------------------------------------------------------------------------------
    def failure_groups(self) -> list[FailureGroup]:
        """The causes of the trials that failed in this run, grouped, most common first."""
        return group_failures(self.causes)

    def failure_lines(self) -> list[str]:
        """``"  failed 3 × ValueError: … (see …/error.txt)"``, one per cause."""
        return [f"  failed {format_group(g)}" for g in self.failure_groups()]

    def seconds_per_epoch(self) -> float | None:
        """The mean seconds of a trial-epoch measured so far (None before the first)."""
        seconds, count = self._epoch_seconds
        return seconds / count if count else None

    def rates(self, slots: int) -> Rates | None:
        """The speeds measured so far, for the time budget's plan (None before an epoch): the
        retraining trains on the whole train split, so an epoch a trial ran on a fraction of it
        (data fidelity) counts as its seconds over that fraction."""
        seconds, count = self._full_epoch_seconds
        return Rates(seconds / count, self._startup, slots) if count else None

    @property
    def usable(self) -> bool:
        """Whether a trial besides the first (the baseline's point) has reported an epoch."""
        return len(self._started) >= min(2, self.total)

    def left(self, elapsed: float) -> Left:
        """The estimate of the time left, from what the trials of this run have shown so far;
        with a time budget (``budget``), the retraining after the tuning included."""
        running = [self._epochs.get(t, 0) for t in self.running]
        seconds, count = self._epoch_seconds
        budget = self.budget
        if budget is not None:
            budget.update(self.rates(budget.slots), self.usable)
            reserve = budget.reserve if budget.reserve is not None else 0.0
            extra = {"reserve": reserve, "after": budget.after_seconds()}
            budget_left: float | None = budget.left()
        else:
            extra = {}
            budget_left = None if self.time_budget is None else self.time_budget - elapsed
        return estimate_left(
            trials_left=max(0, self.total - self.done - len(running)),
            running=running,
            slots=self.slots or max(1, self._peak),
            seconds_per_epoch=seconds / count if count else None,
            mean_epochs=(
                statistics.fmean(self._finished_epochs) if self._finished_epochs else None
            ),
            max_t=self.max_t,
            grace=self.grace,
            reduction_factor=self.reduction_factor,
            budget_left=budget_left,
            **extra,
        )

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        eta = f", {self.left(elapsed).text()}" if self.done < self.total else ""
        best = "-" if self.best is None else f"{self.best[0]:.4f}"
        return (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] running {len(self.running)}  "
            f"pruned {self.pruned}  failed {self.failed}  "
            + (f"stopped {self.stopped}  " if self.stopped else "")
            + (f"OOM {self.oom}  " if self.oom else "")
            + f"best {self.metric} {best}  "
            f"{fmt_duration(elapsed)} elapsed{eta}"
        )

    def _draw(self, *, force: bool) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if self.tty:
            if force or now - self._last_draw > 1.0:
                self.stream.write("\r\033[K" + self.line())
                self.stream.flush()
                self._last_draw = now
        elif force:
            self.stream.write(self.line() + "\n")
            self.stream.flush()


class TuningStopper(Stopper):
    """The time budget's moving deadline for the tuning (``_budget``): Ray asks :meth:`stop_all`
    at every step and, when it says yes, ends the experiment as ``time_budget_s`` would (the
    trials it cuts are closed as stopped by the budget, ``close_running_trials``). The reserve
    is re-estimated from ``progress``'s measurements each time; ``progress`` gets the budget for
    its estimate of the time left."""

    def __init__(self, budget: TimeBudget, progress: ProgressCallback) -> None:
        self.budget, self.progress = budget, progress
        self._started = False
        progress.budget = budget

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # the budget stops the whole tuning, never one trial

    def stop_all(self) -> bool:
        if not self._started:  # as Ray's own ``time_budget_s``: from its first check on
            self._started = True
            self.budget.restart()
        progress = self.progress
        self.budget.update(progress.rates(self.budget.slots), progress.usable)
        return self.budget.tuning_over()
