"""The tuning phase: the Optuna study in the run folder, and one Ray Tune run over it
(``Tuner(trial, TruthfulOptunaSearch, RecordingASHA)``) for the trials still to run.

A trial that raises is recorded by ``RecordingASHA`` (its cause and Ray's ``error.txt``), which
Ray tells first; the searcher stores both on the Optuna trial (``ERROR_ATTR``,
``ERROR_FILE_ATTR``) and the progress display prints them grouped when the run ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tricksearch.errors import ConfigError
from tricksearch.tuning._candidates import TrialRecord, trial_record
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._failures import cause_line
from tricksearch.tuning._study import STUDY_NAME, restore_hint

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace
    from tricksearch.tuning._budget import TimeBudget
    from tricksearch.tuning._faults import TrialFaults
    from tricksearch.tuning._searcher import RecordingASHA
    from tricksearch.tuning._trainable import TrialContext

__all__ = [
    "TuneJob",
    "close_study",
    "finished_trials",
    "first_points",
    "open_study",
    "run_tune",
    "study_records",
]


@dataclass(frozen=True)
class TuneJob:
    """One Tuner run over the study: what to search, where the study is, what trials share.

    ``done``: trials already finished in the study (a resume continues after them); ``points``:
    configurations evaluated first (a fresh search only); ``resume``: the study holds earlier
    trials, and trials an interruption left RUNNING are run again first.
    """

    config: SearchConfig
    run_dir: Path
    space: SearchSpace
    storage: optuna.storages.RDBStorage
    sampler: optuna.samplers.BaseSampler
    ctx: TrialContext
    done: int = 0
    points: list[dict[str, Any]] = field(default_factory=list)
    resume: bool = False

    @property
    def remaining(self) -> int:
        """How many trials this run starts."""
        return self.config.trials - self.done


def open_study(run_dir: Path, mode: str) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The study in ``run_dir/study.db`` (created, or loaded on resume) and its storage."""
    import optuna

    from tricksearch.tuning._searcher import open_storage

    _check_study_file(run_dir / "study.db")
    try:
        storage = open_storage(run_dir)
        study = optuna.create_study(
            storage=storage,
            study_name=STUDY_NAME,
            direction="maximize" if mode == "max" else "minimize",
            load_if_exists=True,
        )
    except Exception as exc:  # sqlalchemy's errors for a damaged file: one line, not 70
        if not (run_dir / "study.db").is_file():
            raise
        raise ConfigError(
            f"study: {str(run_dir / 'study.db')!r} cannot be read ({cause_line(exc)}); it is "
            "damaged. " + restore_hint(run_dir)
        ) from None
    return study, storage


#: The first bytes of every SQLite database file.
_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_study_file(path: Path) -> None:
    """Refuse a study file that is not a SQLite database (emptied, truncated to nothing, or
    overwritten) instead of starting over on top of it and losing the search's history."""
    if not path.exists():
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise ConfigError(f"study: {str(path)!r} cannot be read ({exc}).") from None
    if head != _SQLITE_HEADER:
        what = "is empty (0 bytes)" if not head else "is not a SQLite database"
        raise ConfigError(
            f"study: {str(path)!r} {what}: the search's history is lost or damaged. "
            + restore_hint(path.parent)
        )


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that ended: COMPLETE, PRUNED or FAIL (not one out of GPU memory that was
    queued again: its re-run is the trial)."""
    from optuna.trial import TrialState

    from tricksearch.tuning._packing import OOM_ATTR, PackingState

    return [
        t
        for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        )
        if not PackingState.requeue(float(t.user_attrs.get(OOM_ATTR, 0.0)))
    ]


def study_records(storage: optuna.storages.RDBStorage) -> list[TrialRecord]:
    """Every trial of the study, as plain records."""
    import optuna

    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    return [trial_record(t) for t in study.get_trials(deepcopy=False)]


def close_study(storage: optuna.storages.RDBStorage) -> list[TrialRecord]:
    """Close the trials a time budget left RUNNING (``close_running_trials``); every trial of the
    study, as plain records."""
    import optuna

    from tricksearch.tuning._searcher import close_running_trials

    study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
    close_running_trials(study)
    return [trial_record(t) for t in study.trials]


#: The preset recipes a fresh search evaluates first, in this order: the baseline (a reference
#: for ASHA's first rung only: it is retrained at the full budget anyway), then known-good
#: recipes (``spaces/_presets.py``) that set a high bar at the rungs early.
FIRST_PRESETS = ("baseline", "bag-of-tricks", "sgd-cosine", "adamw-cosine")


def first_points(space: SearchSpace, base: Recipe, trials: int) -> list[dict[str, Any]]:
    """The configurations a fresh search evaluates first: :data:`FIRST_PRESETS` as the space can
    express them, the baseline first (distinct; a preset the space or the model cannot take is
    skipped; at most ``trials``, and at most a quarter of them beyond the baseline)."""
    from tricksearch.errors import ConfigError
    from tricksearch.spaces import preset_recipe

    points: list[dict[str, Any]] = []
    for name in FIRST_PRESETS:
        try:
            point = space.point(preset_recipe(name, base))
            space.to_recipe(base, point)  # the contracts of this model/data
        except ConfigError:
            continue
        if point not in points:
            points.append(point)
    return points[: max(1, min(trials, 1 + trials // 4))]


def reference_point(space: SearchSpace, base: Recipe) -> dict[str, Any]:
    """The baseline's point: ASHA stops its trial at the first rung (``RecordingASHA``)."""
    from tricksearch.spaces import preset_recipe

    return space.point(preset_recipe("baseline", base))


def run_tune(
    job: TuneJob, *, slots: int, out: IO[str] | None, budget: TimeBudget | None = None
) -> TrialFaults:
    """Run the job's remaining trials, ``slots`` at a time; progress lines go to ``out``.
    ``budget``: the whole search's time budget, whose moving deadline ends the tuning
    (``_progress.TuningStopper``); None: ``config.time_budget`` bounds the tuning alone.
    Returns what happened to the trials' workers (retries, checkpoint disk peak)."""
    from ray import tune

    from tricksearch.tuning._faults import TrialFaults
    from tricksearch.tuning._progress import ProgressCallback, TuningStopper
    from tricksearch.tuning._searcher import TruthfulOptunaSearch
    from tricksearch.tuning._tracking import tracking_callbacks
    from tricksearch.tuning._trainable import run_trial

    config = job.config
    scheduler = _scheduler(job)
    searcher = TruthfulOptunaSearch(
        job.space,
        metric=config.metric,
        mode=config.mode,
        points_to_evaluate=job.points or None,
        # the baseline (first of the points) is a reference: stopped at ASHA's first rung
        reference=job.points[0] if job.points else None,
        on_reference=scheduler.references.add,
        sampler=job.sampler,
        study_name=STUDY_NAME,
        storage=job.storage,
        max_t=config.epochs,
        adopt_running=job.resume,
        pruned_by_scheduler=scheduler.pruned,
        failures=scheduler.failures,
        oom=scheduler,
        # GPU trials: one out of memory is run again, so the searcher counts the trials
        quota=job.remaining if config.gpus_per_trial else None,
    )
    progress = ProgressCallback(
        total=config.trials,
        already_done=job.done,
        max_t=config.epochs,
        metric=config.metric,
        mode=config.mode,
        stream=out,
        pruned_by_scheduler=scheduler.pruned,
        failures=scheduler.failures,
        slots=slots,
        grace=config.grace,
        reduction_factor=config.reduction_factor,
        time_budget=config.time_budget,
        oom=scheduler.oom,
    )
    faults = TrialFaults(scheduler, timeout=config.trial_timeout, run_dir=job.run_dir)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, ctx=job.ctx),
        _resources(job, scheduler),  # N bundles for a data-parallel trial (tuning/_ddp.py)
    )
    name, storage_path = _experiment(job)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            metric=config.metric,
            mode=config.mode,
            # room for OOM re-runs (``_packing``); the searcher ends at ``quota`` trials
            num_samples=job.remaining * (2 if config.gpus_per_trial else 1),
            max_concurrent_trials=slots,
            reuse_actors=True,
            time_budget_s=config.time_budget if budget is None else None,  # else ``stop``
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            verbose=0,
            callbacks=[progress, faults, *tracking_callbacks(job, searcher)],
            stop=None if budget is None else TuningStopper(budget, progress),
            # A lost worker or node: the trial restarts from its newest checkpoint (an error in
            # the trial's own code is reported as its result instead, and not retried).
            failure_config=tune.FailureConfig(max_failures=config.max_retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    tuner.fit()
    return faults


def _resources(job: TuneJob, scheduler: RecordingASHA) -> Any:
    """Ray's resources of each trial: ``_ddp.trial_resources``; trials sharing a GPU read their
    share at creation from the packing state (``RUN/packing.json``), which an OOM lowers."""
    import functools

    from tricksearch.tuning._ddp import trial_resources
    from tricksearch.tuning._packing import PACKING_FILE, PackingState, packed_resources

    config = job.config
    share = config.gpus_per_trial
    if config.workers != 1 or not 0 < share < 1:
        return trial_resources(config)
    scheduler.packing = PackingState.open(job.run_dir / PACKING_FILE, share)
    return functools.partial(
        packed_resources,
        path=str(job.run_dir / PACKING_FILE),
        cpu=config.cpus_per_trial,
        share=scheduler.packing.share,
    )


def _experiment(job: TuneJob) -> tuple[str, str]:
    """Ray's experiment name and storage path: ``tune-N`` under the run folder's ``ray/`` (N
    counts the runs a resume added), or ``--storage`` with a name unique to this run and time
    (several searches may share one storage)."""
    import time

    storage = job.config.storage
    if storage:
        if "://" not in storage:  # Ray wants an absolute path (or a URI)
            storage = str(Path(storage).expanduser().resolve())
        return f"{job.run_dir.name}-{time.strftime('%Y%m%d-%H%M%S')}", storage
    ray_dir = job.run_dir / "ray"
    session = len(list(ray_dir.glob("tune-*"))) if ray_dir.exists() else 0
    return f"tune-{session}", str(ray_dir)


def _scheduler(job: TuneJob) -> RecordingASHA:
    """ASHA over epochs; on resume it is told the finished trials' values, so that new trials are
    pruned against them."""
    import optuna

    from tricksearch.tuning._searcher import RecordingASHA

    config = job.config
    scheduler = RecordingASHA(
        time_attr="training_iteration",
        max_t=config.epochs,
        grace_period=config.grace,
        reduction_factor=config.reduction_factor,
    )
    if job.resume:
        study = optuna.load_study(study_name=STUDY_NAME, storage=job.storage)
        finished = finished_trials(study)
        scheduler.remember([dict(t.intermediate_values) for t in finished], config.mode)
    return scheduler
