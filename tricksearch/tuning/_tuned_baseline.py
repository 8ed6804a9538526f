"""The tuned baseline: the same search of learning rate and batch size, with every trick off.

A recipe that beats the user's baseline may only have found a better learning rate. The tuned
baseline answers that: a small Optuna study (``tuned-baseline`` in the run's ``study.db``) over
the space's own ``budget`` dimensions, the user's values tried first, each trial trained at the
full budget (no early stopping: the trials are few) as Ray tasks, ``slots`` at a time. Its best
configuration is retrained beside the candidates with the same seeds, and the gain of the
exported recipe over it is reported next to the gain over the baseline.

Resumable: trials already finished in the study are kept.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

from tricksearch.tuning._console import say

if TYPE_CHECKING:
    import optuna

    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace
    from tricksearch.tuning._prepare import Prepared
    from tricksearch.tuning._trainable import TrialContext

__all__ = ["TUNED_STUDY_NAME", "budget_space", "tune_baseline"]

TUNED_STUDY_NAME = "tuned-baseline"


def budget_space(space: SearchSpace) -> SearchSpace | None:
    """The space's learning-rate and batch-size dimensions alone (no trick); None when the space
    searches neither (the tuned baseline would be the baseline)."""
    from tricksearch.spaces import space_from_dict

    budget = space.to_dict().get("budget") or {}
    found = space_from_dict(
        {"budget": budget, "tricks": {}},
        source=f"the budget of space {space.name!r}",
        name="tuned-baseline",
    )
    return found if found.keys() else None


def tune_baseline(
    prep: Prepared, ctx: TrialContext, *, slots: int, out: IO[str] | None
) -> Recipe | None:
    """Search lr and batch size without tricks; the best configuration's recipe (None when
    ``--tuned-baseline 0``, when the space searches neither, or when every trial failed)."""
    import optuna

    from tricksearch.tuning._searcher import make_sampler, open_storage

    config = prep.config
    n = config.tuned_baseline_trials
    space = budget_space(prep.space)
    if n == 0 or space is None:
        return None
    study = optuna.create_study(
        storage=open_storage(prep.run_dir),
        study_name=TUNED_STUDY_NAME,
        direction="maximize" if config.mode == "max" else "minimize",
        load_if_exists=True,
        sampler=make_sampler(config.sampler, config.seed + 1, n),
    )
    _close_interrupted(study)
    done = len(study.trials)
    if not study.trials:
        study.enqueue_trial(space.point(prep.base), skip_if_exists=True)
    if done < n:
        say(out, f"tuned baseline: searching lr/batch size without tricks, {n - done} trial(s) ...")
    while len(study.trials) < n:
        _run_batch(study, space, prep, ctx, min(slots, n - len(study.trials)), out)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        say(out, "tuned baseline: every trial failed; reported without it")
        return None
    return space.to_recipe(prep.base, study.best_trial.params)


def _run_batch(
    study: optuna.Study,
    space: SearchSpace,
    prep: Prepared,
    ctx: TrialContext,
    size: int,
    out: IO[str] | None,
) -> None:
    """Ask ``size`` trials, train them in parallel at the full budget (the retraining's
    ``run_jobs``), tell their val score; a training that failed is told FAIL."""
    from optuna.trial import TrialState

    from tricksearch.tuning._retrain import RetrainJob, run_jobs

    config = prep.config
    trials = {f"tuned baseline trial {t.number}": t for t in (study.ask() for _ in range(size))}
    for trial in trials.values():
        space(trial)
    jobs = [
        RetrainJob(label, space.to_recipe(prep.base, t.params).to_dict(), config.seed)
        for label, t in trials.items()
    ]
    for res in run_jobs(jobs, ctx, config, out):
        value = res.get(config.metric)
        if value is None:
            study.tell(trials[res["label"]], state=TrialState.FAIL)
        else:
            study.tell(trials[res["label"]], float(value))


def _close_interrupted(study: optuna.Study) -> None:
    """Trials an interruption left RUNNING are told FAIL (and run again as new trials)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
