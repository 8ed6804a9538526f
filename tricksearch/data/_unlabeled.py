"""The unlabelled pool of the semi-supervised tricks: ``imagefolder:PATH`` or ``npz:PATH``.

``imagefolder:PATH``: every image file under PATH (recursively, no class folders needed), read
as ImageFolder datasets are (:mod:`tricksearch.data._imagefolder`) and converted to the labelled
images' channels and size. ``npz:PATH``: the file's array ``x_unlabeled``, in the layouts the
``npz:`` dataset reader takes for ``x``; its samples must have the labelled ones' shape. The
split (:func:`tricksearch.data._splits.make_splits`) appends the train samples whose labels
``labeled_fraction`` hides.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tricksearch._recipe_data import parse_unlabeled
from tricksearch.data._arrays import as_samples, resize_uint8
from tricksearch.data._imagefolder import read_image_pool
from tricksearch.data._npz import read_npz_unlabeled
from tricksearch.errors import DataError

__all__ = ["pool_from_tensors", "read_pool"]


def _check_shape(x: Tensor, like: tuple[int, ...], kind: str, what: str, dataset: str) -> Tensor:
    if tuple(x.shape[1:]) != tuple(like):
        layout = {"image": "(C, H, W)", "signal": "(C, L)", "features": "(F,)"}[kind]
        raise DataError(
            f"{what}: {kind} samples of shape {tuple(x.shape[1:])}, but dataset {dataset!r} has "
            f"{tuple(like)} {layout}; expected the same shape (channels and size)"
        )
    return x


def read_pool(
    spec: str,
    *,
    like: tuple[int, ...],
    kind: str,
    dataset: str,
    skip_corrupt: bool = False,
    image_size: int | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    """The pool ``spec`` names, as samples of shape ``like`` (the labelled samples' shape after
    any ``image_size`` resize) and ``kind``, and its info (``source``, ``count``, the files
    skipped). Missing or unreadable files, wrong shapes and a folder of images for signals or
    features raise one line naming ``unlabeled``, the value and what is expected."""
    prefix, path = parse_unlabeled(spec)
    what = f"unlabeled {spec!r}"
    skipped: list[str] = []
    if prefix == "imagefolder":
        if kind != "image":
            raise DataError(
                f"{what}: a folder of images cannot be the pool of dataset {dataset!r}, which "
                f"holds {kind} data of shape {tuple(like)}; expected npz:PATH with x_unlabeled"
            )
        x, skipped = read_image_pool(
            path, channels=like[0], size=(like[1], like[2]), skip_corrupt=skip_corrupt, label=what
        )
    else:
        x = read_npz_unlabeled(path, kind, what)
        if kind == "image" and image_size is not None and x.shape[1] == like[0]:
            x = resize_uint8(x, (image_size, image_size))
        _check_shape(x, like, kind, f"{what}: array 'x_unlabeled'", dataset)
    info = {"source": spec, "count": len(x), "skipped_files": skipped}
    return x, info


def pool_from_tensors(value: Any, like: Tensor, kind: str, dataset: str) -> Tensor:
    """``x_unlabeled`` given from Python, read as ``kind`` samples shaped like ``like``'s."""
    what = f"dataset {dataset!r}: x_unlabeled"
    x, _ = as_samples(value, what, kind)
    return _check_shape(x, tuple(like.shape[1:]), kind, what, dataset)
