"""The retraining: each candidate and the baseline trained at the full budget with the same seeds.

Identical recipes (a candidate that is the baseline) are trained once and their results shared.
The trainings run as Ray tasks; one that raises counts as a failed seed, not a failed search.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._console import say
from tricksearch.tuning._failures import cause_line

if TYPE_CHECKING:
    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace
    from tricksearch.tuning._candidates import TrialRecord
    from tricksearch.tuning._trainable import TrialContext

__all__ = ["RetrainJob", "candidate_recipes", "plan_jobs", "retrain", "run_jobs"]


class RetrainJob(NamedTuple):
    """One training: the label it stands for, the recipe (as a dict), the seed."""

    label: str
    recipe: dict[str, Any]
    seed: int


def candidate_recipes(
    candidates: Sequence[TrialRecord], space: SearchSpace, base: Recipe
) -> dict[str, Recipe]:
    """``{"trial N": its recipe, ..., "baseline": the base recipe with every trick off}``."""
    recipes = {f"trial {r.number}": space.to_recipe(base, dict(r.params)) for r in candidates}
    recipes["baseline"] = base.baseline()
    return recipes


def plan_jobs(
    recipes: Mapping[str, Recipe], seeds: Sequence[int]
) -> tuple[list[RetrainJob], dict[str, str]]:
    """The trainings to run (each distinct recipe once per seed, the baseline first) and, for each
    label, the label whose trainings stand for it (itself unless an earlier one is identical)."""
    unique: dict[str, str] = {}
    alias: dict[str, str] = {}
    order = sorted(recipes, key=lambda k: k != "baseline")  # the baseline first, when present
    for label in order:
        key = recipes[label].dumps("json")
        alias[label] = unique.setdefault(key, label)
    jobs = [
        RetrainJob(label, recipes[label].to_dict(), s)
        for label in set(alias.values())
        for s in seeds
    ]
    jobs.sort(key=lambda j: (j.label != "baseline", j.label, j.seed))
    return jobs, alias


def retrain(
    recipes: Mapping[str, Recipe],
    seeds: Sequence[int],
    ctx: TrialContext,
    config: SearchConfig,
    out: IO[str] | None,
) -> list[dict[str, Any]]:
    """Train every recipe with every seed; one result per label and seed (``label``, ``seed``, and
    the metrics, or ``error`` for a training that failed), in the order of ``recipes``."""
    jobs, alias = plan_jobs(recipes, seeds)
    trained = run_jobs(jobs, ctx, config, out)
    return [
        r | {"label": label} for label in recipes for r in trained if r["label"] == alias[label]
    ]


def run_jobs(
    jobs: Sequence[RetrainJob],
    ctx: TrialContext,
    config: SearchConfig,
    out: IO[str] | None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the jobs as Ray tasks with a trial's resources; a line of progress as each ends, with
    the time elapsed and an estimate of the time left (``_progress.jobs_left``: the mean seconds
    of the jobs finished × the jobs left / the parallel slots).

    ``on_result`` is called with each result as it arrives (on the driver); by default, the
    tracking of ``config.track`` (``_tracking.retrain_hook``: TensorBoard), or nothing."""
    import time

    from tricksearch.tuning._parallel import map_tasks
    from tricksearch.tuning._progress import fmt_duration, jobs_left
    from tricksearch.tuning._trainable import retrain_one

    if on_result is None and config.track:
        from tricksearch.tuning._tracking import retrain_hook

        on_result = retrain_hook(config)
    results: list[dict[str, Any]] = []
    tasks = [(job.recipe, job.seed) for job in jobs]
    t0, seconds, slots = time.monotonic(), [], _slots(config)
    for i, res in map_tasks(
        retrain_one,
        tasks,
        num_cpus=config.cpus_per_trial * config.workers,  # a DDP recipe: local processes
        num_gpus=config.gpus_per_worker * config.workers,
        shared=ctx,
    ):
        label, _, seed = jobs[i]
        if isinstance(res, Exception):  # a candidate that raises is out, not the search
            cause = getattr(res, "cause", None) or res  # a Ray task error wraps the user's
            res = {"seed": seed, "error": cause_line(cause)}
        res["label"] = label
        results.append(res)
        if on_result is not None:
            on_result(res)
        score = f"val_acc {res['val_acc']:.4f}" if "val_acc" in res else "failed"
        if isinstance(res.get("seconds"), (int, float)):
            seconds.append(float(res["seconds"]))
        elapsed, left = time.monotonic() - t0, len(jobs) - len(results)
        eta = ""
        if left:
            mean = sum(seconds) / len(seconds) if seconds else elapsed / len(results)
            eta = f", ~{fmt_duration(jobs_left(mean, left, slots))} left"
        say(
            out,
            f"  retrained {len(results)}/{len(jobs)}: {label} seed {seed}: {score}  "
            f"({fmt_duration(elapsed)} elapsed{eta})",
        )
    return results


def _slots(config: SearchConfig) -> int:
    """How many trainings Ray runs at once with a trial's resources (1 when Ray is not up)."""
    import ray

    if not ray.is_initialized():
        return 1
    have = ray.cluster_resources()
    cpus, gpus = config.cpus_per_trial * config.workers, config.gpus_per_worker * config.workers
    slots = int(have.get("CPU", 1) // cpus) if cpus else 1
    if gpus:
        slots = min(slots, int(have.get("GPU", 0) // gpus))
    return max(1, slots)
