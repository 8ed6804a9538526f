"""What runs inside a Ray worker: one trial (flat config -> Recipe -> fit -> tune.report).

The dataset is loaded once per worker process (``reuse_actors=True`` keeps workers alive across
trials) — the cache lives in ``tricksearch.data``. Module-level functions only: Ray pickles them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.data import DatasetSplits
from tricksearch.recipe import Recipe

if TYPE_CHECKING:
    from tricksearch.engine import EpochMetrics
    from tricksearch.spaces import SearchSpace

__all__ = ["TrialContext", "retrain_one", "run_trial"]


@dataclass
class TrialContext:
    """What every trial shares: the base recipe (as a dict), the space, and user objects."""

    base: dict[str, Any]
    space: SearchSpace
    cpus_per_trial: float
    device: str
    data: DatasetSplits | None = None
    model_factory: Callable[..., nn.Module] | None = None
    cache_dir: str | None = None
    cv: int | None = None  # the retraining's K folds on train + val (``--cv``); None: one split


def _setup(ctx: TrialContext, recipe: Recipe) -> None:
    """The worker set for one training: the recipe's torch thread count (``runtime.threads``,
    which the search's base recipe sets to the trials' share of CPUs), the teacher cache."""
    import os

    threads = recipe.runtime.threads
    torch.set_num_threads(threads if threads else max(1, math.floor(ctx.cpus_per_trial)))
    if ctx.cache_dir:
        os.environ["TRICKSEARCH_CACHE"] = ctx.cache_dir


def _data_for(recipe: Recipe, ctx: TrialContext) -> DatasetSplits:
    if ctx.data is not None:
        return ctx.data
    from tricksearch.engine import load_data

    return load_data(recipe)  # cached per process


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Ray Tune function trainable: reports val metrics after every epoch."""
    from ray import tune

    from tricksearch.engine import fit

    recipe = ctx.space.to_recipe(Recipe.from_dict(ctx.base), config)
    _setup(ctx, recipe)
    data = _data_for(recipe, ctx)

    spent = [0.0]

    def report(m: EpochMetrics) -> None:
        spent[0] += m.epoch_seconds
        tune.report(
            {
                "val_acc": m.val_acc,
                "val_loss": m.val_loss,
                "train_loss": m.train_loss,
                "epoch": m.epoch,
                "epoch_seconds": m.epoch_seconds,
                "train_seconds": spent[0],  # the trial's own training (+ val) time so far
            }
        )

    fit(recipe, model=ctx.model_factory, data=data, on_epoch=report, device=ctx.device)


def retrain_one(recipe_dict: dict[str, Any], seed: int, ctx: TrialContext) -> dict[str, Any]:
    """Train one candidate at the full budget with one seed; val and test metrics (or the error).

    With ``ctx.cv`` = K the candidate is trained K times, on each fold of train + val
    (``data.cv_fold``, the same folds for every recipe), and the metrics are the means over the
    folds (``folds`` keeps each fold's)."""
    from tricksearch.data import cv_fold
    from tricksearch.engine import TrainingDiverged, fit
    from tricksearch.tuning._failures import cause_line

    recipe = Recipe.from_dict(recipe_dict)
    recipe = recipe.with_changes(budget=recipe.budget.to_dict() | {"seed": seed})
    _setup(ctx, recipe)
    data = _data_for(recipe, ctx)
    parts = (
        [data]
        if not ctx.cv
        else [cv_fold(data, k, ctx.cv, seed=recipe.data.split_seed) for k in range(ctx.cv)]
    )
    metrics: list[dict[str, float]] = []
    seconds, epochs = 0.0, 0
    for part in parts:
        try:
            result = fit(
                recipe, model=ctx.model_factory, data=part, device=ctx.device, evaluate_test=True
            )
        except TrainingDiverged as exc:
            return {"seed": seed, "error": cause_line(exc)}
        metrics.append({k: getattr(result, k) for k in _METRICS})
        seconds, epochs = seconds + result.seconds, len(result.history)
    out: dict[str, Any] = {"seed": seed}
    out |= {k: sum(m[k] for m in metrics) / len(metrics) for k in _METRICS}
    out |= {
        "seconds": seconds,
        "epochs": epochs,
        "recipe": json.loads(json.dumps(recipe.to_dict())),
    }
    if ctx.cv:
        out["folds"] = metrics
    return out


_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss")
