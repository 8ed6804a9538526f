"""What the driver does about trials that hang, lose their worker, or leave checkpoints behind.

Ray Tune restarts a trial whose worker or node died (``FailureConfig(max_failures=--max-retries)``)
from the trial's last checkpoint (``_trainable.restored_state``). An error in the trial's own code
is not retried: the trainable reports it as a result (``FAILED_KEY``) and ends, and
``RecordingASHA`` records it as the trial's failure. This callback adds:

- ``--trial-timeout``: a trial that has run longer (its runs before a retry included, the time
  it waited for a worker not) is stopped and recorded as failed with "timeout after N s"; the
  study holds it as FAIL, so a resume does not run it again;
- the study (``study.db``) is copied to ``study.db.bak`` after every finished trial (SQLite's
  backup API), so a damaged study can be put back;
- the checkpoints of a trial are deleted when it ends (Ray keeps the last two while it runs);
  ``peak_bytes`` is the most they held on disk at once, ``retries`` how many restarts there were.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from tricksearch.tuning._study import backup_study

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from tricksearch.tuning._searcher import RecordingASHA

__all__ = ["TrialFaults", "timeout_cause"]

logger = logging.getLogger(__name__)


def timeout_cause(limit: float, ran: float) -> str:
    """The one-line cause recorded for a trial stopped by ``--trial-timeout``."""
    return f"timeout after {ran:.0f} s (--trial-timeout {limit:g} s)"


class TrialFaults(Callback):
    """Per-trial timeout, checkpoint clean-up, and the count of retries and checkpoint bytes."""

    def __init__(
        self, scheduler: RecordingASHA, timeout: float | None = None, run_dir: Path | None = None
    ) -> None:
        self.scheduler = scheduler
        self.timeout = timeout
        self.run_dir = run_dir  # its study.db is copied after every finished trial
        self.retries = 0
        self.peak_bytes = 0
        self._ran: dict[str, float] = {}  # seconds run before the current start
        self._since: dict[str, float] = {}  # monotonic time of the current start
        self._held: dict[str, list[int]] = {}  # bytes of the (at most two) checkpoints on disk

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles the run config with its callbacks; the scheduler it holds stays here.
        return {**self.__dict__, "scheduler": None}

    def running_seconds(self, trial_id: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        since = self._since.get(trial_id)
        return self._ran.get(trial_id, 0.0) + (0.0 if since is None else now - since)

    # -- Ray hooks ----------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._since[trial.trial_id] = time.monotonic()

    def on_trial_restore(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._since.setdefault(trial.trial_id, time.monotonic())

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        """The trial lost its worker and waits to be restarted from its checkpoint."""
        self.retries += 1
        self._pause(trial.trial_id)
        logger.warning("trial %s lost its worker; restarting it from its last checkpoint", trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        size = result.get("checkpoint_bytes")
        if isinstance(size, (int, float)):
            held = self._held.setdefault(trial.trial_id, [])
            held[:] = [*held[-1:], int(size)]  # Ray keeps the newest two
            self.peak_bytes = max(self.peak_bytes, sum(map(sum, self._held.values())))

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self.timeout is None or self.scheduler is None:
            return
        now = time.monotonic()
        for trial in trials:
            if trial.status != "RUNNING" or trial.trial_id not in self._since:
                continue
            ran = self.running_seconds(trial.trial_id, now)
            if ran > self.timeout:
                self._pause(trial.trial_id)
                self.scheduler.time_out(trial, timeout_cause(self.timeout, ran))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._end(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._end(trial)

    # -- helpers ------------------------------------------------------------------------------
    def _pause(self, trial_id: str) -> None:
        since = self._since.pop(trial_id, None)
        if since is not None:
            self._ran[trial_id] = self._ran.get(trial_id, 0.0) + time.monotonic() - since

    def _end(self, trial: Trial) -> None:
        """A trial ended (Optuna was told first): its checkpoints go, the study is copied."""
        self._pause(trial.trial_id)
        self._held.pop(trial.trial_id, None)
        delete_checkpoints(trial)
        if self.run_dir is not None:
            backup_study(self.run_dir)


def delete_checkpoints(trial: Trial) -> int:
    """Remove the checkpoint folders of an ended trial from its storage; how many were removed.
    The search never restores Ray's experiment (the study is the truth), so nothing needs them."""
    import pyarrow.fs

    removed = 0
    with contextlib.suppress(Exception):  # no storage yet, or already gone
        fs, folder = trial.storage.storage_filesystem, trial.storage.trial_fs_path
        for info in fs.get_file_info(pyarrow.fs.FileSelector(folder)):
            name = info.path.rstrip("/").rsplit("/", 1)[-1]
            if info.type == pyarrow.fs.FileType.Directory and name.startswith("checkpoint_"):
                fs.delete_dir(info.path)
                removed += 1
    return removed
