"""Turning user arrays into the one layout tricksearch trains on: ``uint8`` NCHW and int64 labels.

Shared by ``npz:PATH`` and :func:`tricksearch.data.dataset_from_tensors`. Errors name the array
(``what``), its shape or dtype, and the layouts that are accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tricksearch.errors import DataError

__all__ = ["as_labels", "as_uint8_images", "remap_labels", "resize_uint8"]

_LAYOUTS = "uint8 or float in [0, 1], shaped [N, C, H, W], [N, H, W, C] (C in 1, 3) or [N, H, W]"


def _as_tensor(value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # any conversion failure is a data error
        raise DataError(f"{what}: cannot be read as an array ({exc})") from exc
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise DataError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def as_uint8_images(value: Any, what: str) -> Tensor:
    """Return images as a ``uint8`` ``[N, C, H, W]`` CPU tensor.

    Accepted layouts: NCHW, NHWC (detected when the last dim is 1 or 3 and dim 1 is not) and NHW
    (one channel). Floats must lie in ``[0, 1]`` and are scaled by 255 and rounded; integers
    must lie in ``0..255``.
    """
    x = _as_tensor(value, what)
    shape = tuple(x.shape)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
    else:
        raise DataError(f"{what}: shape {shape} is not an image batch; allowed: {_LAYOUTS}")
    if x.shape[0] == 0 or min(x.shape[1:]) == 0:
        raise DataError(f"{what}: shape {shape} holds no images; allowed: {_LAYOUTS}")
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.dtype == torch.bool:
        raise DataError(f"{what}: dtype bool is not an image type; allowed: {_LAYOUTS}")
    if x.is_floating_point():
        xf = x.to(torch.float64)
        if not bool(torch.isfinite(xf).all()):
            raise DataError(f"{what}: float images contain NaN or inf")
        lo, hi = float(xf.min()), float(xf.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{what}: float images must lie in [0, 1], got values in [{lo:g}, {hi:g}]; "
                "pass uint8 for 0..255 pixel values"
            )
        return (xf * 255.0).round_().to(torch.uint8).contiguous()
    if x.is_complex():
        raise DataError(f"{what}: dtype {x.dtype} is not an image type; allowed: {_LAYOUTS}")
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{what}: integer images must lie in 0..255, got values in [{lo}, {hi}]")
    return x.to(torch.uint8).contiguous()


def as_labels(value: Any, what: str, n: int | None = None) -> Tensor:
    """Return labels as an ``int64`` ``[N]`` CPU tensor; refuse non-integer values."""
    y = _as_tensor(value, what)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be one-dimensional [N], got shape {tuple(y.shape)}")
    if n is not None and len(y) != n:
        raise DataError(f"{what}: {len(y)} labels for {n} images")
    if y.is_floating_point():
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise DataError(f"{what}: labels must be integers, got non-integer {y.dtype} values")
    elif y.dtype == torch.bool or y.is_complex():
        raise DataError(f"{what}: labels must be integers, got dtype {y.dtype}")
    return y.to(torch.int64).contiguous()


def remap_labels(*parts: Tensor) -> tuple[list[str], tuple[Tensor, ...]]:
    """Map the distinct label values of all ``parts`` to ``0..K-1`` in sorted order.

    Returns the original values as class names, and each part relabelled.
    """
    values = torch.unique(torch.cat(parts))
    names = [str(v) for v in values.tolist()]
    return names, tuple(torch.searchsorted(values, p) for p in parts)


def resize_uint8(x: Tensor, size: tuple[int, int], chunk: int = 4096) -> Tensor:
    """Resize ``uint8`` NCHW images (bilinear, antialiased when shrinking), chunked over N."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    out = torch.empty((x.shape[0], x.shape[1], *size), dtype=torch.uint8)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].float()
        part = F.interpolate(part, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[start : start + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out
