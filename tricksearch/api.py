"""The Python API behind the CLI's ``train``: recipe in, metrics (and files) out."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.data import DatasetSplits, dataset_from_tensors
from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    import numpy as np

    from tricksearch.engine import EpochMetrics, FitResult

    #: Data as arrays: ``(x, y)`` or ``(x, y, x_test, y_test)``, torch tensors or numpy arrays.
    Arrays = tuple[torch.Tensor | np.ndarray, ...]

__all__ = ["as_recipe", "resolve_data", "train", "versions"]


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


def resolve_data(
    recipe: Recipe, dataset: str | DatasetSplits | Arrays | None
) -> tuple[Recipe, DatasetSplits | None]:
    """Apply a ``dataset`` argument: a name changes the recipe; tensors/splits are used as given."""
    if dataset is None:
        return recipe, None
    if isinstance(dataset, str):
        return recipe.with_changes(data=recipe.data.to_dict() | {"dataset": dataset}), None
    if isinstance(dataset, DatasetSplits):
        return recipe, dataset
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
            **kwargs,
        )
        return recipe, splits
    raise ConfigTypeError(
        f"dataset: got {type(dataset).__name__}, expected a dataset name, DatasetSplits, "
        "or a tuple (x, y) / (x, y, x_test, y_test) of tensors."
    )


def train(
    recipe: Recipe | str | Path | dict[str, Any] | None = None,
    *,
    dataset: str | DatasetSplits | Arrays | None = None,
    model: str | Callable[..., nn.Module] | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    on_epoch: Callable[[EpochMetrics], object] | None = None,
) -> dict[str, Any]:
    """Train once as the recipe says and evaluate on val and test; optionally write ``out/``.

    ``dataset`` may be a name (``"digits"``), a :class:`DatasetSplits`, or tensors ``(x, y)``.
    ``model`` may be a registry name or a factory ``f(in_channels=…, num_classes=…)``.
    ``on_epoch(metrics)`` is called after every epoch with its
    :class:`~tricksearch.engine.EpochMetrics`. Returns the metrics (val/test accuracy and loss,
    per-epoch history, seconds, device) and the trained ``model``. With ``out``, writes
    ``recipe.yaml`` (the recipe used), ``metrics.json`` and, for a model the registry can rebuild
    (not a user's factory), ``model.pt``.
    """
    from tricksearch.engine import fit, load_data

    recipe = as_recipe(recipe)
    budget = recipe.budget.to_dict()
    if epochs is not None:
        budget["epochs"] = epochs
    if seed is not None:
        budget["seed"] = seed
    recipe = recipe.with_changes(budget=budget)
    if isinstance(model, str):
        recipe = recipe.with_changes(model={"name": model, "options": recipe.model.options})
        model = None
    elif model is not None and not callable(model):
        raise ConfigTypeError(
            f"model: got {type(model).__name__}, expected a model name or a factory callable."
        )
    recipe, data = resolve_data(recipe, dataset)
    if data is None:
        data = load_data(recipe)
    result = fit(
        recipe, model=model, data=data, on_epoch=on_epoch, device=device, evaluate_test=True
    )
    metrics = result.metrics()
    metrics["versions"] = versions()
    metrics["dataset"] = data.name
    metrics["skipped_files"] = list(data.info.get("skipped_files", []))
    if out is not None:
        _write_out(Path(out), recipe, data, result, metrics, checkpoint=model is None)
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
