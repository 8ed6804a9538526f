"""The driver's fault handling without a cluster: the trial clock of ``--trial-timeout``, the
checkpoint disk peak, errors reported as a trial's result (not retried), a restart after a lost
worker that is not the trial's end, and a timed-out trial that Ray may not retry."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from tricksearch.spaces import SearchSpace
from tricksearch.tuning._artifacts import faults_line
from tricksearch.tuning._failures import Failure
from tricksearch.tuning._faults import TrialFaults, timeout_cause
from tricksearch.tuning._searcher import RecordingASHA, TruthfulOptunaSearch, make_sampler
from tricksearch.tuning._study import ERROR_ATTR, ERROR_FILE_ATTR
from tricksearch.tuning._trainable import FAILED_KEY, TRACEBACK_KEY


class _Trial:
    """What the scheduler and the callback read of a Ray trial."""

    def __init__(self, trial_id: str, folder: Path | None = None) -> None:
        self.trial_id = trial_id
        self.status = "RUNNING"
        self.path = str((folder or Path("/nonexistent")) / trial_id)
        self.max_failures = 2
        self.temporary_state = SimpleNamespace(ray_actor=None)
        self.run_metadata = SimpleNamespace(num_failures=0)
        self.storage = None  # no checkpoints to delete


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr("tricksearch.tuning._faults.time.monotonic", c)
    return c


def _scheduler() -> RecordingASHA:
    return RecordingASHA(
        time_attr="training_iteration", max_t=4, grace_period=1, metric="val_acc", mode="max"
    )


def test_the_trial_clock_counts_runs_not_the_wait_for_a_worker(clock) -> None:
    scheduler = _scheduler()
    faults = TrialFaults(scheduler, timeout=100)
    trial = _Trial("t")
    faults.on_trial_start(0, [], trial)
    clock.now += 60
    faults.on_trial_recover(0, [], trial)  # lost its worker after 60 s
    clock.now += 500  # waiting for a new worker: not counted
    faults.on_trial_start(0, [], trial)
    clock.now += 30
    assert faults.running_seconds("t") == pytest.approx(90)
    faults.on_step_begin(0, [trial])
    assert "t" not in scheduler.failures and faults.retries == 1
    clock.now += 11
    faults.on_step_begin(0, [trial])
    assert scheduler.failures["t"] == Failure(timeout_cause(100, 101))
    assert scheduler.failures["t"].cause == "timeout after 101 s (--trial-timeout 100 s)"
    assert trial.max_failures == 0  # Ray must not restart it
    faults.on_step_begin(0, [trial])  # told once
    assert scheduler.timed_out == {"t"}


def test_no_timeout_no_stop(clock) -> None:
    scheduler = _scheduler()
    faults = TrialFaults(scheduler, timeout=None)
    trial = _Trial("t")
    faults.on_trial_start(0, [], trial)
    clock.now += 10**6
    faults.on_step_begin(0, [trial])
    assert scheduler.failures == {}


def test_checkpoint_peak_counts_the_two_kept_per_running_trial() -> None:
    faults = TrialFaults(_scheduler())
    a, b = _Trial("a"), _Trial("b")
    for size in (100, 120, 130):  # Ray keeps the newest two of a
        faults.on_trial_result(0, [], a, {"checkpoint_bytes": size})
    assert faults.peak_bytes == 250
    faults.on_trial_result(0, [], b, {"checkpoint_bytes": 1000})
    assert faults.peak_bytes == 1250
    faults.on_trial_complete(0, [], a)  # deleted when it ends
    faults.on_trial_result(0, [], b, {"checkpoint_bytes": 1000})
    assert faults.peak_bytes == 2000
    assert faults_line(0, 2000 * 2**10) == (
        "checkpoints: at most 2.0 MiB on disk at once (each trial's are deleted when it ends); "
        "no trial lost its worker"
    )
    assert "3 restarts after a lost worker" in faults_line(3, 0)
    assert faults_line(0, 0, checkpoints=False).startswith("checkpoints: off (--max-retries 0")


def _searcher(tmp_path: Path, scheduler: RecordingASHA) -> TruthfulOptunaSearch:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    return TruthfulOptunaSearch(
        SearchSpace({"label_smoothing": {}}),
        metric="val_acc",
        mode="max",
        sampler=make_sampler("random", 0, 10),
        study_name="s",
        storage=storage,
        max_t=4,
        pruned_by_scheduler=scheduler.pruned,
        failures=scheduler.failures,
    )


def test_an_error_in_the_trials_code_ends_it_as_fail_with_its_traceback(tmp_path: Path) -> None:
    scheduler = _scheduler()
    searcher = _searcher(tmp_path, scheduler)
    trial = _Trial("bad", tmp_path)
    scheduler.on_trial_add(None, trial)
    searcher.suggest("bad")
    searcher.on_trial_result("bad", {"val_acc": 0.5, "training_iteration": 1})
    result = {
        "val_acc": float("nan"),
        "epoch": 1,
        "training_iteration": 2,
        FAILED_KEY: "ValueError: planted",
        TRACEBACK_KEY: "Traceback (most recent call last):\n  ...\nValueError: planted\n",
        "done": True,
    }
    scheduler.on_trial_complete(None, trial, result)  # Ray tells the scheduler first
    searcher.on_trial_complete("bad", result)
    failure = scheduler.failures["bad"]
    assert failure.cause == "ValueError: planted"
    assert Path(failure.error_file).read_text().endswith("ValueError: planted\n")
    assert not any("bad" in rung[1] for b in scheduler._brackets for rung in b._rungs)
    (frozen,) = optuna.load_study(study_name="s", storage=searcher._ot_study._storage).trials
    assert frozen.state.name == "FAIL" and frozen.user_attrs[ERROR_ATTR] == "ValueError: planted"
    assert frozen.user_attrs[ERROR_FILE_ATTR] == failure.error_file
    assert frozen.user_attrs["epochs"] == 1  # the epochs it finished, not Ray's iterations


def test_a_restart_after_a_lost_worker_is_not_the_trials_end(tmp_path: Path) -> None:
    scheduler = _scheduler()
    trial = _Trial("lost", tmp_path)
    scheduler.on_trial_add(None, trial)
    trial.run_metadata.num_failures = 1
    scheduler.on_trial_error(None, trial)  # Ray's requeue tells this, then re-adds the trial
    assert "lost" in scheduler.failures
    scheduler.on_trial_add(None, trial)
    assert "lost" not in scheduler.failures
    trial.run_metadata.num_failures = 3  # lost again, retries exhausted: the end
    scheduler.on_trial_error(None, trial)
    assert scheduler.failures["lost"].cause.endswith("(after 2 retries)")


def test_a_timed_out_trial_keeps_its_cause_when_ray_reports_the_killed_worker(tmp_path) -> None:
    scheduler = _scheduler()
    trial = _Trial("hung", tmp_path)
    scheduler.on_trial_add(None, trial)
    scheduler.time_out(trial, "timeout after 31 s (--trial-timeout 30 s)")
    scheduler.on_trial_error(None, trial)  # the killed worker, as Ray reports it
    assert scheduler.failures["hung"].cause == "timeout after 31 s (--trial-timeout 30 s)"


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path: Path, caplog) -> None:
    """As Ray keeps them: trial_dir/checkpoint_000003 (newest, truncated) beside _000002."""
    import torch
    from ray import tune

    from tricksearch.engine.state import STATE_FORMAT
    from tricksearch.tuning._trainable import STATE_FILE, _older_checkpoints, first_readable_state

    for number, epoch in ((1, 1), (2, 2), (3, 3)):
        folder = tmp_path / f"checkpoint_00000{number}"
        folder.mkdir()
        torch.save({"format": STATE_FORMAT, "epoch": epoch}, folder / STATE_FILE)
    newest = tmp_path / "checkpoint_000003" / STATE_FILE
    newest.write_bytes(newest.read_bytes()[:20])  # the node died while it was written
    (tmp_path / "error.txt").write_text("not a checkpoint")
    checkpoint = tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000003"))
    older = _older_checkpoints(checkpoint)
    assert [Path(c.path).name for c in older] == ["checkpoint_000002", "checkpoint_000001"]
    state = first_readable_state([checkpoint, *older])
    assert state is not None and state["epoch"] == 2
    assert "checkpoint_000003" in caplog.text and "is damaged" in caplog.text
    for c in (2, 1):
        (tmp_path / f"checkpoint_00000{c}" / STATE_FILE).write_bytes(b"")
    assert first_readable_state([checkpoint, *older]) is None  # none readable: start over
