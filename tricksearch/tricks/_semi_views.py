"""The views of the ``semi`` family: weak and strong augmentations of whole batches.

- :func:`weak_view` (uint8 images): the recipe's own augmentation, the one its labelled batches
  get (FixMatch's weak view is the labelled batches' flip + crop); the images as they are when the
  recipe has none. (A 1-px translation the labelled batches never saw, the first version's weak
  view, cut a digits model's accuracy on the pool from 90 % to 60 % and made pseudo-labels noise.)
- :func:`strong_view` (uint8 images): the weak view, then :data:`STRONG_OPS` random ops per sample
  (RandAugment-style, Cubuk et al. 2020, batched: each op is computed for the whole batch and
  selected per sample, magnitude uniform per sample) from autocontrast, brightness, contrast,
  solarize, posterize, rotate, shear and translate, then cutout of :data:`STRONG_CUTOUT` of the
  side (``augment.cutout_batch``), as FixMatch's strong augmentation.
- :func:`noise_view` (float signals and feature vectors, normalised): x + 0.1·ε, ε ~ N(0, 1), with
  10 % of the values zeroed (co-training's second view where images have no augmentation).

Randomness from torch's default generator of the batch's device, as the ``augment`` family (the
engine seeds it and its state restores it on resume): no host copy per step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tricksearch.tricks.augment import BatchAugment, cutout_batch

__all__ = ["STRONG_CUTOUT", "STRONG_OPS", "noise_view", "strong_view", "weak_view"]

#: Random ops per sample of the strong view, and its cutout square (fraction of the side).
STRONG_OPS = 2
STRONG_CUTOUT = 0.25


def weak_view(x: Tensor, augment: BatchAugment | None, epoch: int) -> Tensor:
    """The recipe's augmentation of a uint8 image batch (the images as they are without one);
    other data kinds are returned as they are."""
    if x.ndim != 4 or augment is None:
        return x
    return augment(x, epoch)


def _per_sample(m: Tensor) -> Tensor:
    return m.view(-1, 1, 1, 1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (other + _per_sample(factor) * (x - other)).clamp(0, 255)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _ops(x: Tensor, m: Tensor) -> list[Tensor]:
    """Every op of the strong view on the float batch ``x`` (0..255), magnitude ``m`` ∈ [0, 1]
    per sample, with a random sign where the op has one."""
    b = x.shape[0]
    sign = torch.where(torch.rand(b, device=x.device) < 0.5, -1.0, 1.0)
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    auto = ((x - lo) * 255 / (hi - lo).clamp_min(1)).clamp(0, 255)
    factor = 1 + 0.9 * m * sign
    grey = x.mean(dim=(1, 2, 3), keepdim=True)
    solar = torch.where(x >= _per_sample(256 - 256 * m), 255 - x, x)
    bits = (8 - torch.round(4 * m)).to(torch.int64)
    step = _per_sample(2.0 ** (8 - bits)).to(x.dtype)
    poster = torch.floor(x / step) * step
    angle = math.radians(30) * m * sign
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(m)
    rot = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    one = torch.ones_like(m)
    shear = torch.stack(
        [torch.stack([one, 0.3 * m * sign, zero], 1), torch.stack([zero, one, zero], 1)], 1
    )
    shift = torch.stack(
        [torch.stack([one, zero, 0.6 * m * sign], 1), torch.stack([zero, one, zero], 1)], 1
    )
    return [
        auto,
        _blend(x, torch.zeros_like(x), factor),  # brightness
        _blend(x, grey.expand_as(x), factor),  # contrast
        solar,
        poster,
        _affine(x, rot),
        _affine(x, shear),
        _affine(x, shift),  # translate (up to 30 % of the side)
    ]


def strong_view(x: Tensor, augment: BatchAugment | None, epoch: int) -> Tensor:
    """FixMatch's strong view of a uint8 image batch (see the module docstring)."""
    x = weak_view(x, augment, epoch)
    out = x.float()
    for _ in range(STRONG_OPS):
        b = out.shape[0]
        m = torch.rand(b, device=out.device)
        which = torch.randint(0, 8, (b,), device=out.device)
        ops = torch.stack(_ops(out, m))  # [ops, B, C, H, W]
        out = ops[which, torch.arange(b, device=out.device)]
    return cutout_batch(out.round().to(torch.uint8), STRONG_CUTOUT)


def noise_view(x: Tensor, sigma: float = 0.1, drop: float = 0.1) -> Tensor:
    """x + σ·ε with a fraction ``drop`` of the values zeroed: a second view of float data."""
    noisy = x + sigma * torch.randn(x.shape, device=x.device).to(x.dtype)
    keep = torch.rand(x.shape, device=x.device) >= drop
    return noisy * keep
