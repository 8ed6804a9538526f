"""Preset recipes: known-good combinations every search is seeded with.

Each preset keeps the data, model and budget of a base recipe and sets its tricks:

- ``baseline``: every trick off — the reference every gain is measured against;
- ``bag-of-tricks`` (He et al. 2019, "Bag of Tricks for Image Classification with Convolutional
  Neural Networks"): linear LR scaling, linear warmup, zero-γ (only when the model has residual
  blocks), no bias decay, cosine decay, label smoothing 0.1, mixup α 0.2, bf16;
- ``timm-like`` (the recipe family of timm's training scripts, without AdamW/LAMB): cosine,
  warmup, label smoothing 0.1, mixup 0.8 + cutmix 1.0, RandAugment(2, 9), random erasing 0.25,
  EMA of the weights;
- ``sgd-cosine`` (the ResNet/CIFAR reference recipe): SGD with Nesterov momentum 0.9, weight
  decay 5e-4 without bias decay, one warmup epoch, cosine decay, label smoothing 0.1 — at the base
  recipe's LR;
- ``adamw-cosine`` (the usual recipe for Adam-family optimizers): AdamW at the base LR times
  the Adam-like optimizers' LR scale (``TrickSpec.lr_scale`` 0.02: 1e-3 at the default 0.05; an
  Adam-like optimizer at an SGD LR diverges), weight decay 1e-2, one warmup epoch, cosine decay,
  label smoothing 0.1. The only preset that changes the base's budget (its LR).

A search turns them into Optuna points with :meth:`SearchSpace.point`, so they are tried first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tricksearch.compat import incompatibility
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.tricks._base import get_trick

__all__ = ["PRESET_RECIPES", "list_preset_recipes", "preset_recipe"]


def _model_takes(trick: str, model_name: str) -> bool:
    """Whether the model can take ``trick`` (:func:`tricksearch.compat.incompatibility`); False
    when the models package is unavailable. A user's factory (``python:…``) is not known by its
    name: True, and the search's space, fitted to the built model, keeps the trick or not when
    the preset becomes a point (:meth:`SearchSpace.point`)."""
    try:
        from tricksearch.models import is_python_model, model_traits
    except ImportError:  # pragma: no cover - the models package ships with tricksearch
        return False
    if is_python_model(model_name):
        return True
    return incompatibility(get_trick(trick), model_traits(model_name)) is None


def _baseline(base: Recipe) -> dict[str, Any]:
    return {}


def _bag_of_tricks(base: Recipe) -> dict[str, Any]:
    epochs = base.budget.epochs
    tricks: dict[str, Any] = {
        "schedule": {
            "lr_scaling": {"rule": "linear", "reference_batch": 256},
            "warmup": {"epochs": float(min(5, epochs // 4 or 1)), "kind": "linear"},
            "cosine": {"min_lr_factor": 0.0},
        },
        "loss": {"label_smoothing": {"epsilon": 0.1}},
        "mixing": {"mixup": {"alpha": 0.2, "prob": 1.0}},
        "optimizer": {"no_bias_decay": {}},
        "procedure": {"low_precision": {"dtype": "bf16"}},
    }
    if _model_takes("zero_gamma", base.model.name):
        tricks["model_tweaks"] = {"zero_gamma": {}}
    return tricks


def _timm_like(base: Recipe) -> dict[str, Any]:
    epochs = base.budget.epochs
    return {
        "schedule": {
            "warmup": {"epochs": float(min(5, epochs // 4 or 1)), "kind": "linear"},
            "cosine": {"min_lr_factor": 0.0},
        },
        "loss": {"label_smoothing": {"epsilon": 0.1}},
        "mixing": {"mixup": {"alpha": 0.8, "prob": 1.0}, "cutmix": {"alpha": 1.0, "prob": 1.0}},
        "augment": {
            "randaugment": {"num_ops": 2, "magnitude": 9},
            "random_erasing": {"prob": 0.25},
        },
        "procedure": {"ema": {}},
    }


def _sgd_cosine(base: Recipe) -> dict[str, Any]:
    return {
        "schedule": {
            "warmup": {"epochs": 1.0, "kind": "linear"},
            "cosine": {"min_lr_factor": 0.0},
        },
        "loss": {"label_smoothing": {"epsilon": 0.1}},
        "optimizer": {
            "sgd": {"momentum": 0.9, "nesterov": True},
            "weight_decay": {"value": 5e-4},
            "no_bias_decay": {},
        },
    }


def _adamw_cosine(base: Recipe) -> dict[str, Any]:
    lr = base.budget.lr * get_trick("adamw").lr_scale  # Adam's LR scale, not SGD's
    return {
        "budget": {**base.budget.to_dict(), "lr": lr},
        "schedule": {
            "warmup": {"epochs": 1.0, "kind": "linear"},
            "cosine": {"min_lr_factor": 0.0},
        },
        "loss": {"label_smoothing": {"epsilon": 0.1}},
        "optimizer": {"adamw": {}, "weight_decay": {"value": 1e-2}},
    }


#: Preset recipe name -> (description, builder of its trick sections from the base recipe).
PRESET_RECIPES: dict[str, tuple[str, Callable[[Recipe], dict[str, Any]]]] = {
    "baseline": ("every trick off: the reference every gain is measured against", _baseline),
    "bag-of-tricks": (
        "He et al. 2019: linear scaling, warmup, zero-γ (residual models), no bias decay, "
        "cosine, label smoothing 0.1, mixup 0.2, bf16",
        _bag_of_tricks,
    ),
    "timm-like": (
        "cosine, warmup, label smoothing 0.1, mixup 0.8 + cutmix 1.0, RandAugment(2, 9), "
        "random erasing 0.25, EMA",
        _timm_like,
    ),
    "sgd-cosine": (
        "SGD + Nesterov 0.9, weight decay 5e-4 (no bias decay), 1 warmup epoch, cosine, label "
        "smoothing 0.1",
        _sgd_cosine,
    ),
    "adamw-cosine": (
        "AdamW at the base LR × 0.02 (Adam's scale), weight decay 1e-2, 1 warmup epoch, cosine, "
        "label smoothing 0.1",
        _adamw_cosine,
    ),
}


def list_preset_recipes() -> dict[str, str]:
    """Preset recipe name -> one-line description."""
    return {name: desc for name, (desc, _) in PRESET_RECIPES.items()}


def preset_recipe(name: str, base: Recipe) -> Recipe:
    """The preset ``name`` applied to ``base``: its data, model and budget, the preset's tricks.

    Raises :class:`ConfigError` for an unknown name (listing the presets) and whatever the
    recipe's contracts refuse for this model.
    """
    if name not in PRESET_RECIPES:
        raise ConfigError(
            f"preset recipe: got {name!r}, expected one of {', '.join(PRESET_RECIPES)}."
        )
    sections = PRESET_RECIPES[name][1](base)
    return base.baseline().with_changes(**sections)
