"""Data-parallel trials (``--workers-per-trial N`` on CPUs, ``--gpus-per-trial N`` >= 2).

A trial of ``N`` replicas asks Tune for a placement group of ``N`` equal bundles (each
``--cpus-per-trial`` CPUs and, on GPUs, one GPU: :func:`trial_resources`). Rank 0 is the Tune
trial itself, in bundle 0: it joins the torch process group, trains with
``fit(dist=DataParallel(0, N))`` and reports every epoch (metrics and checkpoint) to Tune exactly
as a one-process trial does, so ASHA, the Optuna searcher, checkpoints and restarts see no
difference. Ranks 1 … N−1 are Ray tasks pinned to the other bundles, running the same ``fit``
with no callbacks. When rank 0 ends — finished, failed, or stopped by ASHA (Tune's report raises
in its thread) — the other ranks' tasks are cancelled (killed), so no replica outlives its trial
and the bundles are free for the next one.

Why not Ray Train's ``TorchTrainer`` inside the trial (Ray Train V2's Tune integration)? Its
``TuneReportCallback`` forwards metrics and the *path* of Ray Train's own checkpoint, not a Tune
checkpoint: ``tune.get_checkpoint()`` of a restarted trial would be empty, and the trial
checkpoints / retries (``_trainable.restored_state``) would need a second mechanism. A Train
controller and fresh worker processes per trial also cost seconds each on a 2-core machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tricksearch.data import DatasetSplits
    from tricksearch.engine import EpochMetrics, FitResult
    from tricksearch.recipe import Recipe
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._trainable import TrialContext

__all__ = ["fit_replicated", "trial_resources"]


def trial_resources(config: SearchConfig) -> Any:
    """What Tune reserves for one trial: a resource dict, or ``N`` bundles for ``N`` replicas."""
    if config.workers == 1:
        return {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    from ray import tune

    bundle: dict[str, float] = {"CPU": config.cpus_per_trial}
    if config.gpus_per_worker:
        bundle["GPU"] = config.gpus_per_worker
    return tune.PlacementGroupFactory([dict(bundle) for _ in range(config.workers)])


def _replica(
    recipe_dict: dict[str, Any],
    ctx: TrialContext,
    rank: int,
    address: str,
    resume: dict[str, Any] | None,
) -> None:
    """Rank ``rank`` (>= 1) of a data-parallel trial: the same ``fit`` as rank 0, silent."""
    import math
    import os

    import torch

    from tricksearch.engine import fit, load_data
    from tricksearch.engine.distributed import process_group
    from tricksearch.recipe import Recipe

    recipe = Recipe.from_dict(recipe_dict)
    # as _trainable._setup / _data_for (not imported: _trainable imports this module)
    threads = recipe.runtime.threads or max(1, math.floor(ctx.cpus_per_trial))
    torch.set_num_threads(threads)
    if ctx.cache_dir:
        os.environ["TRICKSEARCH_CACHE"] = ctx.cache_dir
    data = ctx.data if ctx.data is not None else load_data(recipe)
    world = int(recipe.runtime.workers or 1)
    with process_group(rank, world, init_method=address, device=ctx.device) as place:
        fit(
            recipe,
            model=ctx.model_factory,
            data=data,
            resume=resume,
            device=ctx.device,
            dist=place,
        )


def fit_replicated(
    recipe: Recipe,
    *,
    ctx: TrialContext,
    model: Any,
    data: DatasetSplits,
    on_epoch: Callable[[EpochMetrics], object] | None,
    on_state: Callable[[EpochMetrics, dict[str, Any]], object] | None,
    resume: dict[str, Any] | None,
    device: str,
) -> FitResult:
    """Train ``recipe`` as ``recipe.runtime.workers`` replicas; this process is rank 0 (it gets
    the callbacks). Must run inside a Tune trial whose resources came from
    :func:`trial_resources`."""
    import ray
    from ray.util.placement_group import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from tricksearch.engine import fit
    from tricksearch.engine.distributed import check_world, free_address, process_group

    world = int(recipe.runtime.workers or 1)
    check_world(world, "workers_per_trial", recipe.budget.batch_size)
    address = free_address(ray.util.get_node_ip_address())
    group = get_current_placement_group()
    task = ray.remote(_replica)
    gpus = ctx.gpus_per_worker if ctx.device.startswith("cuda") else 0
    others = [
        task.options(
            num_cpus=ctx.cpus_per_trial,
            num_gpus=gpus,
            max_retries=0,
            scheduling_strategy=None
            if group is None
            else PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=rank),
        ).remote(recipe.to_dict(), ctx, rank, address, resume)
        for rank in range(1, world)
    ]
    try:
        with process_group(0, world, init_method=address, device=ctx.device) as place:
            result = fit(
                recipe,
                model=model,
                data=data,
                on_state=on_state,
                on_epoch=on_epoch,
                resume=resume,
                device=device,
                dist=place,
            )
        ray.get(others)  # another rank's own error, if it had one
        return result
    finally:
        for ref in others:  # stopped by ASHA, failed, or done: no replica outlives the trial
            ray.cancel(ref, force=True)
