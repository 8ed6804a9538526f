"""Batched uint8 image ops with per-sample parameters, equal to torchvision's per-image ops.

Every op takes a uint8 batch [B, C, H, W] (C = 1 or 3) and its per-sample parameters as tensors
of length B on the batch's device, and returns a new uint8 batch equal to
``torchvision.transforms.v2.functional`` applied image by image with the same parameters
(``tests/tricks/test_batched_policies.py``). Bit-equality comes from repeating torchvision's
arithmetic in the same dtypes and order:

- ``image.mul(f)`` with a Python float is a float32 product with ``f`` rounded to float32; so is
  :func:`brightness` with the per-sample factor.
- torchvision's blends ``a.add_(b, alpha=r)`` are fused multiply-adds (one rounding to float32).
  Here they are computed in float64, where product and sum are exact for uint8 data, and rounded
  once to float32: the fused result on any device (a double rounding could differ with
  probability ~2⁻²⁹ per pixel, for contrast's non-integer mean only). One exception on the CPU:
  torchvision's contrast blends with a scalar mean, and that kernel computes the last (< 32)
  elements of each image without FMA, so :func:`contrast` can differ there by 1 level (~1 pixel
  in 10⁴ images, odd sizes only).
- geometric ops: torchvision's inverse affine matrix (:func:`inverse_affine_matrix`, computed in
  Python floats as torchvision does, then float32), its ``_affine_grid`` (pixel-centre base grid,
  ``theta`` divided by half the size, one ``bmm``) per sample, ``grid_sample`` with zero padding,
  rounded back to uint8. torchvision's fast paths of ``rotate`` (0°, 180°, 90°/270° on squares)
  give the same pixels as the grid, so no special case is needed.

No op reads a tensor's value on the host: on CUDA there is no synchronisation.
"""

from __future__ import annotations

import math
import struct

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "affine",
    "autocontrast",
    "box_mask",
    "brightness",
    "contrast",
    "equalize",
    "erasing_boxes",
    "integers",
    "inverse_affine_matrix",
    "invert",
    "posterize",
    "saturation",
    "sharpness",
    "solarize",
    "uniform",
]


# --------------------------------------------------------------------------------------------
# Random draws: from ``generator`` when given (it must live on ``device``), else from torch's
# default generator of ``device`` (seeded for every device by ``torch.manual_seed``).


def uniform(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """U[0, 1) float32 of ``shape`` drawn on ``device``."""
    return torch.rand(shape, device=device, generator=generator)


def integers(
    high: int, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """Uniform int64 in ``[0, high)`` of ``shape`` drawn on ``device``."""
    return torch.randint(high, shape, device=device, generator=generator)


def _per(t: Tensor) -> Tensor:
    return t.view(-1, 1, 1, 1)


# --------------------------------------------------------------------------------------------
# Geometric ops


def inverse_affine_matrix(
    center: list[float], angle: float, translate: list[float], shear: list[float]
) -> list[float]:
    """torchvision's ``_get_inverse_affine_matrix`` at scale 1 (Python floats, same order)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    cos_sy, tan_sx, rot_minus_sy = math.cos(sy), math.tan(sx), rot - sy
    a = math.cos(rot_minus_sy) / cos_sy
    b = -(a * tan_sx + math.sin(rot))
    c = math.sin(rot_minus_sy) / cos_sy
    d = math.cos(rot) - c * tan_sx
    matrix = [d / 1.0, -b / 1.0, 0.0, -c / 1.0, a / 1.0, 0.0]
    matrix[2] += cx - matrix[0] * (cx + tx) - matrix[1] * (cy + ty)
    matrix[5] += cy - matrix[3] * (cx + tx) - matrix[4] * (cy + ty)
    return matrix


def affine(x: Tensor, theta: Tensor, mode: str = "nearest") -> Tensor:
    """Warp each image by its inverse matrix ``theta`` [B, 2, 3] (float32, torchvision's
    convention: output pixel centre relative to the image centre → input position), fill 0."""
    b, _, h, w = x.shape
    dev = x.device
    base = torch.empty(1, h, w, 3, device=dev)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=dev))
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=dev)
    base[..., 1].copy_(ys.unsqueeze_(-1))
    base[..., 2].fill_(1)
    scaled = theta.transpose(1, 2).clone()  # torchvision: theta.T / [w/2, h/2] in float32
    scaled[..., 0].div_(0.5 * w)
    scaled[..., 1].div_(0.5 * h)
    grid = base.view(1, h * w, 3).expand(b, -1, -1).bmm(scaled).view(b, h, w, 2)
    out = F.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.round_().to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Colour ops (``factor``: float64 per sample, as the Python float torchvision receives)


def _fma(p: Tensor, other: Tensor, alpha: Tensor | float) -> Tensor:
    """float32 ``p + alpha·other`` with one rounding (torchvision's ``add_(…, alpha=)``); the
    float64 product and sum are exact."""
    if isinstance(alpha, float):
        return torch.add(p.double(), other.double(), alpha=alpha).float()
    return torch.addcmul(p.double(), other.double(), alpha.double()).float()


def _f32(v: float) -> float:
    """``v`` rounded to float32, as a kernel rounds a Python scalar for a float32 tensor."""
    return struct.unpack("f", struct.pack("f", v))[0]


#: The grey weights (R, G, B) of torchvision's ``rgb_to_grayscale``, rounded to float32.
_GREY = (0.2989, _f32(0.587), _f32(0.114))


def _grey(x: Tensor) -> Tensor:
    """torchvision's float grey level [B, 1, H, W]: 0.2989 R + 0.587 G + 0.114 B, fused adds."""
    r, g, b = x.unbind(1)
    grey = _fma(r.float() * _GREY[0], g, _GREY[1])
    return _fma(grey, b, _GREY[2]).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``_blend``: ``x·f + other·(1 − f)`` (fused), clamped, truncated to uint8."""
    p = x.float() * _per(factor.float())
    out = _fma(p, other, _per((1.0 - factor).float()))
    return out.clamp_(0, 255).to(torch.uint8)


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``adjust_brightness``: x·f, clamped."""
    return (x.float() * _per(factor.float())).clamp_(0, 255).to(torch.uint8)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    """``adjust_saturation``: blend with the floored grey image; grey images are unchanged."""
    if x.shape[1] == 1:
        return x.clone()
    return _blend(x, _grey(x).floor_(), factor)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    """``adjust_contrast``: blend with the mean of the (floored) grey image."""
    grey = _grey(x).floor_() if x.shape[1] == 3 else x.float()
    return _blend(x, grey.mean(dim=(-3, -2, -1), keepdim=True), factor)


def sharpness(x: Tensor, factor: Tensor) -> Tensor:
    """``adjust_sharpness``: blend the inner pixels with the rounded 3×3 smoothing (1s, 5 in the
    middle, /13); images of side ≤ 2 are unchanged."""
    h, w = x.shape[-2:]
    if h <= 2 or w <= 2:
        return x.clone()
    # torchvision rounds a float32 convolution; the exact k/13 is never within 1/26 of a
    # half-integer, so the integer rounding of (8 neighbours + 5 x centre)/13 is the same.
    xi = x.to(torch.int32)
    total = 4 * xi[..., 1:-1, 1:-1]
    for dy in range(3):
        for dx in range(3):
            total += xi[..., dy : dy + h - 2, dx : dx + w - 2]
    blurred = torch.div(2 * total + 13, 26, rounding_mode="floor")
    out = x.float()
    inner = out[..., 1:-1, 1:-1]
    inner.copy_(_fma(inner, blurred - inner, _per((1.0 - factor).float())))
    return out.clamp_(0, 255).to(torch.uint8)


def posterize(x: Tensor, mask: Tensor) -> Tensor:
    """``posterize``: keep the high bits, ``mask`` (uint8 per sample) = the bits kept."""
    return x & _per(mask)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """``solarize``: invert the pixels ≥ ``threshold`` (float32 per sample, compared in float32
    as torchvision compares a uint8 image with a Python float)."""
    return torch.where(x.float() >= _per(threshold), x.bitwise_not(), x)


def invert(x: Tensor) -> Tensor:
    """``invert``: 255 − x."""
    return x.bitwise_not()


def autocontrast(x: Tensor) -> Tensor:
    """``autocontrast``: stretch each channel of each image to 0..255 (flat channels kept)."""
    f = x.float()
    lo = f.amin(dim=(-2, -1), keepdim=True)
    hi = f.amax(dim=(-2, -1), keepdim=True)
    flat = hi == lo
    scale = (hi - lo).mul_(1.0 / 255)
    lo = torch.where(flat, 0.0, lo)
    scale = torch.where(flat, 1.0, scale)
    return f.sub_(lo).div_(scale).clamp_(0, 255).to(torch.uint8)


def equalize(x: Tensor) -> Tensor:
    """``equalize``: PIL's histogram equalisation of each channel of each image, with one
    batched histogram (``scatter_add_`` over rows of 256 bins)."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256, dtype=torch.int32, device=x.device)
    hist.scatter_add_(1, flat, torch.ones(1, dtype=torch.int32, device=x.device).expand_as(flat))
    cum = hist.cumsum(dim=1)
    top = cum.argmax(dim=1, keepdim=True)  # the last non-empty bin
    step = torch.div(h * w - hist.gather(1, top), 255, rounding_mode="floor")
    lut = torch.div(cum[:, :-1] + step // 2, step.clamp(min=1), rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut.clamp_(0, 255)], dim=1).to(torch.uint8)
    out = lut.gather(1, flat).view_as(x)
    return torch.where((step != 0).view(b, c, 1, 1), out, x)


# --------------------------------------------------------------------------------------------
# Rectangles (random erasing)


def box_mask(
    height: int, width: int, top: Tensor, left: Tensor, box_h: Tensor, box_w: Tensor
) -> Tensor:
    """Boolean mask [B, H, W], true inside each rectangle (rows ``top…top+box_h−1``, columns
    ``left…left+box_w−1``, clipped by the border; an empty box gives an empty mask)."""
    dev = top.device
    ys = torch.arange(height, device=dev)[None, :]
    xs = torch.arange(width, device=dev)[None, :]
    in_y = (ys >= top[:, None]) & (ys < (top + box_h)[:, None])
    in_x = (xs >= left[:, None]) & (xs < (left + box_w)[:, None])
    return in_y[:, :, None] & in_x[:, None, :]


def erasing_boxes(
    b: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    device: torch.device,
    generator: torch.Generator | None,
    attempts: int = 10,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``v2.RandomErasing``'s rectangle per image, batched: (top, left, box_h, box_w), int64 [B].

    torchvision tries up to 10 (area, log-aspect) pairs, uniform in ``scale``·H·W and
    log(``ratio``), and keeps the first with ``round(√(area·r)) < H`` and ``round(√(area/r)) <
    W``; the 10 attempts are drawn at once and the first valid one kept. With none valid the box
    is empty (torchvision then leaves the image as it is). The corner is uniform over the
    positions where the box fits.
    """
    u = uniform((b, attempts, 2), device, generator).double()
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    box_h = torch.sqrt(area * aspect).round_().long()
    box_w = torch.sqrt(area / aspect).round_().long()
    ok = (box_h < height) & (box_w < width)
    first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)  # first valid attempt (0 if none)
    found = ok.any(dim=1)
    box_h = torch.where(found, box_h.gather(1, first).squeeze(1), 0)
    box_w = torch.where(found, box_w.gather(1, first).squeeze(1), 0)
    corner = uniform((b, 2), device, generator).double()
    top = torch.minimum((corner[:, 0] * (height - box_h + 1)).long(), height - box_h)
    left = torch.minimum((corner[:, 1] * (width - box_w + 1)).long(), width - box_w)
    return top, left, box_h, box_w
