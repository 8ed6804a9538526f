"""Trick family ``mixing``: mix samples of a batch, producing soft targets.

Tricks:

- ``mixup`` — x = λx_i + (1−λ)x_j, y likewise, λ ~ Beta(α, α) (Zhang et al. 2018, "mixup: Beyond
  Empirical Risk Minimization"); as ``torchvision.transforms.v2.MixUp``.
- ``cutmix`` — paste a random box of x_j into x_i, λ = kept area (Yun et al. 2019, "CutMix:
  Regularization Strategy to Train Strong Classifiers with Localizable Features"); as
  ``torchvision.transforms.v2.CutMix``.
- ``ricap`` — four random crops from four shuffles of the batch patched into one image, label
  weights = area fractions (Takahashi et al. 2018, "RICAP: Random Image Cropping and Patching Data
  Augmentation for Deep CNNs"); hand-written on batches.

Like torchvision, mixup and cutmix pair sample i with sample i−1 (``x.roll(1, 0)``): the loader
must shuffle. :func:`build_mixing` returns a :class:`BatchMixer` that always emits soft targets
(one-hot when a batch is left unmixed), so the loss follows; label smoothing is folded into those
targets by the loss, once.

Randomness: the draws that set a shape or a code path — which trick, whether to mix, λ, the box
and RICAP's boundary and offsets — are a few numbers drawn on the host from torch's CPU
generator (nothing is read back from the device: no sync); RICAP's four permutations are drawn
on the batch's device (torch's default generator of that device). Mixup and cutmix draw exactly
as ``torchvision.transforms.v2.MixUp``/``CutMix`` (same order, same arithmetic) without their
per-call input checks; ``torch.manual_seed`` seeds both generators: same seed, same batches.
Mixup works on any float batch ``[B, …]`` (signals, feature vectors); cutmix and RICAP cut 2-D
boxes and need images ``[B, C, H, W]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tricksearch.tricks._base import BoundedParam, Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._section import dispatch, validate_tricks

__all__ = [
    "BUILDERS",
    "BatchMixer",
    "build_mixing",
    "cutmix_batch",
    "mixup_batch",
    "ricap_batch",
    "roll_permutation",
]

FAMILY = "mixing"

#: A mixing mode: ``(x, soft targets) -> (mixed x, mixed soft targets)``.
Mix = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _prob(default: float = 1.0) -> Param:
    return Param(
        "prob",
        "float",
        default,
        help="probability that a batch is mixed (otherwise one-hot targets)",
        low=0.0,
        high=1.0,
        search=SearchSpec(0.1, 1.0),
    )


def _beta(name: str, default: float, what: str) -> Param:
    return BoundedParam(
        name,
        "float",
        default,
        help=what,
        low=0.0,
        low_open=True,
        search=SearchSpec(0.1, 1.0),
    )


MIXUP = register(
    TrickSpec(
        name="mixup",
        family=FAMILY,
        summary="blend pairs of images and their labels with λ ~ Beta(α, α)",
        paper="Zhang et al. 2018, mixup: Beyond Empirical Risk Minimization",
        soft_targets=True,
        params=(_beta("alpha", 0.2, "Beta(α, α) parameter of the mixing weight λ"), _prob()),
    )
)

CUTMIX = register(
    TrickSpec(
        name="cutmix",
        family=FAMILY,
        summary="paste a random box of another image; label weight = area",
        paper="Yun et al. 2019, CutMix: Regularization Strategy to Train Strong Classifiers with "
        "Localizable Features",
        soft_targets=True,
        data_kinds=frozenset({"image"}),
        min_image_side=2,  # a box smaller than the image
        params=(_beta("alpha", 1.0, "Beta(α, α) parameter of the kept area λ"), _prob()),
    )
)

RICAP = register(
    TrickSpec(
        name="ricap",
        family=FAMILY,
        summary="patch four random crops into one image; label weights = areas",
        paper="Takahashi et al. 2018, RICAP: Random Image Cropping and Patching Data Augmentation "
        "for Deep CNNs",
        soft_targets=True,
        data_kinds=frozenset({"image"}),
        min_image_side=2,  # four patches
        params=(_beta("beta", 0.3, "Beta(β, β) parameter of the patch boundary"), _prob()),
    )
)

# --------------------------------------------------------------------------------------------
# maths (pure: every random draw is an argument)


def roll_permutation(batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The pairing torchvision's MixUp/CutMix use: sample i is mixed with sample i−1."""
    return torch.arange(batch_size, device=device).roll(1)


def mixup_batch(
    x: torch.Tensor, y_soft: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): λ·x + (1−λ)·x[perm], and the same for the soft targets."""
    x_mixed = x * lam + x[perm] * (1.0 - lam)
    y_mixed = y_soft * lam + y_soft[perm] * (1.0 - lam)
    return x_mixed, y_mixed


def cutmix_batch(
    x: torch.Tensor,
    y_soft: torch.Tensor,
    box: tuple[int, int, int, int],
    perm: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al. 2019): paste ``x[perm]`` inside ``box = (x1, y1, x2, y2)``.

    The target weight of the pasted image is the box's share of the area (box in pixels,
    half-open, as torchvision's ``CutMix`` draws it).
    """
    h, w = x.shape[-2:]
    x1, y1, x2, y2 = box
    if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
        raise ValueError(f"box {box} must satisfy 0 <= x1 <= x2 <= {w} and 0 <= y1 <= y2 <= {h}.")
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[..., y1:y2, x1:x2][perm]
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (w * h)
    y_mixed = y_soft * lam + y_soft[perm] * (1.0 - lam)
    return out, y_mixed


def ricap_batch(
    x: torch.Tensor,
    y_soft: torch.Tensor,
    boundary: tuple[int, int],
    offsets: Sequence[tuple[int, int]],
    perms: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """RICAP (Takahashi et al. 2018): four crops patched into one image.

    ``boundary = (w, h)`` splits the W×H canvas into top-left (w×h), top-right ((W−w)×h),
    bottom-left (w×(H−h)) and bottom-right ((W−w)×(H−h)). Patch k is cut at ``offsets[k] =
    (left, top)`` from image ``perms[k][i]``; its target weight is its share of the area.
    """
    if len(offsets) != 4 or len(perms) != 4:
        raise ValueError(
            f"RICAP needs 4 offsets and 4 permutations, got {len(offsets)}, {len(perms)}."
        )
    height, width = x.shape[-2:]
    w, h = boundary
    if not (0 <= w <= width and 0 <= h <= height):
        raise ValueError(f"boundary {boundary} must lie within the image (W={width}, H={height}).")
    ws = (w, width - w, w, width - w)
    hs = (h, h, height - h, height - h)
    patches = []
    y_mixed = torch.zeros_like(y_soft)
    for k in range(4):
        left, top = offsets[k]
        if not (0 <= left <= width - ws[k] and 0 <= top <= height - hs[k]):
            raise ValueError(
                f"offset {offsets[k]} of patch {k} ({ws[k]}x{hs[k]}) leaves the image "
                f"(W={width}, H={height})."
            )
        perm = perms[k]
        patches.append(x[..., top : top + hs[k], left : left + ws[k]][perm])
        y_mixed = y_mixed + y_soft[perm] * (ws[k] * hs[k] / (width * height))
    top_row = torch.cat((patches[0], patches[1]), dim=-1)
    bottom_row = torch.cat((patches[2], patches[3]), dim=-1)
    return torch.cat((top_row, bottom_row), dim=-2), y_mixed


# --------------------------------------------------------------------------------------------
# batch transforms


def _beta_sample(concentration: float, shape: tuple[int, ...] = ()) -> float:
    """One Beta(c, c) draw on the host (CPU generator); ``shape`` (1,) is torchvision's."""
    c = torch.full(shape, concentration)
    return float(torch.distributions.Beta(c, c, validate_args=False).sample())


class _MixUp:
    """``v2.MixUp``'s draw and maths: λ ~ Beta(α, α), x·λ + x.roll(1)·(1 − λ)."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def __call__(self, x: torch.Tensor, y_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = _beta_sample(self.alpha, (1,))
        return x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam)), _mix_soft(y_soft, lam)


class _CutMix:
    """``v2.CutMix``'s draws and maths: a box of side ~√(1 − λ) at a uniform centre, clipped."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def __call__(self, x: torch.Tensor, y_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = _beta_sample(self.alpha, (1,))
        height, width = x.shape[-2:]
        r_x, r_y = int(torch.randint(width, size=(1,))), int(torch.randint(height, size=(1,)))
        r = 0.5 * math.sqrt(1.0 - lam)
        r_w_half, r_h_half = int(r * width), int(r * height)
        x1, y1 = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
        x2, y2 = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
        out = x.clone()
        out[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
        lam_adjusted = float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))
        return out, _mix_soft(y_soft, lam_adjusted)


def _mix_soft(y_soft: torch.Tensor, lam: float) -> torch.Tensor:
    """torchvision's label mixing: y.roll(1)·(1 − λ) + y·λ."""
    return y_soft.roll(1, 0).mul_(1.0 - lam).add_(y_soft.mul(lam))


class _Ricap:
    """Draws RICAP's boundary and offsets on the host, its permutations on the device."""

    def __init__(self, beta: float) -> None:
        self.beta = beta

    def __call__(self, x: torch.Tensor, y_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, height, width = x.shape[0], x.shape[-2], x.shape[-1]
        w = round(width * _beta_sample(self.beta))
        h = round(height * _beta_sample(self.beta))
        ws = (w, width - w, w, width - w)
        hs = (h, h, height - h, height - h)
        offsets = [
            (
                int(torch.randint(width - ws[k] + 1, ())),
                int(torch.randint(height - hs[k] + 1, ())),
            )
            for k in range(4)
        ]
        perms = [torch.randperm(batch, device=x.device) for _ in range(4)]
        return ricap_batch(x, y_soft, (w, h), offsets, perms)


@dataclass(frozen=True)
class _Mode:
    name: str
    prob: float
    apply: Mix


class BatchMixer:
    """Mixes a training batch; always returns soft targets ``[B, K]`` whose rows sum to 1.

    With several tricks on, each batch picks one uniformly (as timm's mixup/cutmix switch), then
    applies it with that trick's ``prob``; an unmixed batch gets one-hot targets. These two draws
    come from torch's CPU generator (module docstring); a draw whose outcome is certain (one
    trick; ``prob`` 1) is skipped, so a lone trick at ``prob`` 1 consumes exactly the draws of
    the torchvision transform.
    """

    def __init__(self, modes: Sequence[_Mode], num_classes: int) -> None:
        if not modes:
            raise ValueError("BatchMixer needs at least one mixing trick.")
        self.modes = tuple(modes)
        self.num_classes = num_classes

    def __repr__(self) -> str:
        inner = ", ".join(f"{m.name}(prob={m.prob})" for m in self.modes)
        return f"BatchMixer({inner}, num_classes={self.num_classes})"

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim < 2 or not x.is_floating_point():
            raise TypeError(f"expected a float batch [B, …], got {x.dtype} {tuple(x.shape)}.")
        if y.ndim == 1:
            y_soft = F.one_hot(y, self.num_classes).float()
        elif y.ndim == 2 and y.shape[1] == self.num_classes:
            y_soft = y if y.is_floating_point() else y.float()
        else:
            raise ValueError(
                f"expected targets [B] or [B, {self.num_classes}], got {tuple(y.shape)}."
            )
        if y_soft.shape[0] != x.shape[0]:
            raise ValueError(f"batch sizes differ: x has {x.shape[0]}, y has {y_soft.shape[0]}.")
        if len(self.modes) == 1:
            mode = self.modes[0]
        else:
            mode = self.modes[int(torch.randint(len(self.modes), ()))]
        if mode.prob < 1.0 and not bool(torch.rand(()) < mode.prob):
            return x, y_soft
        return mode.apply(x, y_soft)


def _any_shape(mix: Mix) -> Mix:
    """A sample-wise mix (mixup) on a batch of any shape: seen as [B, 1, 1, N]."""

    def apply(x: torch.Tensor, y_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim == 4:
            return mix(x, y_soft)
        x_mixed, y_mixed = mix(x.reshape(x.shape[0], 1, 1, -1), y_soft)
        return x_mixed.reshape(x.shape), y_mixed

    return apply


def _images_only(name: str, mix: Mix) -> Mix:
    def apply(x: torch.Tensor, y_soft: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(
                f"{FAMILY}.{name} cuts 2-D boxes: expected an image batch [B, C, H, W], "
                f"got shape {tuple(x.shape)}."
            )
        return mix(x, y_soft)

    return apply


def _mixup(params: dict[str, Any], num_classes: int) -> _Mode:
    return _Mode("mixup", params["prob"], _any_shape(_MixUp(params["alpha"])))


def _cutmix(params: dict[str, Any], num_classes: int) -> _Mode:
    return _Mode("cutmix", params["prob"], _images_only("cutmix", _CutMix(params["alpha"])))


def _ricap(params: dict[str, Any], num_classes: int) -> _Mode:
    return _Mode("ricap", params["prob"], _images_only("ricap", _Ricap(params["beta"])))


#: Every mixing trick and the function that builds its mode. The order is the order in which
#: several modes are listed and drawn (fixed, whatever the recipe's key order).
BUILDERS: dict[str, Callable[[dict[str, Any], int], _Mode]] = {
    "mixup": _mixup,
    "cutmix": _cutmix,
    "ricap": _ricap,
}


def build_mixing(section: dict[str, dict], *, num_classes: int) -> BatchMixer | None:
    """The batch mixer of a recipe's ``mixing`` section, or ``None`` when no trick is on."""
    tricks = validate_tricks(section, FAMILY, BUILDERS)
    modes = [build(params, num_classes) for build, params in dispatch(tricks, BUILDERS, FAMILY)]
    if not modes:
        return None
    return BatchMixer(modes, num_classes)
