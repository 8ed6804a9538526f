"""Trick family ``augment``: data augmentation on whole batches, on the batch's device.

Tricks (see ../shared/TRICKS.md, "Augmentation"):

- ``hflip`` — mirror each image left-right with probability 1/2 (the standard baseline; switch it
  off for data where mirroring changes the class). ``data.loader.batch_flip``, airbench style.
- ``random_crop`` — reflect-pad by ``padding`` pixels and crop back to the original size at a
  random offset per sample (a random translation; airbench's reflect padding rather than zeros, so
  no black borders). ``data.loader.batch_crop``, one gather for the whole batch.
- ``cutout`` — zero a square of side ``size``·min(H, W) at a random centre per sample; the square
  may be clipped by the border, as in the paper (DeVries & Taylor 2017, "Improved Regularization
  of Convolutional Neural Networks with Cutout"). One batched mask.
- ``random_erasing`` — with probability ``prob`` erase a rectangle of 2–33 % of the area and aspect
  ratio 0.3–3.3 (Zhong et al. 2020, "Random Erasing Data Augmentation"); done by
  ``torchvision.transforms.v2.RandomErasing`` on the selected samples only.
- group ``policy`` (at most one): ``autoaugment`` (Cubuk et al. 2019, "AutoAugment: Learning
  Augmentation Strategies from Data"), ``randaugment`` (Cubuk et al. 2020, "RandAugment: Practical
  automated data augmentation with a reduced search space"), ``trivialaugment`` (Müller & Hutter
  2021, "TrivialAugment: Tuning-free Yet State-of-the-Art Data Augmentation"), ``augmix``
  (Hendrycks et al. 2020, "AugMix: A Simple Data Processing Method to Improve Robustness and
  Uncertainty") — ``torchvision.transforms.v2`` on uint8 images.
- ``multiscale`` — every ``every_epochs`` epochs pick an input scale from ``scales`` and resize the
  (float, normalised) batch to it with bilinear interpolation (YOLO-style multi-scale training,
  Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger"). The model needs adaptive pooling.

Per-sample policies. A v2 transform called on a batched tensor draws its random op once for the
whole batch, so :class:`BatchAugment` calls the policy once per image: every sample gets its own
draw, as in the papers. The loop costs, measured on 2 CPU cores (torch 2.14, torchvision 0.29),
per image: TrivialAugment 85–130 µs, AutoAugment 100–190 µs, RandAugment(N=2) 230–340 µs, AugMix
560–950 µs (8×8 to 32×32, 1 or 3 channels) — 0.9–9.5 s per 10,000 images; a single batched call
would cost 1–10 % of that but apply one op to the whole batch. The policies work on 1-channel
(grayscale) images as they are: their colour ops (saturation, …) leave a grayscale image unchanged.
Images with other channel counts are refused (torchvision's colour ops accept 1 or 3 channels).

Order inside :class:`BatchAugment`: policy → flip → crop → cutout → random erasing, all on uint8.
``multiscale`` is separate (:func:`build_multiscale`) because it acts on the float batch.
Randomness: torch's global CPU generator (every draw is made on the CPU and moved to the batch's
device); the engine seeds it, so the same seed gives the same batches on any device.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from tricksearch.data.loader import batch_crop, batch_flip
from tricksearch.errors import ConfigError
from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._section import resolve_section

__all__ = [
    "BatchAugment",
    "build_augment",
    "build_multiscale",
    "cutout_batch",
    "cutout_mask",
    "cutout_side",
    "multiscale_size",
]

FAMILY = "augment"

#: Exclusive group of the augmentation policies.
POLICY_GROUP = "policy"

#: RandomErasing's area and aspect-ratio ranges (Zhong et al. 2020, and torchvision's defaults).
ERASING_SCALE: tuple[float, float] = (0.02, 0.33)
ERASING_RATIO: tuple[float, float] = (0.3, 3.3)

_SPECS: dict[str, TrickSpec] = {}


def _register(spec: TrickSpec) -> TrickSpec:
    _SPECS[spec.name] = spec
    return register(spec)


HFLIP = _register(
    TrickSpec(
        name="hflip",
        family=FAMILY,
        summary="mirror each image left-right with probability 1/2 (batched)",
        paper="standard baseline augmentation",
    )
)

RANDOM_CROP = _register(
    TrickSpec(
        name="random_crop",
        family=FAMILY,
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
)

CUTOUT = _register(
    TrickSpec(
        name="cutout",
        family=FAMILY,
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
)

RANDOM_ERASING = _register(
    TrickSpec(
        name="random_erasing",
        family=FAMILY,
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
)

AUTOAUGMENT = _register(
    TrickSpec(
        name="autoaugment",
        family=FAMILY,
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
)

RANDAUGMENT = _register(
    TrickSpec(
        name="randaugment",
        family=FAMILY,
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
)

TRIVIALAUGMENT = _register(
    TrickSpec(
        name="trivialaugment",
        family=FAMILY,
        summary="one random op of random magnitude per sample (TrivialAugmentWide, torchvision v2)",
        paper="Müller & Hutter 2021, TrivialAugment: Tuning-free Yet State-of-the-Art Data "
        "Augmentation",
        group=POLICY_GROUP,
    )
)

AUGMIX = _register(
    TrickSpec(
        name="augmix",
        family=FAMILY,
        summary="mix of random augmentation chains per sample (torchvision v2 defaults)",
        paper="Hendrycks et al. 2020, AugMix: A Simple Data Processing Method to Improve "
        "Robustness and Uncertainty",
        group=POLICY_GROUP,
    )
)

MULTISCALE = _register(
    TrickSpec(
        name="multiscale",
        family=FAMILY,
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
)

_POLICIES: tuple[str, ...] = tuple(n for n, s in _SPECS.items() if s.group == POLICY_GROUP)


# --------------------------------------------------------------------------------------------
# Batched maths (plain functions; randomness from torch's global CPU generator)


def _check_batch(x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"expected an image batch [B, C, H, W], got shape {tuple(x.shape)}")


def cutout_side(size: float, height: int, width: int) -> int:
    """Side in pixels of the cutout square: ``round(size * min(height, width))``."""
    return round(size * min(height, width))


def cutout_mask(height: int, width: int, side: int, centre_y: Tensor, centre_x: Tensor) -> Tensor:
    """Boolean mask [B, H, W], true inside the side×side square at each centre, clipped."""
    dev = centre_y.device
    top = (centre_y - side // 2)[:, None]
    left = (centre_x - side // 2)[:, None]
    ys = torch.arange(height, device=dev)[None, :]
    xs = torch.arange(width, device=dev)[None, :]
    in_y = (ys >= top) & (ys < top + side)
    in_x = (xs >= left) & (xs < left + side)
    return in_y[:, :, None] & in_x[:, None, :]


def cutout_batch(x: Tensor, size: float) -> Tensor:
    """Zero a square of side ``size``·min(H, W) at a uniform random centre of each image.

    As in DeVries & Taylor (2017) the centre may lie near the border, so the square is clipped.
    """
    _check_batch(x)
    b, _, h, w = x.shape
    side = cutout_side(size, h, w)
    if side <= 0:
        return x
    cy = torch.randint(0, h, (b,)).to(x.device)  # drawn on the CPU: same batches on any device
    cx = torch.randint(0, w, (b,)).to(x.device)
    return x.masked_fill(cutout_mask(h, w, side, cy, cx)[:, None], 0)


def _erase_batch(x: Tensor, prob: float, eraser: v2.RandomErasing) -> Tensor:
    """Random erasing: the Bernoulli(prob) draw is batched, the rectangle drawn per sample."""
    if prob <= 0:
        return x
    chosen = (torch.rand(x.shape[0]) < prob).nonzero().flatten().tolist()
    if not chosen:
        return x
    out = x.clone()
    for i in chosen:
        out[i] = eraser(x[i])
    return out


def _make_policy(name: str, params: dict[str, Any]) -> Callable[[Tensor], Tensor]:
    if name == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy(params["policy"]))
    if name == "randaugment":
        return v2.RandAugment(
            num_ops=params["num_ops"], magnitude=params["magnitude"], num_magnitude_bins=31
        )
    if name == "trivialaugment":
        return v2.TrivialAugmentWide()
    if name == "augmix":
        return v2.AugMix()
    raise ConfigError(f"{FAMILY}.{name}: unknown policy; allowed: {', '.join(_POLICIES)}")


class BatchAugment:
    """The uint8 augmentations of a recipe, applied to whole batches.

    ``__call__(x, epoch)`` takes a uint8 batch [B, C, H, W] and returns a uint8 batch of the same
    shape: policy (per sample) → flip → crop → cutout → random erasing. ``epoch`` is accepted for
    the engine's uniform interface; none of these tricks depends on it.
    """

    def __init__(
        self,
        *,
        policy: tuple[str, Callable[[Tensor], Tensor]] | None = None,
        hflip: bool = False,
        crop_padding: int = 0,
        cutout_size: float = 0.0,
        erasing_prob: float = 0.0,
    ) -> None:
        self.policy = policy
        self.hflip = hflip
        self.crop_padding = crop_padding
        self.cutout_size = cutout_size
        self.erasing_prob = erasing_prob
        self._eraser = v2.RandomErasing(p=1.0, scale=ERASING_SCALE, ratio=ERASING_RATIO, value=0)

    def __repr__(self) -> str:
        parts = []
        if self.policy is not None:
            parts.append(f"policy={self.policy[0]!r}")
        if self.hflip:
            parts.append("hflip=True")
        if self.crop_padding:
            parts.append(f"crop_padding={self.crop_padding}")
        if self.cutout_size:
            parts.append(f"cutout_size={self.cutout_size}")
        if self.erasing_prob:
            parts.append(f"erasing_prob={self.erasing_prob}")
        return f"BatchAugment({', '.join(parts)})"

    def __call__(self, x: Tensor, epoch: int) -> Tensor:
        _check_batch(x)
        if x.dtype != torch.uint8:
            raise ValueError(f"BatchAugment expects a uint8 batch, got {x.dtype}")
        if self.policy is not None:
            fn = self.policy[1]
            out = torch.empty_like(x)
            for i in range(x.shape[0]):  # one independent draw per sample (see module docstring)
                out[i] = fn(x[i])
            x = out
        if self.hflip:
            x = batch_flip(x)
        if self.crop_padding:
            x = batch_crop(x, self.crop_padding, mode="reflect")
        if self.cutout_size:
            x = cutout_batch(x, self.cutout_size)
        if self.erasing_prob:
            x = _erase_batch(x, self.erasing_prob, self._eraser)
        return x


def build_augment(
    section: dict[str, dict], *, channels: int, image_size: tuple[int, int]
) -> BatchAugment | None:
    """The :class:`BatchAugment` of a recipe's ``augment`` section, or ``None`` when none is on.

    ``multiscale`` is not part of it (see :func:`build_multiscale`). Raises :class:`ConfigError`
    for a policy on images that are neither 1- nor 3-channel, or a crop padding not smaller than
    the image.
    """
    tricks = resolve_section(section, FAMILY)
    policy: tuple[str, Callable[[Tensor], Tensor]] | None = None
    for name in _POLICIES:
        if name in tricks:
            if channels not in (1, 3):
                raise ConfigError(
                    f"{FAMILY}.{name}: the policy needs 1- or 3-channel images (torchvision's "
                    f"colour ops accept no other), but the data has {channels} channels."
                )
            policy = (name, _make_policy(name, tricks[name]))
    padding = tricks["random_crop"]["padding"] if "random_crop" in tricks else 0
    if padding and padding >= min(image_size):
        raise ConfigError(
            f"{FAMILY}.random_crop.padding: got {padding}, expected less than the image side "
            f"{min(image_size)} (image size {tuple(image_size)})."
        )
    aug = BatchAugment(
        policy=policy,
        hflip="hflip" in tricks,
        crop_padding=padding,
        cutout_size=tricks["cutout"]["size"] if "cutout" in tricks else 0.0,
        erasing_prob=tricks["random_erasing"]["prob"] if "random_erasing" in tricks else 0.0,
    )
    if aug.policy is None and not (
        aug.hflip or aug.crop_padding or aug.cutout_size or aug.erasing_prob
    ):
        return None
    return aug


def multiscale_size(scale: float, height: int, width: int) -> tuple[int, int]:
    """The resized (height, width): ``round(scale * side)``, at least 1 pixel."""
    return max(1, round(scale * height)), max(1, round(scale * width))


def _block_scale(scales: list[float], seed: int, block: int) -> float:
    # A fresh generator per (seed, block): the scale of an epoch does not depend on the history,
    # so a resumed run draws the same scales.
    return random.Random(seed * 1_000_003 + block).choice(scales)


def build_multiscale(
    section: dict[str, dict], *, seed: int
) -> Callable[[Tensor, int], Tensor] | None:
    """The multi-scale resize ``(float batch, epoch) -> batch``, or ``None`` when it is off.

    Epochs ``k·every_epochs … (k+1)·every_epochs − 1`` share one scale drawn from ``scales`` by a
    generator seeded with ``(seed, k)``: deterministic, constant within a block. The batch is
    resized with bilinear interpolation (no antialiasing, as in YOLO) to ``round(scale·H)`` ×
    ``round(scale·W)``; a scale that keeps the size returns the batch unchanged.
    """
    tricks = resolve_section(section, FAMILY)
    if "multiscale" not in tricks:
        return None
    scales = list(tricks["multiscale"]["scales"])
    every = tricks["multiscale"]["every_epochs"]

    def resize(x: Tensor, epoch: int) -> Tensor:
        _check_batch(x)
        scale = _block_scale(scales, seed, epoch // every)
        size = multiscale_size(scale, x.shape[-2], x.shape[-1])
        if size == tuple(x.shape[-2:]):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    resize.scales = scales  # type: ignore[attr-defined]
    resize.every_epochs = every  # type: ignore[attr-defined]
    return resize
