"""The Optuna side of the search: sampler, storage, and a searcher that tells the truth.

Ray's ``OptunaSearch`` tells Optuna COMPLETE for a trial that ASHA stopped after one epoch, with
that one-epoch score, so TPE mistakes low-fidelity scores for final ones. ``TruthfulOptunaSearch``
tells PRUNED (with every intermediate value) for trials stopped before the full budget and FAIL
for trials that raised, with their cause (``ERROR_ATTR``, ``"ValueError: first line"``) and the
path of Ray's ``error.txt`` (``ERROR_FILE_ATTR``), which ``RecordingASHA`` reads from the Ray
trial before the searcher is told (Ray calls the scheduler's ``on_trial_error`` first). It marks
``STOPPED_ATTR`` the trials the time budget cut (PRUNED with their values, or FAIL before a first
epoch: samplers skip FAIL; the user reads "stopped"). On resume it first re-runs the trials an
interruption left RUNNING, so the study ends with exactly the requested number of trials and no
duplicates.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable, Mapping
from contextlib import suppress as _suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from tricksearch.errors import ConfigError
from tricksearch.tuning._asha import RecordingASHA, trial_failure
from tricksearch.tuning._config import SAMPLERS
from tricksearch.tuning._failures import UNKNOWN_CAUSE, Failure
from tricksearch.tuning._study import (
    ERROR_ATTR,
    ERROR_FILE_ATTR,
    REFERENCE_ATTR,
    STOPPED_ATTR,
    STUDY_NAME,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "STUDY_NAME",
    "RecordingASHA",
    "TruthfulOptunaSearch",
    "close_running_trials",
    "make_sampler",
    "open_storage",
    "trial_failure",
]

logger = logging.getLogger(__name__)


def make_sampler(
    name: str, seed: int, trials: int, *, offset: int = 0
) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler for ``--sampler``; says what to install when it needs more.

    ``offset`` (the number of trials already in the study, on resume) shifts the seed: a resumed
    sampler seeded as the first one would replay the same random start and duplicate trials.
    """
    seed = seed + offset
    if name not in SAMPLERS:
        raise ConfigError(f"sampler: got {name!r}, expected one of {', '.join(SAMPLERS)}.")
    extra = SAMPLERS[name]
    if extra is not None and importlib.util.find_spec(extra) is None:
        hint = "cmaes" if name == "cmaes" else "gp"
        raise ConfigError(
            f"sampler {name!r} needs the package {extra!r}: pip install 'tricksearch[{hint}]' "
            f"(or pip install {extra})."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=max(3, min(10, trials // 3)),
                multivariate=True,
                group=True,  # conditional spaces: model each sub-space on its own
                constant_liar=True,  # parallel trials: don't all sample the same point
            )
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "qmc":
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
        return optuna.samplers.NSGAIISampler(seed=seed)


def open_storage(run_dir: Path) -> optuna.storages.RDBStorage:
    """The study's SQLite storage in the run folder (opens in optuna-dashboard)."""
    path = (run_dir / "study.db").resolve()
    return optuna.storages.RDBStorage(
        f"sqlite:///{path}", engine_kwargs={"connect_args": {"timeout": 30}}
    )


def close_running_trials(study: optuna.Study) -> int:
    """Close trials left RUNNING (stopped by a time budget), marked ``STOPPED_ATTR``: PRUNED with
    their last value when they reported one, FAIL otherwise. Returns how many were closed."""
    closed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, STOPPED_ATTR, True)
        if t.intermediate_values:
            study.tell(t.number, state=TrialState.PRUNED)
        else:
            study.tell(t.number, state=TrialState.FAIL)
        closed += 1
    return closed


class TruthfulOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that tells PRUNED/FAIL truthfully and adopts interrupted trials on resume.

    ``max_t``: the full budget in training iterations (epochs); a trial that ends earlier without
    an error was stopped early and is PRUNED. ``pruned_by_scheduler``: the trial ids the scheduler
    stopped (``RecordingASHA.pruned``); a trial that ended early and is not in it was stopped by
    the time budget, and is marked ``STOPPED_ATTR`` (PRUNED with its values, FAIL without any).
    ``failures``: trial id -> :class:`Failure` (``RecordingASHA.failures``); a trial that raised
    is told FAIL with its cause and traceback file as user attributes.
    """

    def __init__(
        self,
        *args: Any,
        max_t: int,
        adopt_running: bool = False,
        pruned_by_scheduler: set[str] | None = None,
        failures: Mapping[str, Failure] | None = None,
        oom: RecordingASHA | None = None,
        quota: int | None = None,
        reference: Mapping[str, Any] | None = None,
        on_reference: Callable[[str], object] | None = None,
        **kwargs: Any,
    ):
        # the baseline's point: the trial that gets it is named to ``on_reference`` (ASHA stops
        # it at the first rung) and marked ``REFERENCE_ATTR`` in the study
        self._reference = dict(reference) if reference is not None else None
        self._on_reference = on_reference
        # Points to evaluate first are enqueued one at a time, as trials start (Ray's searcher
        # enqueues them all at once: those a time budget never reached stayed WAITING).
        self._pending_points = list(kwargs.pop("points_to_evaluate", None) or [])
        self._oom = oom  # the scheduler's record of trials out of GPU memory
        self._quota = quota  # trials to run, an OOM re-run not counted (None: Ray's num_samples)
        self._created = 0
        self._requeued = 0
        self._max_t = max_t
        self._pruned_by_scheduler = pruned_by_scheduler
        self._failures = failures if failures is not None else {}
        self._adopt_running = adopt_running
        self._adoptable: list[int] | None = None
        self._reported: dict[str, set[int]] = {}
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._adopt_running and trial_id not in self._ot_trials:
            if self._adoptable is None:
                running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                self._adoptable = [t._trial_id for t in running]
            if self._adoptable:
                # An interrupted trial: run it again under the same Optuna trial, whose
                # suggest_* calls return the parameters it already had.
                number = self._adoptable.pop(0)
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, number)
                frozen = self._ot_study._storage.get_trial(number)
                self._reported[trial_id] = set(frozen.intermediate_values)
        if self._quota is not None and self._created - self._requeued >= self._quota:
            # every trial is created; wait while one may still run out of memory (and be queued
            # again), then end
            live = set(self._ot_trials) - set(self._completed_trials)
            return None if live else Searcher.FINISHED
        if self._pending_points and trial_id not in self._ot_trials:
            self._ot_study.enqueue_trial(self._pending_points.pop(0))
        config = super().suggest(trial_id)
        if config is not None:
            self._created += 1
            if self._reference is not None and config == self._reference:
                self._reference = None  # one trial only
                if self._on_reference is not None:
                    self._on_reference(trial_id)
                with _suppress(Exception):
                    self._ot_trials[trial_id].set_user_attr(REFERENCE_ATTR, True)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        # A re-run of an interrupted trial repeats steps Optuna already holds: skip those.
        step = result.get("training_iteration")
        if step in self._reported.get(trial_id, ()):
            return
        super().on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return super().on_trial_complete(trial_id, result, error)
        if self._oom is not None and trial_id in self._oom.oom:
            self._tell_oom(ot_trial, trial_id)
            self._completed_trials.add(trial_id)
            return None
        value = None if result is None else result.get(self.metric)
        step = 0 if result is None else int(result.get("training_iteration", 0))
        if trial_id in self._failures:  # raised in its own code, timed out, or lost its worker
            error = True
            step = int(result.get("epoch", 0)) if result else self._epochs_reported(ot_trial)
        with _suppress(Exception):
            ot_trial.set_user_attr("epochs", step)
            if result is not None and "time_total_s" in result:
                ot_trial.set_user_attr("seconds", float(result["time_total_s"]))
            if result is not None and "train_seconds" in result:
                ot_trial.set_user_attr("train_seconds", float(result["train_seconds"]))
        by_budget = not error and (
            value is None  # ended (running or pending) before its first epoch
            or (
                step < self._max_t
                and self._pruned_by_scheduler is not None
                and trial_id not in self._pruned_by_scheduler
            )
        )
        if by_budget:
            with _suppress(Exception):
                ot_trial.set_user_attr(STOPPED_ATTR, True)
        if error:
            self._record_failure(ot_trial, trial_id)
        if error or value is None:
            self._tell(ot_trial, None, TrialState.FAIL)
        elif step < self._max_t:
            if step not in self._reported.get(trial_id, ()):
                ot_trial.report(float(value), step)
            self._tell(ot_trial, None, TrialState.PRUNED)
        else:
            if step not in self._reported.get(trial_id, ()):  # Ray passes the last result here
                ot_trial.report(float(value), step)
            self._tell(ot_trial, float(value), TrialState.COMPLETE)
        self._completed_trials.add(trial_id)

    def _tell_oom(self, ot_trial: optuna.Trial, trial_id: str) -> None:
        """A trial out of GPU memory: Optuna FAIL (samplers skip it) marked ``OOM_ATTR`` (its GPU
        share; the user reads OOM, not failed) with its cause; queued again when it shared its
        GPU (the packing has lowered the share of the trials created from now on)."""
        from tricksearch.tuning._packing import OOM_ATTR, PackingState

        assert self._oom is not None
        share = self._oom.oom[trial_id]
        failure = self._oom.oom_causes.get(trial_id, Failure(UNKNOWN_CAUSE))
        params: dict[str, Any] = {}
        with _suppress(Exception):
            params = dict(self._ot_study._storage.get_trial(ot_trial._trial_id).params)
            ot_trial.set_user_attr(OOM_ATTR, share)
            ot_trial.set_user_attr(ERROR_ATTR, failure.cause)
            if failure.error_file:
                ot_trial.set_user_attr(ERROR_FILE_ATTR, failure.error_file)
        self._tell(ot_trial, None, TrialState.FAIL)
        if PackingState.requeue(share) and params:
            self._ot_study.enqueue_trial(params, user_attrs={"rerun_of": ot_trial.number})
            self._requeued += 1

    def _epochs_reported(self, ot_trial: optuna.Trial) -> int:
        """The last epoch a trial reported (Ray passes no result for a trial that errored)."""
        with _suppress(Exception):
            frozen = self._ot_study._storage.get_trial(ot_trial._trial_id)
            return max(frozen.intermediate_values, default=0)
        return 0

    def _record_failure(self, ot_trial: optuna.Trial, trial_id: str) -> None:
        """The cause and the traceback file of a trial that raised, as its user attributes."""
        failure = self._failures.get(trial_id, Failure(UNKNOWN_CAUSE))
        with _suppress(Exception):
            ot_trial.set_user_attr(ERROR_ATTR, failure.cause)
            if failure.error_file:
                ot_trial.set_user_attr(ERROR_FILE_ATTR, failure.error_file)

    def _tell(self, ot_trial: optuna.Trial, value: float | None, state: TrialState) -> None:
        try:
            self._ot_study.tell(ot_trial, value, state=state)
        except Exception as exc:  # e.g. a NaN value
            logger.warning("could not tell Optuna the result of trial %s: %s", ot_trial.number, exc)
            try:
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            except Exception:
                pass
