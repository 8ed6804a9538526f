"""Registry-wide contract: every trick declares its parameters and ranges, switches on and off,
and trains `digits` for one epoch. A new trick is tested here for free."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricksearch.components import build
from tricksearch.engine import fit
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.tricks import Param, TrickSpec, get_trick, registered_tricks
from tricksearch.tricks._base import FAMILIES

TRICKS = registered_tricks()
# Tricks whose one-epoch effect on digits can legitimately be nil: the class prior is uniform
# on balanced digits (a constant bias shift leaves softmax unchanged); the group defaults are
# the baseline itself; flooding acts only once the loss falls below its level; multi-scale may
# draw scale 1 for the first epoch; no-bias-decay changes nothing without weight decay;
# self-training's first round comes after a stage: a one-step training has none; sync_bn needs
# 2+ CUDA replicas and trains with plain BatchNorm elsewhere (identical numbers, one note).
MAY_MATCH_BASELINE = {
    "bias_prior",
    "constant",
    "sgd",
    "multiscale",
    "flooding",
    "no_bias_decay",
    "self_training",
    "sync_bn",
}


def test_unknown_trick_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        get_trick("mixpu")
    assert "mixup" in str(info.value) and "label_smoothing" in str(info.value)


def test_every_family_has_tricks() -> None:
    assert {s.family for s in TRICKS.values()} == set(FAMILIES)
    assert len(TRICKS) >= 40


@pytest.mark.parametrize("name", list(TRICKS))
def test_declaration(name: str) -> None:
    spec = TRICKS[name]
    assert spec.summary and spec.family in FAMILIES
    defaults = spec.validate({}, f"{spec.family}.{name}")
    for p in spec.params:
        assert p.help, f"{name}.{p.name} has no help text"
        if p.search is None:
            continue
        if p.search.choices is not None:
            for choice in p.search.choices:
                value = list(choice) if isinstance(choice, tuple) else choice
                spec.validate({p.name: value}, name)
        else:
            spec.validate({p.name: _cast(p, p.search.low)}, name)
            spec.validate({p.name: _cast(p, p.search.high)}, name)
    # on and off through the recipe
    recipe = _recipe_with(name)
    if spec.required_default:  # the group's default: written or implied, the same recipe
        assert recipe == recipe.baseline()
        return
    assert name in recipe.tricks_on()
    assert name not in recipe.without_trick(name).tricks_on()
    assert recipe.section(spec.family)[name] == defaults | recipe.section(spec.family)[name]


def _cast(p, value):
    return int(value) if p.kind == "int" else value


def _recipe_with(name: str, epochs: int = 1) -> Recipe:
    spec = TRICKS[name]
    params: dict = {}
    if spec.needs_teacher:
        params = {"teacher": "cnn-small", "teacher_epochs": 1}
    model = (
        {"name": "resnet-cifar", "options": {"depth": 8, "width": 8}}
        if spec.needs_residual
        else {"name": "cnn-small"}
    )
    base = Recipe.from_dict({"model": model, "budget": {"epochs": epochs, "batch_size": 128}})
    return base.with_trick(name, params)


def _data_for(name: str, digits):
    """digits as it is, or for a trick that needs an unlabelled pool, with 90 % of its train
    labels hidden into one (the ``semi`` family)."""
    if not TRICKS[name].needs_unlabeled:
        return digits
    n = len(digits.y_train) // 10
    return dataclasses.replace(
        digits,
        x_train=digits.x_train[:n],
        y_train=digits.y_train[:n],
        x_unlabeled=digits.x_train[n:],
        info=dict(digits.info),
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TRICKS))
def test_trains_digits_one_epoch(name: str, digits) -> None:
    recipe = _recipe_with(name)
    data = _data_for(name, digits)
    result = fit(recipe, data=data)
    assert math.isfinite(result.history[0].train_loss)
    assert 0.0 <= result.val_acc <= 1.0
    if name not in MAY_MATCH_BASELINE:
        baseline = fit(recipe.baseline(), data=data)
        ours, theirs = result.history[0], baseline.history[0]
        assert (ours.train_loss, ours.val_loss) != (theirs.train_loss, theirs.val_loss), (
            f"switching {name} on changed nothing"
        )


def test_everything_off_is_the_plain_baseline() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))
    parts = build(Recipe(), model, num_classes=10, steps_per_epoch=10)
    assert parts.augment is None and parts.mixer is None and parts.multiscale is None
    assert parts.adversarial is None and parts.ema is None and parts.grad_clip is None
    assert parts.precision.dtype is None and not parts.uses_teacher and not parts.soft_targets
    assert type(parts.optimizer) is torch.optim.SGD
    assert len(parts.optimizer.param_groups) == 1
    assert parts.optimizer.param_groups[0]["weight_decay"] == 0
    assert [parts.lr_schedule.lr_at(s) for s in (0, 5, 99)] == [0.05] * 3
    logits, y = torch.randn(6, 10), torch.randint(0, 10, (6,))
    assert torch.equal(parts.loss(logits, y), F.cross_entropy(logits, y))


def test_build_pieces_follow_the_recipe() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    recipe = Recipe.from_dict(
        {
            "schedule": {"warmup": {"epochs": 1.0}, "cosine": {}},
            "loss": {"label_smoothing": {"epsilon": 0.1}},
            "mixing": {"mixup": {"alpha": 0.2}},
            "optimizer": {"adamw": {}, "weight_decay": {"value": 1e-3}},
            "procedure": {"ema": {"decay": 0.99}},
        }
    )
    parts = build(recipe, model, num_classes=10, steps_per_epoch=4)
    assert isinstance(parts.optimizer, torch.optim.AdamW) and parts.soft_targets
    lrs = [parts.set_lr(s) for s in range(8)]
    assert lrs[0] < lrs[3] and lrs[4] > lrs[7]  # warmup rises, cosine falls
    assert parts.optimizer.param_groups[0]["lr"] == lrs[-1]
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    _xm, target = parts.mixer(x, y)
    assert target.shape == (8, 10) and torch.allclose(target.sum(1), torch.ones(8))
    assert parts.ema is not None
    sched = parts.scheduler
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)


@pytest.mark.slow
def test_every_family_at_once_trains() -> None:
    """The interactions: soft targets + smoothing + focal + flooding + distillation + adversarial
    + snapshot ensemble + EMA + bf16 + a residual model with every tweak, in one recipe."""
    recipe = Recipe.from_dict(
        {
            "model": {"name": "resnet-cifar", "options": {"depth": 8, "width": 16}},
            "budget": {"epochs": 2, "batch_size": 64, "lr": 0.05},
            "schedule": {
                "lr_scaling": {"rule": "sqrt"},
                "warmup": {"epochs": 0.5},
                "cosine_restarts": {"t0_epochs": 1, "snapshot_ensemble": True},
            },
            "loss": {
                "label_smoothing": {"epsilon": 0.1},
                "focal": {"gamma": 1.0, "alpha": "inverse_frequency"},
                "flooding": {"level": 0.02},
                "distillation": {"teacher": "cnn-small", "teacher_epochs": 1},
                "bias_prior": {},
            },
            "mixing": {"mixup": {"alpha": 0.2}, "cutmix": {}, "ricap": {"prob": 0.5}},
            "augment": {
                "hflip": {},
                "random_crop": {"padding": 1},
                "cutout": {"size": 0.25},
                "random_erasing": {"prob": 0.25},
                "randaugment": {"num_ops": 2, "magnitude": 9},
                "multiscale": {"scales": [1.0, 1.5], "every_epochs": 1},
            },
            "optimizer": {
                "adamw": {},
                "weight_decay": {"value": 1e-4},
                "no_bias_decay": {},
                "lookahead": {"k": 5, "alpha": 0.5},
                "grad_clip": {"max_norm": 1.0},
            },
            "model_tweaks": {
                "zero_gamma": {},
                "dropout": {"p": 0.1},
                "group_norm": {"groups": 8},
                "activation": {"fn": "gelu"},
                "resnet_variant": {"variant": "d"},
            },
            "procedure": {
                "low_precision": {"dtype": "bf16"},
                "ema": {"decay": 0.99},
                "adversarial": {"epsilon": 0.02, "steps": 2, "mix_ratio": 0.5},
            },
        }
    )
    result = fit(recipe, evaluate_test=True)
    assert all(math.isfinite(m.train_loss) for m in result.history)
    assert 0.0 <= result.test_acc <= 1.0


# ------------------------------------------------------- bounds: every family, every bounded param


def _outside(p: Param) -> list[float]:
    """Values just outside ``p``'s bounds (and on an open bound), as the recipe could hold them."""
    step = 1 if p.kind == "int" else 1.0
    values = []
    if p.low is not None:
        values.append(p.low - step)
        if getattr(p, "low_open", False):
            values.append(p.low)
    if p.high is not None:
        values.append(p.high + step)
        if getattr(p, "high_open", False):
            values.append(p.high)
    return [int(v) if p.kind == "int" else float(v) for v in values]


BOUNDED = [
    (spec, p, bad)
    for spec in TRICKS.values()
    for p in spec.params
    if p.kind in ("int", "float", "float_list")
    for bad in _outside(p)
]


def test_every_family_has_bounded_parameters() -> None:
    assert {spec.family for spec, _, _ in BOUNDED} == set(FAMILIES)


@pytest.mark.parametrize(
    ("spec", "p", "bad"), BOUNDED, ids=[f"{s.name}.{p.name}={b}" for s, p, b in BOUNDED]
)
def test_out_of_bounds_is_refused_naming_field_value_and_range(
    spec: TrickSpec, p: Param, bad: float
) -> None:
    value = [bad] if p.kind == "float_list" else bad
    raw = {spec.family: {spec.name: {p.name: value}}}
    with pytest.raises(ConfigError) as info:
        Recipe.from_dict(raw, check_contracts=False)
    message = str(info.value)
    assert f"{spec.family}.{spec.name}.{p.name}" in message
    assert f"got {bad!r}" in message
    assert p.allowed() in message
