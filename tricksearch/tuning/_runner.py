"""The search, start to finish, as a page of phases; each phase is a module of its own:

    _prepare      before Ray: paths, base recipe, data, space fitted to model and device
    _tune         the study opened (a resume of a finished search returns its stored result)
    _budget       --time-budget: one clock for the tuning and what follows it; the tuning's
                  moving deadline and the plan of the retraining in the time left
    _session      Ray up: resources checked, SIGTERM read as Ctrl-C, Ray's output to ray.log
    _tune         Tuner(trial, TruthfulOptunaSearch, ASHA) for the trials left; study closed
    _tuned_baseline  the same search of lr and batch size without tricks (a few trials)
    _decide       the top-k candidates (by estimated full-budget value), the baseline and the
                  tuned baseline retrained with paired seeds (raced with --seeds auto); the
                  winner must beat the baseline beyond noise; its minimal recipe (_minimal)
    _evidence     the verdicts on the held-out test split, as data and as lines
    _artifacts    trials.csv, best_recipe.yaml (+ full_recipe.yaml), results.json, the report,
                  the closing lines

Everything lives under the run folder; ``resume`` continues from it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tricksearch.errors import ConfigError
from tricksearch.spaces import load_space
from tricksearch.tuning._artifacts import (
    Timings,
    closing_lines,
    faults_line,
    nothing_usable,
    outcome_counts,
    save_outcome,
    search_summary,
    stored_result,
    time_budget_line,
    write_trials_csv,
)
from tricksearch.tuning._budget import TimeBudget
from tricksearch.tuning._candidates import TrialRecord
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._console import say
from tricksearch.tuning._decide import decide, plan_work
from tricksearch.tuning._failures import failure_lines
from tricksearch.tuning._fidelity import fidelity_line
from tricksearch.tuning._prepare import SPACE_COPY, Prepared, prepare, resume_hint
from tricksearch.tuning._result import SearchFailed, SearchInterrupted, SearchResult
from tricksearch.tuning._session import (
    RaySession,
    ray_session,
    run_folder_lock,
    sigterm_as_interrupt,
)
from tricksearch.tuning._study import backup_study
from tricksearch.tuning._tune import (
    TuneJob,
    close_study,
    finished_trials,
    first_points,
    open_study,
    run_tune,
    study_records,
)
from tricksearch.tuning._tuned_baseline import tune_baseline

if TYPE_CHECKING:
    from torch import nn

    from tricksearch.data import DatasetSplits
    from tricksearch.tuning._trainable import TrialContext

__all__ = ["SearchFailed", "SearchInterrupted", "SearchResult", "run_search"]


def run_search(
    config: SearchConfig,
    *,
    resume: bool = False,
    data: DatasetSplits | None = None,
    model_factory: Callable[..., nn.Module] | None = None,
    quiet: bool = False,
) -> SearchResult:
    """Run (or resume) a search; see the module docstring. Progress goes to stdout unless quiet;
    Ray's own output goes to ``ray.log`` in the run folder. ``config`` is not changed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = Path(config.out).resolve()
    if not resume and (run_dir / "search.json").exists():
        raise ConfigError(
            f"out: {str(run_dir)!r} already holds a search; continue it with "
            f"`{resume_hint(config)}` or choose another --out."
        )
    _check_out(run_dir)  # before anything is loaded or trained
    if config.storage:
        _check_storage(config.storage)
    stream: IO[str] | None = None if quiet else sys.stdout
    try:
        # SIGTERM and SIGHUP stop the search as Ctrl-C does, at every phase.
        with sigterm_as_interrupt():
            prep = prepare(config, data=data, model_factory=model_factory, resume=resume)
            for note in prep.notes:
                say(stream, f"note: {note}")
            say(stream, prep.preflight_line)
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = exc.strerror or exc
                raise ConfigError(f"out: cannot create {str(run_dir)!r} ({why}).") from None
            taken: list[str] = []
            with run_folder_lock(run_dir, taken):
                for note in taken:
                    say(stream, f"note: {note}")
                if not resume and (run_dir / "search.json").exists():  # started meanwhile
                    raise ConfigError(f"out: {str(run_dir)!r} already holds a search.")
                return _open_and_search(prep, resume=resume, quiet=quiet, stream=stream)
    except KeyboardInterrupt:  # before the study was open: nothing of this run to keep
        raise SearchInterrupted(_not_started(config, resume)) from None


def _open_and_search(
    prep: Prepared, *, resume: bool, quiet: bool, stream: IO[str] | None
) -> SearchResult:
    """The study opened (a resume of a finished search returns its stored result), then the
    search in Ray; an interruption (Ctrl-C, SIGTERM) leaves trials.csv and says how to resume."""
    from tricksearch.tuning._searcher import make_sampler
    from tricksearch.tuning._warmstart import warm_start

    config, run_dir = prep.config, prep.run_dir
    study, storage = open_study(run_dir, config.mode)
    done = len(finished_trials(study))
    if resume:
        say(stream, f"resuming {run_dir}: {done} of {config.trials} trials finished")
        stored = stored_result(run_dir) if done >= config.trials else None
        if stored is not None:  # nothing was interrupted: say where the result is, redo nothing
            say(stream, "the search had finished; nothing to resume")
            say(stream, closing_lines(stored.best, stored.summary, stored.recipe_path, config))
            return stored

    fresh = not resume and done == 0 and len(study.trials) == 0
    job = TuneJob(
        config=config,
        run_dir=run_dir,
        space=prep.space,
        storage=storage,
        sampler=warm_start(  # --warm-start: an earlier search's trials as a prior (said here)
            make_sampler(config.sampler, config.seed, config.trials, offset=len(study.trials)),
            config,
            stream,
        ),
        ctx=_trial_context(prep),
        done=done,
        points=first_points(prep.space, prep.base, config.trials) if fresh else [],
        resume=resume,
    )
    try:
        return _search_in_ray(prep, job, quiet=quiet)
    except KeyboardInterrupt:
        pass
    if not (run_dir / "search.json").exists():  # stopped while Ray was starting
        raise SearchInterrupted(_not_started(config, resume))
    with contextlib.suppress(Exception):
        write_trials_csv(study_records(storage), run_dir / "trials.csv")
    backup_study(run_dir)
    raise SearchInterrupted(
        f"search interrupted; finished trials are kept in {run_dir / 'study.db'}. "
        f"Continue with: {resume_hint(config)}"
    )


def _search_in_ray(prep: Prepared, job: TuneJob, *, quiet: bool) -> SearchResult:
    """Tune the trials left, close the study, retrain the candidates: all inside a Ray session."""
    config, run_dir = prep.config, prep.run_dir
    t_start = time.monotonic()
    with ray_session(config, run_dir) as session, contextlib.ExitStack() as stack:
        out = stack.enter_context(open(os.devnull, "w")) if quiet else session.console
        if not job.resume:  # Ray is up and has the resources: from here on, resumable
            config.save(run_dir / "search.json")
            (run_dir / SPACE_COPY).write_text(load_space(config.space).dumps())
        tune_seconds, faults = 0.0, None
        # --time-budget: one clock for the tuning and everything after it (``_budget``)
        budget = TimeBudget.for_search(config, session.slots) if config.time_budget else None
        if job.remaining > 0:
            say(
                out,
                f"searching {config.trials} trials ({job.remaining} to run) of space "
                f"{config.space!r} on {config.dataset} with {config.model}, "
                f"{config.epochs} epochs each, {session.slots} at a time; Ray's log: "
                f"{run_dir / 'ray.log'}",
            )
            t_tune = time.monotonic()
            faults = run_tune(job, slots=session.slots, out=out, budget=budget)
            tune_seconds = time.monotonic() - t_tune
            say(out, faults_line(faults.retries, faults.peak_bytes, checkpoints=job.ctx.checkpoint))
        records = close_study(job.storage)
        backup_study(run_dir)
        early = budget.stopped_early if budget is not None else None
        line = time_budget_line(outcome_counts(records), config, stopped_early=early)
        if line:
            say(out, line)
        _after_packing(prep, outcome_counts(records)["oom"], out)
        write_trials_csv(records, run_dir / "trials.csv")
        line = fidelity_line(job.ctx.fidelity, [r.epochs for r in records])
        if line:  # --fidelity data: the rungs' fractions and the trial-epochs saved
            say(out, line)
        timings = Timings(
            time.monotonic() - t_start,
            session.start_seconds,
            tune_seconds,
            retries=faults.retries if faults else 0,
            checkpoint_peak_bytes=faults.peak_bytes if faults else 0,
        )
        return _retrain_and_choose(prep, job.ctx, records, session, timings, out, budget)


def _retrain_and_choose(
    prep: Prepared,
    ctx: TrialContext,
    records: list[TrialRecord],
    session: RaySession,
    timings: Timings,
    out: IO[str],
    budget: TimeBudget | None = None,
) -> SearchResult:
    """The tuned baseline searched; the candidates, the baseline and the tuned baseline retrained
    with the same seeds; the winner chosen against the baseline and shrunk to its minimal recipe
    (``_decide``); everything written out. With a time budget, that work is planned to fit the
    time left (``_decide.plan_work``) and what was cut is recorded and said."""
    config, run_dir = prep.config, prep.run_dir
    if not any(r.state in ("COMPLETE", "PRUNED") and r.intermediate_values for r in records):
        causes = "".join(f"\n  {line}" for line in failure_lines(records))
        raise SearchFailed(
            nothing_usable(outcome_counts(records), len(records), config, run_dir) + causes
        )
    plan = plan_work(prep, records, budget) if budget is not None else None
    if plan is not None and budget is not None:
        say(out, budget.plan_line())
    tuned = None
    if plan is None or plan.tuned:
        tuned = tune_baseline(prep, ctx, slots=session.slots, out=out)
    decision = decide(prep, ctx, records, tuned, out, budget=budget)
    summary = search_summary(
        config, records, decision, prep.data, timings=timings, slots=session.slots
    )
    if budget is not None:  # results.json and the recipe's provenance keep what was cut
        summary["search"]["time_budget"] = budget.record()
    return save_outcome(config, run_dir, decision, summary, out)


def _after_packing(prep: Prepared, n_oom: int, out: IO[str]) -> None:
    """Say how the trials shared the GPU and what ran out of memory; the retraining asks for the
    share the packing ended with (an OOM lowered it)."""
    from tricksearch.tuning._packing import PACKING_FILE, PackingState, packing_line

    line = packing_line(prep.run_dir, n_oom)
    if line:
        say(out, line)
    path = prep.run_dir / PACKING_FILE
    if path.is_file() and 0 < prep.config.gpus_per_worker < 1:
        prep.config.gpus_per_trial = PackingState.open(path, prep.config.gpus_per_trial).share


def _not_started(config: SearchConfig, resume: bool) -> str:
    """What an interruption before the first trial says: nothing to resume, or resume again."""
    if resume:
        return f"interrupted before the resumed search went on; run again: {resume_hint(config)}"
    return (
        "search interrupted before its first trial: nothing was computed and there is nothing "
        "to resume; run the same command again."
    )


def _check_storage(storage: str) -> None:
    """``--storage``: a URI pyarrow can open (credentials included), or a folder that can be
    made; one line otherwise, before Ray starts."""
    if "://" not in storage:
        _check_out(Path(storage).expanduser().resolve(), field="storage")
        return
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(storage)
    except Exception as exc:  # unknown scheme, missing credentials, no such bucket …
        raise ConfigError(
            f"storage: cannot open {storage!r} ({str(exc).strip().splitlines()[0]}); expected a "
            "folder or a URI pyarrow can open (s3://bucket/path, gs://bucket/path)."
        ) from None


def _check_out(run_dir: Path, field: str = "out") -> None:
    """Refuse a run folder that cannot be made: its nearest existing parent is a file, or a
    folder this user cannot write to."""
    parent = run_dir
    while not parent.exists():
        parent = parent.parent
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{field}: {str(run_dir)!r} is a file; expected a folder for the run.")
    if not parent.is_dir():
        raise ConfigError(
            f"{field}: cannot create {str(run_dir)!r}: {str(parent)!r} is a file, not a folder."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{field}: cannot create {str(run_dir)!r}: no permission to write in {str(parent)!r}."
        )


def _trial_context(prep: Prepared) -> TrialContext:
    """What every trial and retraining shares (shipped to the Ray workers)."""
    from tricksearch.tuning._fidelity import prepare_fidelity
    from tricksearch.tuning._trainable import TrialContext

    return TrialContext(
        base=prep.base.to_dict(),
        space=prep.space,
        cpus_per_trial=prep.config.cpus_per_trial,
        device=prep.device,
        data=prep.own_data,
        model_factory=prep.model_factory,
        cache_dir=str(prep.run_dir / "cache"),
        cv=prep.config.cv,
        checkpoint=prep.config.max_retries > 0,
        gpus_per_worker=prep.config.gpus_per_worker,
        fidelity=prepare_fidelity(prep.config, prep.data.y_train, prep.run_dir),  # _fidelity
    )
