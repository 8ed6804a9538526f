"""Failed trials show their reason: grouping (pure), the progress display's closing lines, and one
real Ray Tune search with a planted failure (slow)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray.cloudpickle
import torch
from torch import nn

from tricksearch.tuning._candidates import TrialRecord
from tricksearch.tuning._failures import (
    UNKNOWN_CAUSE,
    Failure,
    FailureGroup,
    cause_line,
    failure_groups,
    failure_lines,
    group_failures,
)

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers can't import tests


def _record(
    number: int, outcome: str, error: str | None = None, error_file: str | None = None
) -> TrialRecord:
    state = "FAIL" if outcome == "STOPPED" else outcome
    return TrialRecord(
        number=number,
        state=state,
        value=0.9 if state == "COMPLETE" else None,
        intermediate_values={1: 0.9} if state == "COMPLETE" else {},
        params={},
        epochs=1 if state == "COMPLETE" else 0,
        outcome=outcome,
        error=error,
        error_file=error_file,
    )


def test_cause_line_is_the_type_and_the_first_line_of_the_message() -> None:
    assert cause_line(ValueError("expected 4D input\n  got 3D")) == "ValueError: expected 4D input"
    assert cause_line(ValueError("  padded  ")) == "ValueError: padded"
    assert cause_line(RuntimeError()) == "RuntimeError"
    assert cause_line(KeyError("k")) == "KeyError: 'k'"


def test_failure_groups_by_cause_most_common_first_with_one_error_file() -> None:
    records = [
        _record(0, "COMPLETE"),
        _record(1, "FAIL", "RuntimeError: out of memory", "/r/1/error.txt"),
        _record(2, "FAIL", "ValueError: expected 4D input", None),
        _record(3, "FAIL", "ValueError: expected 4D input", "/r/3/error.txt"),
        _record(4, "FAIL", "ValueError: expected 4D input", "/r/4/error.txt"),
        _record(5, "STOPPED"),  # cut by the time budget before its first epoch: not a failure
        _record(6, "FAIL"),  # no cause recorded (an older study)
        _record(7, "PRUNED"),
    ]
    assert failure_groups(records) == [
        FailureGroup("ValueError: expected 4D input", 3, "/r/3/error.txt"),
        FailureGroup("RuntimeError: out of memory", 1, "/r/1/error.txt"),
        FailureGroup(UNKNOWN_CAUSE, 1, None),
    ]
    assert failure_lines(records) == [
        "failed 3 × ValueError: expected 4D input (see /r/3/error.txt)",
        "failed 1 × RuntimeError: out of memory (see /r/1/error.txt)",
        f"failed 1 × {UNKNOWN_CAUSE}",
    ]


def test_no_failure_no_lines_and_ties_keep_the_first_seen() -> None:
    assert failure_groups([_record(0, "COMPLETE"), _record(1, "STOPPED")]) == []
    assert failure_lines([]) == []
    groups = group_failures([Failure("B: b", "/b"), Failure("A: a"), Failure("A: a", "/a")])
    assert groups == [FailureGroup("A: a", 2, "/a"), FailureGroup("B: b", 1, "/b")]
    tied = group_failures([Failure("B: b"), Failure("A: a"), Failure("")])
    assert [g.cause for g in tied] == ["B: b", "A: a", UNKNOWN_CAUSE]


class _Trial:
    """The two things ProgressCallback reads of a Ray trial that failed."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.error_file = f"/ray/{trial_id}/error.txt"


def test_progress_prints_the_grouped_causes_when_the_run_ends() -> None:
    from tricksearch.tuning._progress import ProgressCallback

    failures = {
        "a": Failure("ValueError: planted failure", "/ray/a/error.txt"),
        "b": Failure("ValueError: planted failure", "/ray/b/error.txt"),
    }
    out = io.StringIO()
    progress = ProgressCallback(
        total=3,
        already_done=0,
        max_t=2,
        metric="val_acc",
        mode="max",
        stream=out,
        failures=failures,
    )
    for trial_id in ("a", "b", "c"):  # "c": Ray handed back no error
        progress.on_trial_start(0, [], _Trial(trial_id))
        progress.on_trial_error(0, [], _Trial(trial_id))
    progress.on_experiment_end([])
    lines = out.getvalue().splitlines()
    assert "failed 3" in lines[-3]
    assert lines[-2:] == [
        "  failed 2 × ValueError: planted failure (see /ray/a/error.txt)",
        f"  failed 1 × {UNKNOWN_CAUSE} (see /ray/c/error.txt)",
    ]


class _FailedRayTrial:
    """What ``trial_failure`` reads of a Ray trial that Ray has just marked as errored."""

    def __init__(self, trial_id: str, folder: Path, exc: BaseException | None) -> None:
        local = folder / "driver" / trial_id
        local.mkdir(parents=True)
        self.trial_id = trial_id
        self.error_file = str(local / "error.txt")
        self.pickled_error_file = str(local / "error.pkl")
        self.path = str(folder / "run" / "ray" / trial_id)  # the storage path
        self.run_metadata = SimpleNamespace(num_failures=1)  # failed once: no retry left
        if exc is not None:
            Path(self.pickled_error_file).write_bytes(ray.cloudpickle.dumps(exc))


def test_the_scheduler_reads_the_cause_and_the_searcher_stores_it(tmp_path: Path) -> None:
    import optuna
    from ray.exceptions import RayTaskError

    from tricksearch.spaces import SearchSpace
    from tricksearch.tuning._searcher import RecordingASHA, TruthfulOptunaSearch, make_sampler
    from tricksearch.tuning._study import ERROR_ATTR, ERROR_FILE_ATTR

    wrapped = RayTaskError("run_trial", "Traceback …", ValueError("planted failure\nmore"))
    scheduler = RecordingASHA(time_attr="training_iteration", max_t=4, grace_period=1)
    for trial in (
        _FailedRayTrial("bad", tmp_path, wrapped),
        _FailedRayTrial("lost", tmp_path, None),  # no error.pkl: the cause is unknown
    ):
        scheduler.on_trial_error(None, trial)  # type: ignore[arg-type]
    assert scheduler.failures == {
        "bad": Failure(
            "ValueError: planted failure", str(tmp_path / "run" / "ray" / "bad" / "error.txt")
        ),
        "lost": Failure(UNKNOWN_CAUSE, str(tmp_path / "run" / "ray" / "lost" / "error.txt")),
    }

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    searcher = TruthfulOptunaSearch(
        SearchSpace({"label_smoothing": {}}),
        metric="val_acc",
        mode="max",
        sampler=make_sampler("random", 0, 10),
        study_name="s",
        storage=storage,
        max_t=4,
        failures=scheduler.failures,
    )
    for trial_id in ("bad", "lost", "full"):
        searcher.suggest(trial_id)
        searcher.on_trial_complete(
            trial_id,
            {"val_acc": 0.9, "training_iteration": 4} if trial_id == "full" else None,
            error=trial_id != "full",
        )
    bad, lost, full = optuna.load_study(study_name="s", storage=storage).trials
    assert bad.state.name == "FAIL" and bad.user_attrs[ERROR_ATTR] == "ValueError: planted failure"
    assert bad.user_attrs[ERROR_FILE_ATTR] == scheduler.failures["bad"].error_file
    assert lost.user_attrs[ERROR_ATTR] == UNKNOWN_CAUSE
    assert full.state.name == "COMPLETE" and ERROR_ATTR not in full.user_attrs
    assert full.intermediate_values == {4: 0.9}  # the last result, which Ray passes only here


# --- a real search (slow) ----------------------------------------------------------------------
class AutocastShy(nn.Module):
    """A linear model on 8×8 images that raises under autocast (``low_precision`` on) on batches
    of more than 32: every trial with low precision fails at its first step, and a pre-flight
    (batches of at most 16) does not see it."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type) and x.shape[0] > 32:
            raise ValueError("planted failure\nsecond line, not part of the cause")
        return self.fc(x.flatten(1))


@pytest.mark.slow
def test_failed_trials_carry_their_cause_into_the_study_and_the_report(tmp_path: Path) -> None:
    import optuna

    import tricksearch

    # baseline: low precision off; bag-of-tricks (trial 1): low precision on (bf16), so it fails;
    # the random trials after them: seed 0 draws one with it off, label smoothing on
    space = tmp_path / "space.yaml"
    space.write_text(
        "include: [low_precision, label_smoothing]\nbudget:\n  lr: 0.05\n  batch_size: 128\n"
    )
    run = tmp_path / "run"
    tricksearch.search(
        dataset="digits",
        model=AutocastShy,
        space=str(space),
        trials=4,
        epochs=1,
        out=run,
        sampler="random",
        seeds=1,
        top_k=1,
        quiet=True,
    )
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed, "the bag-of-tricks point (low precision on) must fail"
    assert all(t.params["procedure.low_precision"] for t in failed)
    for t in failed:
        assert t.user_attrs["error"] == "ValueError: planted failure"
        assert Path(t.user_attrs["error_file"]).is_file()
    report = (run / "report.md").read_text()
    assert f"- {len(failed)} × ValueError: planted failure — traceback: `" in report
