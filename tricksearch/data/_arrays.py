"""Turning user arrays into the layouts tricksearch trains on, and telling the data kinds apart.

Images become ``uint8`` NCHW; signals ``[N, C, L]`` and feature vectors ``[N, F]`` stay float
(standardised later, on the train split, by :func:`tricksearch.data._splits.make_splits`);
labels become int64. Shared by ``npz:PATH`` and :func:`tricksearch.data.dataset_from_tensors`.
Errors name the array (``what``), its shape or dtype, and the layouts that are accepted.

The kind of an array, unless the caller names it (:func:`as_samples`), follows from its dtype
and number of dimensions:

- integer (``uint8``, 0..255): images, ``[N, C, H, W]``, ``[N, H, W, C]`` or ``[N, H, W]``;
- float, 2-D ``[N, F]``: feature vectors;
- float, 3-D ``[N, C, L]``: 1-D signals (so ``[N, 1, L]`` is one signal channel, not a 1 x L
  image; float grey images ``[N, H, W]`` need ``kind="image"`` or a channel axis);
- float, 4-D: images with values in ``[0, 1]`` (NCHW or NHWC).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tricksearch.data._kinds import KIND_LAYOUTS, check_kind
from tricksearch.errors import DataError

__all__ = [
    "ACCEPTED",
    "as_float_samples",
    "as_labels",
    "as_samples",
    "as_uint8_images",
    "infer_kind",
    "remap_labels",
    "resize_uint8",
]

_LAYOUTS = "uint8 or float in [0, 1], shaped [N, C, H, W], [N, H, W, C] (C in 1, 3) or [N, H, W]"

#: Every layout the automatic rule accepts, for error messages.
ACCEPTED = (
    "float [N, F] (features), float [N, C, L] (signal), uint8 or float in [0, 1] "
    "[N, C, H, W] / [N, H, W, C] (image), uint8 [N, H, W] (grey image)"
)


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
        hint = "; integer signals [N, C, L]: pass floats or kind='signal'" * (len(shape) == 3)
        raise DataError(
            f"{what}: integer images must lie in 0..255, got values in [{lo}, {hi}]{hint}"
        )
    return x.to(torch.uint8).contiguous()


def infer_kind(x: Tensor, what: str) -> str:
    """The data kind of ``x`` by the rule of this module's docstring (dtype and dimensions).

    A layout the rule does not know (1-D, 5-D, integer ``[N, F]``...) raises ``DataError``
    naming ``what``, the shape and dtype received and every accepted layout.
    """
    floating = x.is_floating_point()
    if floating and x.ndim == 2:
        return "features"
    if floating and x.ndim == 3:
        return "signal"
    if x.ndim == 4 or (x.ndim == 3 and not floating):
        return "image"
    hint = "; integer [N, F] or [N, C, L] data: pass floats" if x.ndim in (2, 3) else ""
    raise DataError(
        f"{what}: shape {tuple(x.shape)} ({str(x.dtype).removeprefix('torch.')}) is not a "
        f"dataset layout; allowed: {ACCEPTED}{hint}"
    )


def _first_bad_sample(x: Tensor) -> int:
    """Index of the first sample holding a NaN or inf."""
    bad = (~torch.isfinite(x)).reshape(len(x), -1).any(dim=1)
    return int(torch.nonzero(bad)[0, 0])


def as_float_samples(value: Any, what: str, kind: str) -> Tensor:
    """Signals as float ``[N, C, L]`` (``[N, L]`` is one channel) or features as ``[N, F]``.

    Kept as float, never quantised: float64 stays float64 until it is standardised (so large
    offsets keep their precision), every other numeric type becomes float32. Empty arrays, NaN
    and inf are refused.
    """
    check_kind(kind, "kind")
    if kind == "image":
        raise DataError(f"{what}: images are read by as_uint8_images, not as float samples")
    x = _as_tensor(value, what)
    shape, layout = tuple(x.shape), KIND_LAYOUTS[kind]
    if kind == "signal":
        layout += " or [N, L] (one channel)"
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{what}: dtype {x.dtype} is not {kind} data; allowed: {layout}")
    if kind == "signal" and x.ndim == 2:
        x = x.unsqueeze(1)
    if x.ndim != (3 if kind == "signal" else 2):
        raise DataError(f"{what}: shape {shape} is not {kind} data; allowed: {layout}")
    if x.numel() == 0:
        raise DataError(f"{what}: shape {shape} holds no {kind} data; allowed: {layout}, no size 0")
    if x.dtype != torch.float64:
        x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise DataError(
            f"{what}: {int(torch.isnan(x).sum())} NaN and {int(torch.isinf(x).sum())} inf "
            f"value(s) in shape {shape} (first in sample {_first_bad_sample(x)}); allowed: "
            "finite numbers only (drop or impute those samples first)"
        )
    return x.contiguous()


def as_samples(value: Any, what: str, kind: str | None = None) -> tuple[Tensor, str]:
    """``(tensor, kind)``: images as ``uint8`` NCHW, signals and features as float.

    ``kind`` (``"image"``, ``"signal"``, ``"features"``) overrides the automatic rule of this
    module's docstring, e.g. ``kind="image"`` for float grey images ``[N, H, W]``.
    """
    if kind is not None:
        check_kind(kind, "kind")
    x = _as_tensor(value, what)
    kind = infer_kind(x, what) if kind is None else kind
    if kind == "image":
        return as_uint8_images(x, what), kind
    return as_float_samples(x, what, kind), kind


def as_labels(value: Any, what: str, n: int | None = None, *, noun: str = "images") -> Tensor:
    """Return labels as an ``int64`` ``[N]`` CPU tensor; refuse non-integer values.

    ``n`` is the number of samples the labels must match (``noun`` names them in the error).
    """
    y = _as_tensor(value, what)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels must be one-dimensional [N], got shape {tuple(y.shape)}")
    if n is not None and len(y) != n:
        raise DataError(f"{what}: {len(y)} labels for {n} {noun}")
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
