"""ASHA that remembers: the trials it stopped, why trials failed (their cause and Ray's
``error.txt``), trials out of GPU memory, the baseline's reference trial stopped at the first
rung, and the values of earlier trials on resume (:class:`RecordingASHA`). The searcher
(``_searcher.TruthfulOptunaSearch``) and the progress display read these records."""

from __future__ import annotations

import logging
import math
from contextlib import suppress as _suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.exceptions import RayTaskError
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from tricksearch.tuning._failures import UNKNOWN_CAUSE, Failure, cause_line

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

    from tricksearch.tuning._packing import PackingState

__all__ = ["RecordingASHA", "trial_failure"]

logger = logging.getLogger(__name__)


def trial_failure(trial: Trial) -> Failure:
    """Why a Ray trial failed: the cause in one line (:func:`cause_line` of the exception the
    trainable raised, unwrapped from Ray's ``RayTaskError``) and the trial's ``error.txt`` (the
    whole traceback) in the run folder (Ray's storage path, where it is kept after the search).

    Read when Ray has just handled the error: it wrote ``error.pkl`` and ``error.txt`` in the
    trial's folder on the driver, and copies them to the storage path later.
    """
    import ray.cloudpickle

    exc = None
    with _suppress(Exception):  # not written, or it cannot be unpickled here
        with open(trial.pickled_error_file, "rb") as f:
            exc = ray.cloudpickle.load(f)
    while isinstance(exc, RayTaskError) and exc.cause is not None:
        exc = exc.cause
    error_file = None
    with _suppress(Exception):
        if trial.error_file:
            error_file = str(Path(trial.path, Path(trial.error_file).name))
    cause = UNKNOWN_CAUSE if exc is None else cause_line(exc)
    return Failure(cause, error_file)


def _write_traceback(trial: Trial, text: str) -> str | None:
    """``error.txt`` in the trial's folder of Ray's storage (as Ray writes for a trial that
    raised: the run folder's ``ray/``, or ``--storage``, a URI too); its path."""
    storage = getattr(trial, "storage", None)
    with _suppress(Exception):
        if storage is not None:  # a pyarrow filesystem: local, s3://, gs://
            fs, folder = storage.storage_filesystem, storage.trial_fs_path
            fs.create_dir(folder)
            with fs.open_output_stream(f"{folder}/error.txt") as out:
                out.write(text.encode())
            return f"{folder}/error.txt"
        path = Path(trial.path, "error.txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)
    return None


class RecordingASHA(ASHAScheduler):
    """``ASHAScheduler`` that remembers the trials it stopped and why trials failed, and can be
    told earlier trials.

    A trial can also end early because the search's time budget ran out; Ray reports both the same
    way (``on_trial_complete`` with the last result), so the searcher and the progress display ask
    ``pruned`` which of the two it was. Ray uses this object as given (not a copy) in the driver.

    On resume a new Tuner starts with empty rungs, so nothing would be pruned until new trials
    filled them again: :meth:`remember` records the finished trials' values from the study.

    ``failures``: trial id -> :class:`Failure` of each trial that raised. Ray tells the scheduler
    of an error before the searcher and the callbacks, so both read the cause here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pruned: set[str] = set()
        self.failures: dict[str, Failure] = {}
        self.timed_out: set[str] = set()
        # Out of GPU memory (``_packing``): trial id -> its GPU share, and the cause; the
        # packing state lowers the share of the trials created after an OOM.
        self.oom: dict[str, float] = {}
        self.oom_causes: dict[str, Failure] = {}
        self.packing: PackingState | None = None
        # Reference trials (the baseline's): stopped at the first rung once their value is
        # recorded there; the baseline is retrained at the full budget after the tuning anyway.
        self.references: set[str] = set()

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        # Ray re-adds a trial it restarts after a lost worker, right after telling
        # ``on_trial_error``: that error is not the trial's end.
        self.failures.pop(trial.trial_id, None)
        super().on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        if trial.trial_id in self.timed_out:  # its worker was killed by :meth:`time_out`
            super().on_trial_error(tune_controller, trial)
            return
        failure = trial_failure(trial)
        restarts = trial.run_metadata.num_failures - 1
        if restarts > 0:  # a worker lost every time: say that it was retried
            failure = failure._replace(cause=f"{failure.cause} (after {restarts} retries)")
        self.failures[trial.trial_id] = failure
        super().on_trial_error(tune_controller, trial)

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict):
        """A trial whose own code raised reports it as its last result (``FAILED_KEY``): its
        cause is recorded, its traceback written to ``error.txt`` in its folder, and nothing
        enters ASHA's rungs (as for a timed-out trial)."""
        from tricksearch.tuning._packing import OOM_KEY
        from tricksearch.tuning._trainable import FAILED_KEY, TRACEBACK_KEY

        if result.get(OOM_KEY):  # the GPU's memory, not the configuration: not a failure
            share = float(trial.placement_group_factory.required_resources.get("GPU", 0.0))
            self.oom[trial.trial_id] = share
            self.oom_causes[trial.trial_id] = Failure(
                str(result.get(FAILED_KEY)), _write_traceback(trial, str(result.get(TRACEBACK_KEY)))
            )
            if self.packing is not None:
                self.packing.after_oom(trial.trial_id, share)
            self._trial_info.pop(trial.trial_id, None)
            return
        if result.get(FAILED_KEY):
            self.failures[trial.trial_id] = Failure(
                str(result[FAILED_KEY]), _write_traceback(trial, str(result.get(TRACEBACK_KEY)))
            )
        if trial.trial_id in self.failures:
            self._trial_info.pop(trial.trial_id, None)
            return
        super().on_trial_complete(tune_controller, trial, result)

    def time_out(self, trial: Trial, cause: str) -> None:
        """End a running trial that ran over ``--trial-timeout``: record ``cause``, forbid Ray to
        retry it, and kill its worker (a hung worker could neither stop itself nor be reused);
        Ray then ends the trial in error, and the searcher tells Optuna FAIL with ``cause``."""
        import ray

        self.failures[trial.trial_id] = Failure(cause)
        self.timed_out.add(trial.trial_id)
        trial.max_failures = 0
        actor = trial.temporary_state.ray_actor
        if actor is not None:
            with _suppress(Exception):
                ray.kill(actor, no_restart=True)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if trial.trial_id in self.references and result.get(self._time_attr, 0) >= self.first_rung:
            decision = TrialScheduler.STOP  # its value is in the rung now: a bar for the others
        if decision == TrialScheduler.STOP:
            self.pruned.add(trial.trial_id)
        return decision

    @property
    def first_rung(self) -> float:
        """The epoch of ASHA's first rung (the grace period); the full budget if unknown."""
        try:
            return min(m for b in self._brackets for m, _ in b._rungs)
        except (AttributeError, ValueError):  # Ray's internals moved, or no rung below max_t
            return self._max_t

    def remember(self, history: list[dict[int, float]], mode: str) -> int:
        """Record earlier trials (each its ``{epoch: value}``) in the rungs they reached, as
        ASHA would have: at the first epoch at or past each rung's milestone. Returns how many
        values were recorded (0, with a warning, if this Ray's ASHA keeps its rungs elsewhere:
        the search then only prunes less at first)."""
        sign = 1.0 if mode == "max" else -1.0
        n = 0
        try:
            rungs = [rung for bracket in self._brackets for rung in bracket._rungs]
            for i, values in enumerate(history):
                steps = sorted(s for s, v in values.items() if v is not None and math.isfinite(v))
                for milestone, recorded in rungs:
                    step = next((s for s in steps if s >= milestone), None)
                    if step is not None:
                        recorded[f"earlier-{i}"] = sign * float(values[step])
                        n += 1
        except (AttributeError, TypeError, ValueError) as exc:  # Ray's internals moved
            logger.warning("could not give ASHA the earlier trials' values (%s)", exc)
        return n
