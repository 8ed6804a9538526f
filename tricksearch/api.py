"""The Python API behind the CLI's ``train``: recipe in, metrics (and files) out."""

from __future__ import annotations

import functools
import json
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.data import DatasetSplits, dataset_from_tensors, reconcile_kind
from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    import numpy as np

    from tricksearch.engine import EpochMetrics, FitResult

    #: Data as arrays: ``(x, y)`` or ``(x, y, x_test, y_test)``, torch tensors or numpy arrays.
    Arrays = tuple[torch.Tensor | np.ndarray, ...]

__all__ = ["as_recipe", "for_data", "resolve_data", "torch_threads", "train", "versions"]


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on (ray/optuna only when installed)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("tricksearch", "torch", "torchvision", "ray", "optuna"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def as_recipe(recipe: Recipe | str | Path | dict[str, Any] | None) -> Recipe:
    """Accept a Recipe, a path to a recipe file, a raw mapping, or None (the baseline)."""
    if recipe is None:
        return Recipe()
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, (str, Path)):
        return load_recipe(recipe)
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    raise ConfigTypeError(
        f"recipe: got {type(recipe).__name__}, expected a Recipe, a path or a mapping."
    )


def for_data(recipe: Recipe, data: DatasetSplits) -> Recipe:
    """``recipe`` with ``data.kind`` set to the kind of ``data`` (a recipe written for signals
    says so); a recipe made for another kind is refused (``tricksearch.data.reconcile_kind``)."""
    kind = reconcile_kind(recipe.data.kind, data.kind, dataset=f"dataset {data.name!r}")
    if kind == recipe.data.kind:
        return recipe
    return recipe.with_changes(data=recipe.data.to_dict() | {"kind": kind})


def resolve_data(
    recipe: Recipe, dataset: str | DatasetSplits | Arrays | None, unlabeled: Any = None
) -> tuple[Recipe, DatasetSplits | None]:
    """Apply a ``dataset`` argument: a name changes the recipe; tensors/splits are used as given,
    and the recipe takes their data kind (:func:`for_data`). A recipe whose ``data.kind`` is
    ``signal`` or ``features`` reads tensors as that kind. Tensors are split with the recipe's
    ``data.labeled_fraction``; ``unlabeled`` is an unlabelled pool: ``imagefolder:PATH`` /
    ``npz:PATH`` (put in the recipe) or, for tensors, an array of samples shaped like ``x``."""
    if isinstance(unlabeled, str):
        recipe = recipe.with_changes(data=recipe.data.to_dict() | {"unlabeled": unlabeled})
    elif unlabeled is not None and not isinstance(dataset, tuple):
        raise ConfigTypeError(
            f"unlabeled: got {type(unlabeled).__name__}; an array pool goes with data given as "
            "tensors, dataset=(x, y); otherwise give imagefolder:PATH or npz:PATH (or build a "
            "DatasetSplits with tricksearch.data.dataset_from_tensors(x, y, x_unlabeled=...))."
        )
    if dataset is None:
        return recipe, None
    if isinstance(dataset, str):
        return recipe.with_changes(data=recipe.data.to_dict() | {"dataset": dataset}), None
    if isinstance(dataset, DatasetSplits):
        return for_data(recipe, dataset), dataset
    if isinstance(dataset, tuple) and len(dataset) in (2, 4):
        x, y, *test = dataset
        kwargs: dict[str, Any] = {}
        if test:
            kwargs = {"x_test": test[0], "y_test": test[1]}
        d = recipe.data
        splits = dataset_from_tensors(
            x,
            y,
            val_fraction=d.val_fraction,
            test_fraction=d.test_fraction,
            split_seed=d.split_seed,
            kind=None if d.kind == "image" else d.kind,
            x_unlabeled=d.unlabeled if unlabeled is None else unlabeled,
            labeled_fraction=d.labeled_fraction,
            **kwargs,
        )
        return for_data(recipe, splits), splits
    raise ConfigTypeError(
        f"dataset: got {type(dataset).__name__}, expected a dataset name, DatasetSplits, "
        "or a tuple (x, y) / (x, y, x_test, y_test) of tensors."
    )


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (None: as it is), restored after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _with_arguments(
    recipe: Recipe,
    model: str | Callable[..., nn.Module] | None,
    epochs: int | None,
    seed: int | None,
    threads: int | None,
) -> Recipe:
    """The recipe with train()'s arguments put in: budget, threads, the model's name (a factory
    is recorded as ``python:MODULE.QUALNAME``)."""
    from tricksearch.models import is_python_model, python_model_name, python_model_refusal

    budget = recipe.budget.to_dict()
    if epochs is not None:
        budget["epochs"] = epochs
    if seed is not None:
        budget["seed"] = seed
    changes: dict[str, Any] = {"budget": budget}
    if threads is not None:
        changes["runtime"] = recipe.runtime.to_dict() | {"threads": threads}
    if isinstance(model, str):
        changes["model"] = {"name": model, "options": recipe.model.options}
    elif callable(model):
        changes["model"] = {"name": python_model_name(model), "options": recipe.model.options}
    elif model is not None:
        raise ConfigTypeError(
            f"model: got {type(model).__name__}, expected a model name or a factory callable."
        )
    elif is_python_model(recipe.model.name):
        raise ConfigError(python_model_refusal(recipe.model.name))
    return recipe.with_changes(**changes)


def train(
    recipe: Recipe | str | Path | dict[str, Any] | None = None,
    *,
    dataset: str | DatasetSplits | Arrays | None = None,
    unlabeled: str | torch.Tensor | np.ndarray | None = None,
    model: str | Callable[..., nn.Module] | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    threads: int | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    on_epoch: Callable[[EpochMetrics], object] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Train once as the recipe says and evaluate on val and test; optionally write ``out/``.

    ``dataset`` may be a name (``"digits"``), a :class:`DatasetSplits`, or tensors ``(x, y)``.
    ``unlabeled``: an unlabelled pool, ``imagefolder:PATH`` / ``npz:PATH`` (recorded in the
    recipe) or, with tensors, an array of samples shaped like ``x`` (the recipe's
    ``data.labeled_fraction`` hides the labels of the rest of the train split).
    ``model`` may be a registry name or a factory ``f(in_channels=…, num_classes=…)`` (recorded
    as ``python:MODULE.QUALNAME``; a recipe that names one needs it given again). Training runs
    with the recipe's ``runtime.threads`` torch threads (``threads`` overrides it; restored
    afterwards), so a recipe found by a search gives the search's numbers on the same device.
    ``on_epoch(metrics)`` is called after every epoch with its
    :class:`~tricksearch.engine.EpochMetrics`. Returns the metrics (val/test accuracy and loss,
    per-epoch history, seconds, device) and the trained ``model``. With ``out``, writes
    ``recipe.yaml`` (the recipe used), ``metrics.json`` and, for a model the registry can rebuild
    (not a user's factory), ``model.pt``. ``workers`` (default: the recipe's
    ``runtime.workers``): data-parallel processes (torch DDP, :mod:`tricksearch.engine.distributed`;
    the batch size is the global batch, split evenly), recorded in the recipe.
    """
    from tricksearch.engine import fit, load_data

    recipe = _with_arguments(as_recipe(recipe), model, epochs, seed, threads)
    factory = model if callable(model) and not isinstance(model, str) else None
    recipe, data = resolve_data(recipe, dataset, unlabeled)
    if data is None:
        data = load_data(recipe)
        recipe = for_data(recipe, data)
    if workers is not None:  # 1: one process (the recipe's runtime.workers dropped)
        runtime = recipe.runtime.to_dict() | {"workers": workers if workers > 1 else None}
        recipe = recipe.with_changes(runtime=runtime)
    train_fn: Callable[..., FitResult] = fit
    if recipe.runtime.workers:  # data-parallel: local processes, torch DDP (engine.distributed)
        from tricksearch.engine.spawn import spawn_fit

        train_fn = functools.partial(
            spawn_fit, workers=recipe.runtime.workers, threads=recipe.runtime.threads
        )
    with torch_threads(recipe.runtime.threads):
        result = train_fn(
            recipe, model=factory, data=data, on_epoch=on_epoch, device=device, evaluate_test=True
        )
    metrics = result.metrics()
    metrics["versions"] = versions()
    metrics["dataset"] = data.name
    metrics["skipped_files"] = list(data.info.get("skipped_files", []))
    metrics["threads"] = recipe.runtime.threads or torch.get_num_threads()
    if out is not None:
        _write_out(Path(out), recipe, data, result, metrics, checkpoint=factory is None)
    metrics["model"] = result.model
    return metrics


def _write_out(
    out: Path,
    recipe: Recipe,
    data: DatasetSplits,
    result: FitResult,
    metrics: dict[str, Any],
    *,
    checkpoint: bool,
) -> None:
    """``recipe.yaml``, ``metrics.json`` and, for a model the registry can rebuild, ``model.pt``."""
    from tricksearch.components import model_options
    from tricksearch.engine import save_checkpoint

    if out.exists() and not out.is_dir():
        raise ConfigError(f"out: {str(out)!r} exists and is not a folder.")
    out.mkdir(parents=True, exist_ok=True)
    recipe.save(out / "recipe.yaml")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if checkpoint:
        save_checkpoint(
            out / "model.pt",
            result.model,
            model_name=recipe.model.name,
            options=model_options(recipe),
            in_channels=data.channels,
            num_classes=data.num_classes,
            image_size=data.image_size,
        )
