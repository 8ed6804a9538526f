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


def _setup(ctx: TrialContext) -> None:
    import os

    torch.set_num_threads(max(1, math.floor(ctx.cpus_per_trial)))
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

    _setup(ctx)
    recipe = ctx.space.to_recipe(Recipe.from_dict(ctx.base), config)
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
    """Train one candidate at the full budget with one seed; val and test metrics (or the error)."""
    from tricksearch.engine import TrainingDiverged, fit

    _setup(ctx)
    recipe = Recipe.from_dict(recipe_dict)
    recipe = recipe.with_changes(budget=recipe.budget.to_dict() | {"seed": seed})
    data = _data_for(recipe, ctx)
    try:
        result = fit(
            recipe, model=ctx.model_factory, data=data, device=ctx.device, evaluate_test=True
        )
    except TrainingDiverged as exc:
        return {"seed": seed, "error": str(exc)}
    return {
        "seed": seed,
        "val_acc": result.val_acc,
        "val_loss": result.val_loss,
        "test_acc": result.test_acc,
        "test_loss": result.test_loss,
        "seconds": result.seconds,
        "epochs": len(result.history),
        "recipe": json.loads(json.dumps(recipe.to_dict())),
    }
