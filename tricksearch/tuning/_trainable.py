"""What runs inside a Ray worker: one trial (flat config -> Recipe -> fit -> tune.report).

The dataset is loaded once per worker process (``reuse_actors=True`` keeps workers alive across
trials) — the cache lives in ``tricksearch.data``. Module-level functions only: Ray pickles them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.data import DatasetSplits
from tricksearch.recipe import Recipe

if TYPE_CHECKING:
    from tricksearch.engine import EpochMetrics
    from tricksearch.spaces import SearchSpace
    from tricksearch.tuning._fidelity import FidelityPlan

__all__ = [
    "FAILED_KEY",
    "STATE_FILE",
    "TRACEBACK_KEY",
    "TrialContext",
    "restored_state",
    "retrain_one",
    "run_trial",
]


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
    checkpoint: bool = True  # trials checkpoint every epoch (off with --max-retries 0: unused)
    gpus_per_worker: float = 0.0  # GPUs of each replica of a data-parallel trial
    # data fidelity (``--fidelity data``): the epochs before each ASHA rung on a subset of train
    fidelity: FidelityPlan | None = None


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


#: Keys of the result a trial reports when its own code raised (the recipe, the model, the
#: data): the cause in one line and the traceback. Such a trial ends at once and is not retried
#: (it would fail the same way); a worker or node that dies is retried from its last checkpoint.
FAILED_KEY = "trial_failed"
TRACEBACK_KEY = "trial_traceback"
#: The training state's file in each of a trial's checkpoints (``engine.state``).
STATE_FILE = "state.pt"


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Ray Tune function trainable: reports val metrics and a checkpoint after every epoch,
    and goes on from the last readable checkpoint when Ray restarts it after a lost worker."""
    import traceback

    from ray import tune

    from tricksearch.engine import fit
    from tricksearch.tuning._failures import cause_line

    in_ray = [False]  # an exception raised by Ray's own report is Ray's to handle
    epochs_done, spent = [0], [0.0]  # epochs and training seconds so far (restarts included)

    plan = ctx.fidelity

    def report(m: EpochMetrics, state: dict[str, Any] | None = None) -> None:
        spent[0] += m.epoch_seconds
        in_ray[0] = True
        _report_epoch(m, spent[0], state, None if plan is None else plan.fraction(m.epoch))
        in_ray[0] = False
        epochs_done[0] = m.epoch

    try:
        recipe = ctx.space.to_recipe(Recipe.from_dict(ctx.base), config)
        _setup(ctx, recipe)
        data = _data_for(recipe, ctx)
        resume = restored_state() if ctx.checkpoint else None
        if resume is not None:
            epochs_done[0] = int(resume["epoch"])
            spent[0] = sum(h["epoch_seconds"] for h in resume["history"])
        train = fit
        if (recipe.runtime.workers or 1) > 1:  # data-parallel: this process is rank 0
            from tricksearch.tuning._ddp import fit_replicated

            train = functools.partial(fit_replicated, ctx=ctx)
        elif plan is not None:  # the same stratified subsets in every trial (_fidelity)
            train = functools.partial(fit, train_subset=plan.train_subset(data.y_train))
        train(
            recipe,
            model=ctx.model_factory,
            data=data,
            # the training state only when it is kept (capturing it copies the model)
            on_state=report if ctx.checkpoint else None,
            on_epoch=None if ctx.checkpoint else report,
            resume=resume,
            device=ctx.device,
        )
    except Exception as exc:
        if in_ray[0]:
            raise
        from tricksearch.tuning._packing import OOM_KEY, is_oom

        oom = is_oom(exc)  # the GPU's memory, not the configuration: ``_packing``
        if oom:
            torch.cuda.empty_cache()
        tune.report(
            {
                "val_acc": math.nan,
                "val_loss": math.nan,
                "epoch": epochs_done[0],
                FAILED_KEY: cause_line(exc),
                TRACEBACK_KEY: traceback.format_exc(),
                **({OOM_KEY: True} if oom else {}),
                "done": True,
            }
        )


def _report_epoch(
    m: EpochMetrics,
    train_seconds: float,
    state: dict[str, Any] | None,
    data_fraction: float | None = None,
) -> None:
    """One epoch's metrics to Ray Tune, with the training state (when given) as the trial's
    checkpoint (Ray copies it to the run's storage; the temporary folder is removed after).
    ``data_fraction``: the share of the train split the epoch trained on (data fidelity)."""
    import tempfile

    from ray import tune

    from tricksearch.engine.state import save_state

    metrics = {
        "val_acc": m.val_acc,
        "val_loss": m.val_loss,
        "train_loss": m.train_loss,
        "lr": m.lr,
        "epoch": m.epoch,
        "epoch_seconds": m.epoch_seconds,
        "train_seconds": train_seconds,  # the trial's own training (+ val) time so far
    }
    if data_fraction is not None:
        metrics["data_fraction"] = data_fraction
    if state is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="tricksearch-state-") as folder:
        path = save_state(state, Path(folder) / STATE_FILE)
        metrics["checkpoint_bytes"] = path.stat().st_size
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def restored_state() -> dict[str, Any] | None:
    """The training state of the trial's newest readable checkpoint when Ray restarted it (a
    lost worker or node); ``None`` for a fresh trial. A damaged newest checkpoint falls back to
    the one before it (a warning in the trial's log); none readable: the trial starts over."""
    from ray import tune

    newest = tune.get_checkpoint()
    if newest is None:
        return None
    return first_readable_state([newest, *_older_checkpoints(newest)])


def first_readable_state(checkpoints: list[Any]) -> dict[str, Any] | None:
    """The training state of the first of ``checkpoints`` (Ray ``Checkpoint`` objects, newest
    first) whose state file reads back; a damaged one is skipped with a warning."""
    import logging

    from tricksearch.engine.state import load_state
    from tricksearch.errors import ConfigError

    for checkpoint in checkpoints:
        try:
            with checkpoint.as_directory() as folder:
                return load_state(Path(folder) / STATE_FILE)
        except (ConfigError, OSError) as exc:
            logging.getLogger(__name__).warning("checkpoint %s is damaged: %s", checkpoint, exc)
    return None


def _older_checkpoints(newest: Any) -> list[Any]:
    """The trial's other checkpoints older than ``newest``, newest first (Ray keeps the last
    two: ``checkpoint_000004`` beside ``checkpoint_000005``)."""
    import re

    import pyarrow.fs
    from ray import tune

    fs, here = newest.filesystem, PurePosixPath(newest.path)
    number = re.fullmatch(r"checkpoint_(\d+)", here.name)
    if number is None:
        return []
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(str(here.parent)))
    except OSError:
        return []
    older = []
    for info in infos:
        match = re.fullmatch(r"checkpoint_(\d+)", PurePosixPath(info.path).name)
        if match and int(match.group(1)) < int(number.group(1)):
            older.append((int(match.group(1)), info.path))
    return [tune.Checkpoint(path, filesystem=fs) for _, path in sorted(older, reverse=True)]


def retrain_one(recipe_dict: dict[str, Any], seed: int, ctx: TrialContext) -> dict[str, Any]:
    """Train one candidate at the full budget with one seed; val and test metrics (or the error).

    With ``ctx.cv`` = K the candidate is trained K times, on each fold of train + val
    (``data.cv_fold``, the same folds for every recipe), and the metrics are the means over the
    folds (``folds`` keeps each fold's)."""
    from tricksearch.data import cv_fold
    from tricksearch.engine import TrainingDiverged
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
    curves: list[list[float]] = []
    seconds, epochs = 0.0, 0
    for part in parts:
        try:
            result = _fit_for(recipe)(
                recipe, model=ctx.model_factory, data=part, device=ctx.device, evaluate_test=True
            )
        except TrainingDiverged as exc:
            return {"seed": seed, "error": cause_line(exc)}
        metrics.append({k: getattr(result, k) for k in _METRICS})
        curves.append([m.val_acc for m in result.history])
        seconds, epochs = seconds + result.seconds, len(result.history)
    out: dict[str, Any] = {"seed": seed}
    out |= {k: sum(m[k] for m in metrics) / len(metrics) for k in _METRICS}
    out |= {
        "seconds": seconds,
        "epochs": epochs,
        "recipe": json.loads(json.dumps(recipe.to_dict())),
        # val accuracy after each epoch (the mean over the folds with --cv): learning curves
        "curve": [sum(vals) / len(vals) for vals in zip(*curves, strict=True)],
    }
    if ctx.cv:
        out["folds"] = metrics
    return out


_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss")


def _fit_for(recipe: Recipe) -> Callable[..., Any]:
    """``engine.fit``, or its data-parallel form for a recipe of ``runtime.workers`` > 1 (local
    processes, like ``tricksearch train``: the retraining gives the trials' numbers)."""
    from tricksearch.engine import fit
    from tricksearch.engine.spawn import spawn_fit

    workers = recipe.runtime.workers or 1
    if workers == 1:
        return fit
    return functools.partial(spawn_fit, workers=workers, threads=recipe.runtime.threads)
