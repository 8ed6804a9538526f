"""Trick input declarations (``TrickSpec.data_kinds``, ``min_image_side``) are true.

Every trick declared for signals or feature vectors builds through ``tricksearch.build`` and runs
one training step on a tiny float batch with a small Conv1d / Linear model; every image-only trick
raises a clear error on a signal batch (and works on images of its declared smallest side).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricksearch.components import Components, build
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.tricks import TrickSpec, get_trick, registered_tricks
from tricksearch.tricks._base import DATA_KINDS

TRICKS = registered_tricks()
K = 3


def _needs_model_contract(spec: TrickSpec) -> bool:
    """Tricks whose effect lives in the model builder (residual blocks, builder options): whether
    a model takes them is the model's contract, checked by the models package, not here."""
    return spec.needs_residual or spec.model_option is not None


def _names(kind: str) -> list[str]:
    return [
        n
        for n, s in TRICKS.items()
        if kind in s.data_kinds and not _needs_model_contract(s) and not s.needs_unlabeled
    ]


# The semi tricks (``needs_unlabeled``) train through ``fit`` with a pool, not one ``build`` step:
# their data kinds are tested in tests/tricks/test_semi.py.
IMAGE_ONLY = [
    n for n, s in TRICKS.items() if s.data_kinds == frozenset({"image"}) and not s.needs_unlabeled
]


def _recipe(name: str) -> Recipe:
    spec = TRICKS[name]
    params: dict = {"teacher": "cnn-small"} if spec.needs_teacher else {}
    if name == "low_precision":
        params = {"dtype": "bf16"}  # fp16 autocast is refused on the CPU
    if name in ("mixup", "cutmix", "ricap"):
        params = {"prob": 1.0}  # mix every batch: the step must see the mixed input
    base = Recipe.from_dict({"budget": {"epochs": 2, "batch_size": 8, "lr": 0.05}})
    return base.with_trick(name, params)


def _signal_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, K)
    )


def _features_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, K))


def _image_model(channels: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),  # any input size: multi-scale training
        nn.Flatten(),
        nn.Linear(4, K),
    )


def _step(parts: Components, net: nn.Module, x: torch.Tensor, y: torch.Tensor, teacher=None):
    """One training step in the engine's order: (float input) multiscale, mix, perturb, forward,
    loss, backward, clip, step, EMA. Returns the loss."""
    parts.set_lr(0)
    if parts.multiscale is not None:
        x = parts.multiscale(x, 0)
    target = y
    if parts.mixer is not None:
        x, target = parts.mixer(x, y)
    if parts.adversarial is not None:
        x = parts.adversarial(net, x, target, F.cross_entropy)
    with parts.precision.autocast(x.device):
        logits = net(x)
        teacher_logits = None if teacher is None else teacher(x).float().detach()
    loss = parts.loss(logits.float(), target, teacher_logits=teacher_logits)
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if parts.grad_clip is not None:
        nn.utils.clip_grad_norm_(net.parameters(), parts.grad_clip)
    parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update_parameters(net)
    return loss


def _train_once(name: str, make_model, x: torch.Tensor) -> torch.Tensor:
    recipe = _recipe(name)
    net = make_model()
    teacher = make_model(seed=1) if TRICKS[name].needs_teacher else None
    parts = build(
        recipe,
        net,
        num_classes=K,
        steps_per_epoch=2,
        class_counts=torch.tensor([3.0, 3.0, 2.0]),
        channels=x.shape[1],
        std=(1.0,),
    )
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    before = [p.detach().clone() for p in net.parameters()]
    loss = _step(parts, net, x, y, teacher)
    assert math.isfinite(float(loss.detach()))
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    return loss


def test_data_kinds_are_the_known_ones_and_every_trick_declares_a_subset() -> None:
    assert DATA_KINDS == ("image", "signal", "features")
    for name, spec in TRICKS.items():
        assert spec.data_kinds and spec.data_kinds <= set(DATA_KINDS), name
        assert spec.min_image_side >= 1, name


@pytest.mark.parametrize("name", _names("signal"))
def test_signal_tricks_train_one_step_on_a_conv1d(name: str) -> None:
    x = torch.randn(8, 2, 16, generator=torch.Generator().manual_seed(0))
    _train_once(name, _signal_model, x)


@pytest.mark.parametrize("name", _names("features"))
def test_feature_tricks_train_one_step_on_a_linear_model(name: str) -> None:
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    _train_once(name, _features_model, x)


def test_every_non_image_trick_is_covered() -> None:
    """The step tests cover every trick not declared image-only, except the model contracts."""
    covered = set(_names("signal")) | set(_names("features"))
    left = {
        n
        for n, s in TRICKS.items()
        if n not in IMAGE_ONLY and not _needs_model_contract(s) and not s.needs_unlabeled
    }
    assert left <= covered
    assert {"mixup", "ema", "bias_prior", "adversarial", "label_smoothing"} <= covered


def test_the_image_only_tricks_are_the_augmentations_and_the_box_mixers() -> None:
    augment = {n for n, s in TRICKS.items() if s.family == "augment"}
    assert set(IMAGE_ONLY) == augment | {"cutmix", "ricap"}


@pytest.mark.parametrize("name", IMAGE_ONLY)
def test_image_only_tricks_refuse_a_signal_batch(name: str) -> None:
    """On a [B, C, L] batch an image-only piece raises; it never mangles the batch silently."""
    parts = build(_recipe(name), _signal_model(), num_classes=K, steps_per_epoch=2, channels=1)
    x = torch.randn(8, 2, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    pieces = []
    if parts.augment is not None:
        pieces.append(lambda: parts.augment(x.clamp(0, 1).mul(255).to(torch.uint8), 0))
    if parts.multiscale is not None:
        pieces.append(lambda: parts.multiscale(x, 0))
    if parts.mixer is not None:
        pieces.append(lambda: parts.mixer(x, y))
    assert pieces, f"{name} built no batch transform"
    for piece in pieces:
        with pytest.raises((ValueError, TypeError), match=r"\[B, C, H, W\]"):
            piece()


@pytest.mark.parametrize("name", IMAGE_ONLY)
def test_image_only_tricks_work_on_their_smallest_declared_side(name: str) -> None:
    side = TRICKS[name].min_image_side
    channels = 3
    recipe = _recipe(name)
    net = _image_model(channels)
    parts = build(
        recipe, net, num_classes=K, steps_per_epoch=2, channels=channels, image_size=(side, side)
    )
    g = torch.Generator().manual_seed(0)
    x_uint8 = torch.randint(0, 256, (8, channels, side, side), dtype=torch.uint8, generator=g)
    if parts.augment is not None:
        x_uint8 = parts.augment(x_uint8, 0)
    loss = _step(parts, net, x_uint8.float() / 255, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert math.isfinite(float(loss.detach()))


def test_works_on_names_the_kind_and_the_side() -> None:
    crop = get_trick("random_crop")
    assert crop.works_on("image", (32, 32)) is None
    assert "works on image data, not signal" in (crop.works_on("signal") or "")
    assert "at least 5x5" in (crop.works_on("image", (1, 16)) or "")
    assert get_trick("mixup").works_on("features") is None
    assert get_trick("ema").works_on("signal") is None


def test_random_crop_below_its_side_is_refused_by_the_builder() -> None:
    """The declaration matches the builder: the default padding needs a side of 5."""
    with pytest.raises(ConfigError, match=r"random_crop\.padding"):
        build(
            _recipe("random_crop"), _image_model(1), num_classes=K, steps_per_epoch=2,
            channels=1, image_size=(4, 4),
        )  # fmt: skip
