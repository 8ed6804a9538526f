"""Teachers for knowledge distillation: a checkpoint, or a model trained once and cached.

The cache is keyed by the dataset section, the teacher model, its training recipe and the seed,
so a search of many trials trains the teacher once. It lives in ``$TRICKSEARCH_CACHE/teachers``
(the search points this at its run folder) or ``~/.cache/tricksearch/teachers``; a file lock
keeps parallel trials from training the same teacher twice.

The training itself is the caller's: :func:`get_teacher` receives it as ``train`` (the engine
passes its own ``fit``), so this module does not import the training loop that imports it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from tricksearch.data import DatasetSplits
from tricksearch.engine.checkpoint import load_checkpoint, save_checkpoint
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe

__all__ = ["TrainTeacher", "cache_dir", "get_teacher", "teacher_recipe"]

#: Trains a fresh model of a recipe on the data, on the device, and returns it.
TrainTeacher = Callable[[Recipe, DatasetSplits, torch.device], nn.Module]

_MEMORY: dict[str, nn.Module] = {}


def cache_dir() -> Path:
    root = os.environ.get("TRICKSEARCH_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "tricksearch"
    return base / "teachers"


def teacher_recipe(recipe: Recipe) -> Recipe:
    """The recipe the teacher is trained with.

    The student's data, epochs (or ``teacher_epochs``) and seed, with the default batch size and
    learning rate and a cosine decay: it does not depend on the student's searched values, so one
    teacher serves every trial of a search.
    """
    params = recipe.loss["distillation"]
    epochs = params.get("teacher_epochs") or recipe.budget.epochs
    return Recipe.from_dict(
        {
            "data": recipe.data.to_dict(),
            "model": {"name": params["teacher"]},
            "budget": {"epochs": epochs, "seed": recipe.budget.seed},
            "schedule": {"cosine": {}},
        }
    )


def _check_teacher_kind(name: str, kind: str) -> None:
    """Refuse, before anything is trained, a teacher model made for another data kind."""
    from tricksearch.models import model_kinds, models_for_kind

    kinds = model_kinds(name)
    if kind not in kinds:
        raise ConfigError(
            f"loss.distillation.teacher: got {name!r}, a model for {' or '.join(kinds)} data, "
            f"but the data are {kind} data; teachers for {kind} data: "
            f"{', '.join(models_for_kind(kind))}, or a checkpoint (*.pt)"
        )


def get_teacher(
    recipe: Recipe, data: DatasetSplits, *, device: torch.device, train: TrainTeacher
) -> nn.Module:
    """The teacher the recipe's distillation trick names, loaded, or trained (once) by ``train``
    on :func:`teacher_recipe` and cached."""
    name = recipe.loss["distillation"]["teacher"]
    if name.endswith(".pt") or Path(name).is_file():
        return load_checkpoint(name, map_location=device)
    _check_teacher_kind(name, data.kind)
    t_recipe = teacher_recipe(recipe)
    key = hashlib.sha256(json.dumps(t_recipe.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    if key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            trained = train(t_recipe, data, device)
            from tricksearch.components import model_options

            save_checkpoint(
                path,
                trained,
                model_name=name,
                options=model_options(t_recipe),
                in_channels=data.channels,
                num_classes=data.num_classes,
                image_size=data.image_size,
            )
        fcntl.flock(lock, fcntl.LOCK_UN)
    model = load_checkpoint(path, map_location=device)
    _MEMORY[key] = model
    return model
