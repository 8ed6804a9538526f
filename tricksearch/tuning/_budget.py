"""``--time-budget``: one budget for the tuning and everything after it.

The clock starts when the tuning starts (Ray's first step of it, as for Ray's own
``time_budget_s``). Speeds are measured, never assumed:
``Rates.epoch``, the seconds of one full-budget trial-epoch (``_progress.ProgressCallback``
measures it as trials report; a trial's first epoch without its worker's start, which is
``Rates.startup``), and ``Rates.slots``, the trainings that run at once.

Cost of the work after the tuning (:func:`work_seconds`), in waves of ``slots`` trainings of
``E = epochs × folds`` epochs each, ``t = E × Rates.epoch`` seconds a wave::

    startup + t × ( ⌈T / slots⌉                 tuned baseline search (T trials, in batches)
                  + ⌈(c + 1 + tuned)·s / slots⌉  retraining: c candidates, the baseline (and the
                                                 tuned baseline), s seeds, in one batch
                  + r·⌈(2 + tuned) / slots⌉      --seeds auto: r seeds added to the race
                  + (2k − 1)·⌈s / slots⌉ )       minimal recipe: k tricks, one step at a time

Tuning reserve (:func:`tuning_reserve`): the tuning stops at ``budget − reserve`` (``_progress
.TuningStopper``), with ``reserve`` the retraining asked for (top-k candidates × seeds, no tuned
baseline, no minimal recipe), but at most half the budget unless the minimum (the baseline and
the best candidate × 2 seeds) needs more; re-estimated as trials report. It applies once a
trial besides the first has reported an epoch (something to retrain); until then only the
budget's end stops the tuning.

Plan (:func:`plan_after_tuning`): start from the minimum, then add, while the cost stays within
the time left: seeds up to those asked, candidates up to those asked, the tuned baseline, the
minimal recipe, seeds for the ``--seeds auto`` race. The minimum always runs, even when it
does not fit: the plan then says by how much the budget is expected to be exceeded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tricksearch._clock import fmt_duration

if TYPE_CHECKING:
    from tricksearch.tuning._candidates import TrialRecord
    from tricksearch.tuning._config import SearchConfig

__all__ = [
    "MIN_SEEDS",
    "Plan",
    "Rates",
    "TimeBudget",
    "Work",
    "budget_line",
    "plan_after_tuning",
    "rates_from_records",
    "stop_tuning",
    "tuning_reserve",
    "work_seconds",
]

#: The fewest seeds a plan keeps (fewer when fewer were asked): the verdict needs pairs.
MIN_SEEDS = 2


@dataclass(frozen=True)
class Rates:
    """Measured speed: seconds per full-budget trial-epoch, the seconds a worker takes to start
    (paid once after the tuning, by the fresh workers of the retraining), trainings at once."""

    epoch: float
    startup: float = 0.0
    slots: int = 1


@dataclass(frozen=True)
class Work:
    """What the search asks for after the tuning. ``epochs``: of one training (× the folds of
    ``--cv``); ``candidates``: the candidates there are (at most ``--top-k``); ``seeds``: the
    first seeds; ``max_seeds``: the race's bound (``auto``); ``tuned_trials``: the tuned
    baseline's search (0: none); ``minimal_tricks``: the tricks the ablation path would drop one
    by one (0: no minimal recipe)."""

    epochs: int
    candidates: int
    seeds: int
    auto: bool = False
    max_seeds: int = 0
    tuned_trials: int = 0
    minimal_tricks: int = 0


def _waves(jobs: int, slots: int) -> int:
    return math.ceil(jobs / max(1, slots)) if jobs > 0 else 0


def work_seconds(
    rates: Rates,
    work: Work,
    *,
    candidates: int,
    seeds: int,
    tuned: bool = False,
    minimal: bool = False,
    race: int = 0,
) -> float:
    """The seconds of that much work (see the module docstring)."""
    slots, k, extra = rates.slots, work.minimal_tricks, int(tuned)
    waves = _waves((candidates + 1 + extra) * seeds, slots)
    if tuned:
        waves += _waves(work.tuned_trials, slots)
    waves += race * _waves(2 + extra, slots)
    if minimal and k:
        waves += (2 * k - 1) * _waves(seeds, slots)
    return rates.startup + waves * work.epochs * rates.epoch


def _least(work: Work) -> tuple[int, int]:
    """The minimum: the best candidate (when there is one) and 2 seeds (fewer if asked)."""
    return min(1, work.candidates), min(MIN_SEEDS, work.seeds)


def tuning_reserve(budget: float, rates: Rates, work: Work) -> float:
    """The seconds kept for the retraining: what was asked (candidates × seeds), at most half
    the budget unless the minimum needs more."""
    asked = work_seconds(rates, work, candidates=work.candidates, seeds=work.seeds)
    c, s = _least(work)
    least = work_seconds(rates, work, candidates=c, seeds=s)
    return min(asked, max(least, budget / 2))


def stop_tuning(elapsed: float, budget: float, reserve: float | None) -> bool:
    """The tuning's moving deadline: the budget's end, or ``budget − reserve`` once there is
    something to retrain (``reserve`` None until then)."""
    if elapsed >= budget:
        return True
    return reserve is not None and elapsed >= budget - reserve


@dataclass(frozen=True)
class Plan:
    """What the work after the tuning does within ``left`` seconds, and what it expects to
    cost (``seconds``); ``work``: what was asked."""

    work: Work
    left: float
    candidates: int
    seeds: int
    tuned: bool
    minimal: bool
    race: int
    seconds: float

    @property
    def over(self) -> float:
        """Seconds the budget is expected to be exceeded by (the minimum did not fit)."""
        return max(0.0, self.seconds - self.left)

    def to_dict(self) -> dict[str, Any]:
        w = self.work
        return {
            "left_seconds": round(self.left, 1),
            "expected_seconds": round(self.seconds, 1),
            "expected_over_seconds": round(self.over, 1),
            "candidates": self.candidates,
            "candidates_asked": w.candidates,
            "seeds": self.seeds,
            "seeds_asked": w.seeds,
            "tuned_baseline": self.tuned,
            "tuned_baseline_asked": w.tuned_trials > 0,
            "minimal": self.minimal,
            "minimal_asked": w.minimal_tricks > 0,
            "race_seeds": self.race if w.auto else 0,
        }


def plan_after_tuning(left: float, rates: Rates, work: Work) -> Plan:
    """Fit the work into ``left`` seconds; see the module docstring."""
    c, s = _least(work)
    plan = Plan(work, left, c, s, tuned=False, minimal=False, race=0, seconds=0.0)

    def cost(p: Plan) -> float:
        return work_seconds(
            rates,
            work,
            candidates=p.candidates,
            seeds=p.seeds,
            tuned=p.tuned,
            minimal=p.minimal,
            race=p.race,
        )

    def grow(p: Plan, **change: Any) -> Plan | None:
        bigger = replace(p, **change)
        return bigger if cost(bigger) <= left else None

    while plan.seeds < work.seeds and (more := grow(plan, seeds=plan.seeds + 1)):
        plan = more
    while plan.candidates < work.candidates and (
        more := grow(plan, candidates=plan.candidates + 1)
    ):
        plan = more
    if work.tuned_trials:
        plan = grow(plan, tuned=True) or plan
    if work.minimal_tricks:
        plan = grow(plan, minimal=True) or plan
    if work.auto:
        while plan.seeds + plan.race < work.max_seeds and (more := grow(plan, race=plan.race + 1)):
            plan = more
    return replace(plan, seconds=cost(plan))


def rates_from_records(records: Sequence[TrialRecord], slots: int) -> Rates | None:
    """Seconds per trial-epoch from the study (the trials' own training time over their epochs),
    when the tuning of this run measured none (a resume with no trial left to run)."""
    seconds = sum(r.train_seconds for r in records if r.epochs and r.train_seconds > 0)
    epochs = sum(r.epochs for r in records if r.epochs and r.train_seconds > 0)
    return Rates(seconds / epochs, 0.0, slots) if epochs else None


def _sum(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def budget_line(record: Mapping[str, Any]) -> str:
    """The closing line: what was cut to fit the budget (results.json's
    ``search.time_budget``), e.g. ``time budget: retrained 2 of 3 candidates × 3 seeds; tuned
    baseline and minimal recipe skipped to fit 3600 s``."""
    budget = f"{record['seconds']:g} s"
    plan = record.get("plan")
    if not plan:
        return f"time budget: {budget}; no epoch was measured, so nothing was planned or cut"
    parts: list[str] = []
    c, ca, s, sa = plan["candidates"], plan["candidates_asked"], plan["seeds"], plan["seeds_asked"]
    if c < ca or s < sa:
        seeds = f"{s} of {sa} seeds" if s < sa else f"{s} seed{'s' if s != 1 else ''}"
        kept = f"{c} of {ca} candidates" if c < ca else f"{c} candidate{'s' if c != 1 else ''}"
        parts.append(f"retrained {kept} × {seeds}")
    skipped = [
        name
        for name, cut in (
            ("tuned baseline", plan["tuned_baseline_asked"] and not plan["tuned_baseline"]),
            ("minimal recipe", record.get("minimal") == "skipped"),
        )
        if cut
    ]
    if skipped:
        parts.append(f"{_sum(skipped)} skipped")
    if record.get("race") == "stopped":
        parts.append(f"seed race stopped at {len(record.get('seeds', [])) or s} seeds")
    used = f"used {fmt_duration(record['used_seconds'])}" if "used_seconds" in record else ""
    if not parts:
        return f"time budget: nothing cut to fit {budget}" + (f" ({used})" if used else "")
    line = f"time budget: {'; '.join(parts)} to fit {budget}"
    if plan["expected_over_seconds"] > 0:
        over = fmt_duration(plan["expected_over_seconds"])
        line += f"; even that was expected to exceed it by ~{over}"
    return line + (f" ({used})" if used else "")


@dataclass
class TimeBudget:
    """The search's budget at run time: its clock (from the tuning's first step, or from its
    creation when no trial is left to run), what the
    search asks for, the speeds measured, and what the work after the tuning did to fit.

    ``measure`` (set by ``_progress.TuningStopper``): the tuning's live measurements, ``Rates``
    or None before the first epoch; ``usable``: whether a trial besides the first has
    reported an epoch."""

    seconds: float
    work: Work
    slots: int
    clock: Callable[[], float] = time.monotonic
    start: float = field(default=-1.0)
    reserve: float | None = None  # the tuning's reserve, last estimated
    stopped_early: float | None = None  # seconds before the end the tuning stopped at
    rates: Rates | None = None
    plan: Plan | None = None
    outcome: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.start < 0:
            self.start = self.clock()

    @classmethod
    def for_search(cls, config: SearchConfig, slots: int) -> TimeBudget:
        """The budget of ``config.time_budget`` for a search with ``slots`` trainings at once."""
        seeds = len(config.first_seeds)
        work = Work(
            epochs=config.epochs * (config.cv or 1),
            candidates=config.top_k,
            seeds=seeds,
            auto=config.seeds == "auto",
            max_seeds=config.max_seeds if config.seeds == "auto" else seeds,
            tuned_trials=config.tuned_baseline_trials,
        )
        if config.time_budget is None:
            raise ValueError("time_budget: got None, expected seconds > 0 for a TimeBudget.")
        return cls(float(config.time_budget), work, slots)

    def restart(self) -> None:
        """Start the clock now: the tuning's first step (Ray's setup of the run, as for its own
        ``time_budget_s``, is not counted)."""
        self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    # -- the tuning ---------------------------------------------------------------------------
    def update(self, rates: Rates | None, usable: bool) -> None:
        """The tuning's newest measurements: re-estimate the reserve."""
        if rates is not None:
            self.rates = rates
            self.reserve = tuning_reserve(self.seconds, rates, self.work) if usable else None

    def tuning_over(self) -> bool:
        """Whether the tuning must stop now (the moving deadline)."""
        elapsed = self.elapsed()
        over = stop_tuning(elapsed, self.seconds, self.reserve)
        if over and self.stopped_early is None:
            self.stopped_early = max(0.0, self.seconds - elapsed)
        return over

    def after_seconds(self) -> float:
        """The expected seconds of the work after the tuning, as asked (for the progress
        estimate; the minimal recipe's cost is unknown until a winner is chosen)."""
        if self.rates is None:
            return 0.0
        w = self.work
        return work_seconds(
            self.rates, w, candidates=w.candidates, seeds=w.seeds, tuned=w.tuned_trials > 0
        )

    # -- after the tuning ---------------------------------------------------------------------
    def plan_for(self, work: Work, records: Sequence[TrialRecord]) -> Plan | None:
        """The plan of the work after the tuning in the time left (None: no speed measured)."""
        rates = self.rates or rates_from_records(records, self.slots)
        if rates is None:
            return None
        self.rates = rates
        self.plan = plan_after_tuning(self.left(), rates, work)
        return self.plan

    def fits(self, seconds: float) -> bool:
        return seconds <= self.left()

    def round_seconds(self, trainings: int) -> float:
        """The seconds of one batch of ``trainings`` (one race round)."""
        if self.rates is None or self.plan is None:
            return 0.0
        return _waves(trainings, self.rates.slots) * self.plan.work.epochs * self.rates.epoch

    def minimal_seconds(self, tricks: int, seeds: int) -> float:
        """The seconds of the ablation path for ``tricks`` tricks with ``seeds`` seeds."""
        if self.rates is None or self.plan is None or tricks == 0:
            return 0.0
        steps = (2 * tricks - 1) * _waves(seeds, self.rates.slots)
        return steps * self.plan.work.epochs * self.rates.epoch

    def record(self) -> dict[str, Any]:
        """What results.json keeps (``search.time_budget``); the closing line reads it."""
        out: dict[str, Any] = {"seconds": self.seconds, "used_seconds": round(self.elapsed(), 1)}
        if self.stopped_early is not None:
            out["tuning_stopped_before_end_seconds"] = round(self.stopped_early, 1)
        if self.rates is not None:
            out["seconds_per_epoch"] = round(self.rates.epoch, 4)
            out["startup_seconds"] = round(self.rates.startup, 2)
            out["slots"] = self.rates.slots
        if self.plan is not None:
            out["plan"] = self.plan.to_dict()
        return out | self.outcome

    def plan_line(self) -> str:
        """What the plan keeps and cuts, said before the retraining."""
        p, rates = self.plan, self.rates
        assert p is not None and rates is not None
        head = (
            f"time budget: {fmt_duration(max(0.0, p.left))} left, {rates.epoch:.3g} s per "
            f"trial-epoch, {rates.slots} at a time: "
        )
        w = p.work
        keep = (
            f"retraining {p.candidates} of {w.candidates} candidate(s) × {p.seeds} of "
            f"{w.seeds} seed(s)"
        )
        extras = [
            name
            for name, asked, kept in (
                ("the tuned baseline", w.tuned_trials > 0, p.tuned),
                ("the minimal recipe", w.minimal_tricks > 0, p.minimal),
            )
            if asked and not kept
        ]
        line = head + keep + (f"; {_sum(extras)} skipped" if extras else "")
        if w.auto:
            line += f"; the seed race may add {p.race}"
        line += f" (expected {fmt_duration(p.seconds)})"
        if p.over > 0:
            over = fmt_duration(p.over)
            line += f"; even this minimum is expected to exceed the budget by ~{over}"
        return line
