"""Trick family ``augment``: data augmentation on whole batches, on the batch's device.

Every trick works on 2-D images only (``data_kinds={"image"}``); papers in the declarations.

- ``hflip``: mirror left-right with probability 1/2 (``data.loader.batch_flip``, airbench style).
- ``random_crop``: reflect-pad by ``padding`` px and crop back at a random offset per sample (a
  translation without black borders; ``data.loader.batch_crop``, one gather per batch).
- ``cutout``: zero a square of side ``size``·min(H, W) at a random centre per sample, clipped by
  the border as in the paper (one batched mask).
- ``random_erasing``: with probability ``prob`` erase a rectangle of 2–33 % of the area, aspect
  ratio 0.3–3.3 (``v2.RandomErasing``'s rule, batched: :func:`_batched_ops.erasing_boxes`).
- group ``policy`` (at most one): ``autoaugment``, ``randaugment``, ``trivialaugment``,
  ``augmix``: torchvision v2's policies drawn per sample, applied to the whole uint8 batch on its
  device (``_batched_policies``).
- ``multiscale``: every ``every_epochs`` epochs resize the float batch by a scale drawn from
  ``scales`` (YOLO-style multi-scale training); the model needs adaptive pooling.

Per-sample policies. A v2 transform called on a batched tensor draws its op once for the whole
batch; the papers draw per image. ``_batched_policies`` draws each image's ops, magnitudes, signs
and probabilities as tensors, from torchvision's own tables, and applies each op to the samples
that drew it, with torchvision's per-image pixels (``tests/tricks/test_batched_policies.py``).
Seconds per 10,000 images, 28×28 grey / 32×32 RGB, per image → batched (2 shared CPU cores, 1
thread, torch 2.14, torchvision 0.29, ``benchmarks/augment_policies.py``): TrivialAugment
0.69/0.91 → 0.061/0.17, AutoAugment 0.80/1.05 → 0.095/0.26, RandAugment(2, 9) 1.25/1.78 →
0.12/0.33, AugMix 4.5/6.1 → 0.48/1.36, random erasing 0.31/0.36 → 0.021/0.046 (4–15×).
The policies take 1- or 3-channel
images (torchvision's colour ops accept no other; they leave grey unchanged).

``BUILDERS`` maps each trick to the settings it contributes (keyword arguments of
:class:`BatchAugment`, or the multi-scale resize). :class:`BatchAugment` applies policy → flip →
crop → cutout → random erasing on uint8; ``multiscale`` is separate (:func:`build_multiscale`)
because it acts on the float batch.
Randomness: every augmentation draws on the batch's device, from ``BatchAugment(generator=…)``
when given (a generator on that device), else from torch's default generator of that device,
which the engine seeds with ``torch.manual_seed`` (on the CPU: the global generator, as before).
Nothing is copied from the host or read back in the training step (``engine.sync_audit``); on
the CPU the numbers are those of the earlier CPU-drawn flip and crop. ``multiscale``'s scale is a
Python draw per block of epochs (it sets the shape, so it must be known on the host).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tricksearch.data.loader import batch_crop, batch_flip
from tricksearch.errors import ConfigError
from tricksearch.tricks import _batched_ops
from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._batched_policies import (
    BatchedAugMix,
    BatchedAutoAugment,
    BatchedPolicy,
    BatchedRandAugment,
    BatchedTrivialAugment,
)
from tricksearch.tricks._section import dispatch, resolve_section

__all__ = [
    "BUILDERS",
    "BatchAugment",
    "MultiScale",
    "build_augment",
    "build_multiscale",
    "cutout_batch",
    "cutout_mask",
    "cutout_side",
    "erase_batch",
    "multiscale_size",
]

FAMILY = "augment"

#: Exclusive group of the augmentation policies.
POLICY_GROUP = "policy"

#: RandomErasing's area and aspect-ratio ranges (Zhong et al. 2020, and torchvision's defaults).
ERASING_SCALE: tuple[float, float] = (0.02, 0.33)
ERASING_RATIO: tuple[float, float] = (0.3, 3.3)

#: An augmentation policy: ``policy(uint8 batch [B, C, H, W], generator or None)`` -> batch,
#: drawn per sample (``_batched_policies``).
Policy = BatchedPolicy

#: Every augmentation works on 2-D images only (``TrickSpec.data_kinds``).
IMAGES = frozenset({"image"})


def _declare(name: str, **fields: Any) -> TrickSpec:
    """Register an augment trick (``fields``: those of :class:`TrickSpec`); all are image-only."""
    return register(TrickSpec(name=name, family=FAMILY, data_kinds=IMAGES, **fields))


HFLIP = _declare(
    "hflip",
    summary="mirror each image left-right with probability 1/2 (batched)",
    paper="standard baseline augmentation",
)

RANDOM_CROP = _declare(
    "random_crop",
    min_image_side=5,  # reflect padding (up to 4 px) must be smaller than the side
    summary="reflect-pad by `padding` px, crop back at a random offset per sample (batched)",
    params=(
        Param(
            "padding",
            "int",
            4,
            help="pixels of reflect padding on each side (maximum translation)",
            low=1,
            high=4,
            search=SearchSpec(1, 4, step=1),
        ),
    ),
    paper="standard baseline augmentation",
)

CUTOUT = _declare(
    "cutout",
    min_image_side=4,  # a square of half the side is at least 2 px
    summary="zero a square of side size·min(H, W) at a random centre per sample",
    params=(
        Param(
            "size",
            "float",
            0.5,
            help="side of the square as a fraction of the image side (0.5 = 16 px on 32 px)",
            low=0.0,
            high=0.5,
            search=SearchSpec(0.0, 0.5),
        ),
    ),
    paper="DeVries & Taylor 2017, Improved Regularization of CNNs with Cutout",
)

RANDOM_ERASING = _declare(
    "random_erasing",
    min_image_side=8,  # 2 % of the area is at least one pixel
    summary="with probability `prob` zero a random rectangle (2-33 % area, ratio 0.3-3.3)",
    params=(
        Param(
            "prob",
            "float",
            0.25,
            help="probability that a sample gets a rectangle erased",
            low=0.0,
            high=0.5,
            search=SearchSpec(0.0, 0.5),
        ),
    ),
    paper="Zhong et al. 2020, Random Erasing Data Augmentation",
)

AUTOAUGMENT = _declare(
    "autoaugment",
    summary="AutoAugment's learned policy, drawn per sample (torchvision v2)",
    params=(
        Param(
            "policy",
            "choice",
            "cifar10",
            help="which learned policy",
            choices=("cifar10", "imagenet", "svhn"),
            search=SearchSpec(choices=("cifar10", "imagenet", "svhn")),
        ),
    ),
    paper="Cubuk et al. 2019, AutoAugment: Learning Augmentation Strategies from Data",
    group=POLICY_GROUP,
)

RANDAUGMENT = _declare(
    "randaugment",
    summary="N random ops of magnitude M per sample (torchvision v2, 31 magnitude bins)",
    params=(
        Param(
            "num_ops",
            "int",
            2,
            help="number of ops applied in sequence (N)",
            low=1,
            high=3,
            search=SearchSpec(1, 3, step=1),
        ),
        Param(
            "magnitude",
            "int",
            9,
            help="magnitude of every op, of 30 (M)",
            low=1,
            high=30,
            search=SearchSpec(1, 30, step=1),
        ),
    ),
    paper="Cubuk et al. 2020, RandAugment: Practical automated data augmentation",
    group=POLICY_GROUP,
)

TRIVIALAUGMENT = _declare(
    "trivialaugment",
    summary="one random op of random magnitude per sample (TrivialAugmentWide, torchvision v2)",
    paper="Müller & Hutter 2021, TrivialAugment: Tuning-free Yet State-of-the-Art Data "
    "Augmentation",
    group=POLICY_GROUP,
)

AUGMIX = _declare(
    "augmix",
    summary="mix of random augmentation chains per sample (torchvision v2 defaults)",
    paper="Hendrycks et al. 2020, AugMix: A Simple Data Processing Method to Improve "
    "Robustness and Uncertainty",
    group=POLICY_GROUP,
)

MULTISCALE = _declare(
    "multiscale",
    min_image_side=4,  # the smallest scale, 0.25, keeps one pixel
    summary="every `every_epochs` epochs resize the batch by a scale drawn from `scales`",
    params=(
        Param(
            "scales",
            "float_list",
            [0.75, 1.0, 1.25],
            help="input scales to draw from (new side = round(scale * side))",
            low=0.25,
            high=4.0,
            search=SearchSpec(choices=((0.75, 1.0, 1.25), (0.5, 0.75, 1.0, 1.25, 1.5))),
        ),
        Param(
            "every_epochs",
            "int",
            1,
            help="epochs between two scale draws",
            low=1,
            high=5,
            search=SearchSpec(1, 5, step=1),
        ),
    ),
    paper="Redmon & Farhadi 2017, YOLO9000: Better, Faster, Stronger (multi-scale training)",
    needs_adaptive_pool=True,
)


# --------------------------------------------------------------------------------------------
# Batched maths (plain functions; randomness drawn on the batch's device: module docstring)
def _check_batch(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected an image batch [B, C, H, W], got shape {tuple(x.shape)}")


def cutout_side(size: float, height: int, width: int) -> int:
    """Side in pixels of the cutout square: ``round(size * min(height, width))``."""
    return round(size * min(height, width))


def cutout_mask(height: int, width: int, side: int, centre_y: Tensor, centre_x: Tensor) -> Tensor:
    """Boolean mask [B, H, W], true inside the side×side square at each centre, clipped."""
    size = torch.full_like(centre_y, side)
    top, left = centre_y - side // 2, centre_x - side // 2
    return _batched_ops.box_mask(height, width, top, left, size, size)


def cutout_batch(x: Tensor, size: float, generator: torch.Generator | None = None) -> Tensor:
    """Zero a square of side ``size``·min(H, W) at a uniform random centre of each image.

    As in DeVries & Taylor (2017) the centre may lie near the border, so the square is clipped.
    Centres drawn on the batch's device (module docstring).
    """
    _check_batch(x)
    b, _, h, w = x.shape
    side = cutout_side(size, h, w)
    if side <= 0:
        return x
    cy = torch.randint(0, h, (b,), device=x.device, generator=generator)
    cx = torch.randint(0, w, (b,), device=x.device, generator=generator)
    return x.masked_fill(cutout_mask(h, w, side, cy, cx)[:, None], 0)


def erase_batch(x: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """``v2.RandomErasing(p=prob, value=0)`` per image, batched: with probability ``prob`` zero one
    rectangle (:func:`_batched_ops.erasing_boxes`; none when no attempt fits)."""
    b, _, h, w = x.shape
    top, left, box_h, box_w = _batched_ops.erasing_boxes(
        b, h, w, scale=ERASING_SCALE, ratio=ERASING_RATIO, device=x.device, generator=generator
    )
    chosen = _batched_ops.uniform((b,), x.device, generator) < prob
    mask = _batched_ops.box_mask(h, w, top, left, box_h * chosen, box_w)
    return x.masked_fill(mask[:, None], 0)


class BatchAugment:
    """The uint8 augmentations of a recipe, applied to whole batches.

    ``__call__(x, epoch)`` takes a uint8 batch [B, C, H, W] and returns a uint8 batch of the same
    shape: policy (per sample) → flip → crop → cutout → random erasing. ``epoch`` is accepted for
    the engine's uniform interface; none of these tricks depends on it. ``generator``: where
    every augmentation draws (a generator on the batch's device), else torch's default
    generator of the batch's device.
    """

    def __init__(
        self,
        *,
        policy: tuple[str, Policy] | None = None,
        hflip: bool = False,
        crop_padding: int = 0,
        cutout_size: float = 0.0,
        erasing_prob: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.policy = policy
        self.hflip = hflip
        self.crop_padding = crop_padding
        self.cutout_size = cutout_size
        self.erasing_prob = erasing_prob
        self.generator = generator

    def __repr__(self) -> str:
        fields = {
            "policy": self.policy[0] if self.policy is not None else None,
            "hflip": self.hflip,
            "crop_padding": self.crop_padding,
            "cutout_size": self.cutout_size,
            "erasing_prob": self.erasing_prob,
        }
        return f"BatchAugment({', '.join(f'{k}={v!r}' for k, v in fields.items() if v)})"

    def __call__(self, x: Tensor, epoch: int) -> Tensor:
        _check_batch(x)
        if x.dtype != torch.uint8:
            raise ValueError(f"BatchAugment expects a uint8 batch, got {x.dtype}")
        if self.policy is not None:
            x = self.policy[1](x, self.generator)  # one independent draw per sample
        if self.hflip:
            x = batch_flip(x, self.generator)
        if self.crop_padding:
            x = batch_crop(x, self.crop_padding, self.generator, mode="reflect")
        if self.cutout_size:
            x = cutout_batch(x, self.cutout_size, self.generator)
        if self.erasing_prob:
            x = erase_batch(x, self.erasing_prob, self.generator)
        return x


#: The batched torchvision policy of each trick of the exclusive group ``policy``.
_POLICIES: dict[str, Callable[[dict[str, Any]], Policy]] = {
    "autoaugment": lambda p: BatchedAutoAugment(p["policy"]),
    "randaugment": lambda p: BatchedRandAugment(
        num_ops=p["num_ops"], magnitude=p["magnitude"], num_magnitude_bins=31
    ),
    "trivialaugment": lambda p: BatchedTrivialAugment(),
    "augmix": lambda p: BatchedAugMix(),
}


def _policy(name: str) -> Callable[[dict[str, Any]], dict[str, object]]:
    return lambda params: {"policy": (name, _POLICIES[name](params))}


#: Every augment trick and the settings it contributes: the keyword arguments of
#: :class:`BatchAugment`, and ``multiscale`` = (scales, every_epochs) for :class:`MultiScale`.
BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, object]]] = {
    **{name: _policy(name) for name in _POLICIES},
    "hflip": lambda p: {"hflip": True},
    "random_crop": lambda p: {"crop_padding": p["padding"]},
    "cutout": lambda p: {"cutout_size": p["size"]},
    "random_erasing": lambda p: {"erasing_prob": p["prob"]},
    "multiscale": lambda p: {"multiscale": (list(p["scales"]), p["every_epochs"])},
}


def _settings(section: dict[str, dict]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for build, params in dispatch(resolve_section(section, FAMILY), BUILDERS, FAMILY):
        settings.update(build(params))
    return settings


def build_augment(
    section: dict[str, dict], *, channels: int, image_size: tuple[int, int]
) -> BatchAugment | None:
    """The :class:`BatchAugment` of a recipe's ``augment`` section, or ``None`` when none is on.

    ``multiscale`` is not part of it (see :func:`build_multiscale`). Raises :class:`ConfigError`
    for a policy on images that are neither 1- nor 3-channel, or a crop padding not smaller than
    the image.
    """
    settings = _settings(section)
    settings.pop("multiscale", None)  # acts on the float batch: build_multiscale
    policy = settings.get("policy")
    if policy is not None and channels not in (1, 3):
        raise ConfigError(
            f"{FAMILY}.{policy[0]}: the policy needs 1- or 3-channel images (torchvision's "
            f"colour ops accept no other), but the data has {channels} channels."
        )
    padding = settings.get("crop_padding", 0)
    if padding and padding >= min(image_size):
        raise ConfigError(
            f"{FAMILY}.random_crop.padding: got {padding}, expected less than the image side "
            f"{min(image_size)} (image size {tuple(image_size)})."
        )
    return BatchAugment(**settings) if any(settings.values()) else None  # all off: no cost


def multiscale_size(scale: float, height: int, width: int) -> tuple[int, int]:
    """The resized (height, width): ``round(scale * side)``, at least 1 pixel."""
    return max(1, round(scale * height)), max(1, round(scale * width))


class MultiScale:
    """The multi-scale resize ``(float batch [B, C, H, W], epoch) -> batch``.

    Epochs ``k·every_epochs … (k+1)·every_epochs − 1`` share one scale drawn from ``scales`` by a
    generator seeded with ``(seed, k)``: deterministic, constant within a block, the same after a
    resume. The batch is resized with bilinear interpolation (no antialiasing, as in YOLO) to
    ``round(scale·H)`` × ``round(scale·W)``; a scale that keeps the size returns the batch as is.
    """

    def __init__(self, scales: list[float], every_epochs: int, seed: int) -> None:
        self.scales = scales
        self.every_epochs = every_epochs
        self.seed = seed

    def __repr__(self) -> str:
        return f"MultiScale(scales={self.scales}, every_epochs={self.every_epochs})"

    def scale_at(self, epoch: int) -> float:
        # A fresh generator per (seed, block): the scale does not depend on the history.
        block = epoch // self.every_epochs
        return random.Random(self.seed * 1_000_003 + block).choice(self.scales)

    def __call__(self, x: Tensor, epoch: int) -> Tensor:
        _check_batch(x)
        size = multiscale_size(self.scale_at(epoch), x.shape[-2], x.shape[-1])
        if size == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def build_multiscale(section: dict[str, dict], *, seed: int) -> MultiScale | None:
    """The :class:`MultiScale` resize of a recipe's ``augment`` section, or ``None`` when off."""
    multiscale = _settings(section).get("multiscale")
    if multiscale is None:
        return None
    scales, every = multiscale
    return MultiScale(scales, every, seed)
