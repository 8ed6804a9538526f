"""A concise live progress display that replaces Ray's console tables.

One line: trials done / running / pruned / failed (/ stopped by the time budget), best so far,
elapsed and estimated time left.
On a terminal the line is rewritten in place; elsewhere (logs, CI) a line is printed whenever a
trial finishes. When trials failed, the run ends with their causes grouped, most common first
(``failed 3 × ValueError: … (see …/error.txt)``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import IO, Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from tricksearch.tuning._failures import (
    UNKNOWN_CAUSE,
    Failure,
    FailureGroup,
    format_group,
    group_failures,
)

__all__ = ["ProgressCallback", "fmt_duration"]


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressCallback(Callback):
    """Counts trial outcomes and prints one status line; keeps the cause of each failed trial.

    ``failures``: trial id -> :class:`Failure` (``RecordingASHA.failures``, filled before Ray
    calls :meth:`on_trial_error`).
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
    ) -> None:
        self._pruned_by_scheduler = pruned_by_scheduler  # RecordingASHA.pruned
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
        self._draw(force=False)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        self._draw(force=False)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        if trial.trial_id in self._failures:  # raised in its own code, or timed out
            self.on_trial_error(iteration, trials, trial)
            return
        self.running.discard(trial.trial_id)
        self.done += 1
        result = trial.last_result or {}
        value = result.get(self.metric)
        step = result.get("training_iteration") or 0
        by_scheduler = self._pruned_by_scheduler
        if step == 0 or (
            step < self.max_t and by_scheduler is not None and trial.trial_id not in by_scheduler
        ):
            self.stopped += 1  # cut by the time budget
        elif step < self.max_t:
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

    def line(self) -> str:
        elapsed = time.monotonic() - self.t0
        finished_here = self.done - self.start_done
        if finished_here > 0 and self.done < self.total:
            left = elapsed / finished_here * (self.total - self.done)
            eta = f", ~{fmt_duration(left)} left"
        else:
            eta = ""
        best = "-" if self.best is None else f"{self.best[0]:.4f}"
        return (
            f"[{self.done:>{len(str(self.total))}}/{self.total}] running {len(self.running)}  "
            f"pruned {self.pruned}  failed {self.failed}  "
            + (f"stopped {self.stopped}  " if self.stopped else "")
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
