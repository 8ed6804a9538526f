"""The dataset registry: names -> readers, and the two entry points that split what they read.

``load_dataset(name, ...)`` reads a registered dataset (or ``imagefolder:PATH`` / ``npz:PATH``),
splits it deterministically and caches the result in-process, so that a Ray worker running many
trials reads its data once. ``dataset_from_tensors`` does the same for arrays already in memory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tricksearch._recipe_data import parse_unlabeled
from tricksearch.data import _sources
from tricksearch.data._arrays import as_labels, as_samples, resize_uint8
from tricksearch.data._imagefolder import read_imagefolder
from tricksearch.data._npz import read_npz
from tricksearch.data._splits import (
    DatasetSplits,
    check_fractions,
    check_labeled_fraction,
    make_splits,
)
from tricksearch.data._unlabeled import pool_from_tensors, read_pool
from tricksearch.errors import ConfigError, ConfigTypeError, DataError

__all__ = ["clear_dataset_cache", "dataset_from_tensors", "list_datasets", "load_dataset"]


@dataclass(frozen=True)
class _Entry:
    description: str
    read: Callable[[str | None], _sources.RawDataset]


_REGISTRY: dict[str, _Entry] = {
    "digits": _Entry(
        "scikit-learn's bundled 8x8 handwritten digits: 1,797 images, 10 classes, 1 channel "
        "(no download)",
        lambda root: _sources.read_digits(),
    ),
    "fashion-mnist": _Entry(
        "Fashion-MNIST: 70,000 28x28 grayscale images, 10 classes; gzipped IDX files from "
        f"--data-root or {_sources.FASHION_MNIST_DEFAULT_ROOT} (apt-get install "
        "dataset-fashion-mnist); official test set",
        _sources.read_fashion_mnist,
    ),
    "mnist": _Entry(
        "MNIST: 70,000 28x28 grayscale digits; IDX files under --data-root DIR/MNIST/raw "
        "(torchvision layout); official test set",
        _sources.read_mnist,
    ),
    "cifar10": _Entry(
        "CIFAR-10: 60,000 32x32 RGB images, 10 classes; torchvision folder "
        "--data-root DIR/cifar-10-batches-py; official test set",
        lambda root: _sources.read_cifar("cifar10", root),
    ),
    "cifar100": _Entry(
        "CIFAR-100: 60,000 32x32 RGB images, 100 classes; torchvision folder "
        "--data-root DIR/cifar-100-python; official test set",
        lambda root: _sources.read_cifar("cifar100", root),
    ),
    "svhn": _Entry(
        "SVHN: 99,289 32x32 RGB house-number digits (train + test, not extra); "
        "--data-root DIR holding train_32x32.mat and test_32x32.mat; needs scipy",
        _sources.read_svhn,
    ),
}

_FORMS = {
    "imagefolder:PATH": "images in one sub-folder per class under PATH (torchvision ImageFolder "
    "layout), resized to a common size; PATH/train/CLASS + PATH/test/CLASS (or val) keeps that "
    "test split; --skip-corrupt skips unreadable files",
    "npz:PATH": "a .npz file with arrays x and y (optionally x_test, y_test); x: images "
    "(uint8 NCHW / NHWC / NHW, or float in [0, 1] NCHW / NHWC), float signals [N, C, L] or "
    "float feature vectors [N, F] (signals and features are standardised on the train split); "
    "an optional string array kind (image, signal, features) overrides the shape rule",
}


def list_datasets() -> dict[str, str]:
    """Every dataset name (and the ``imagefolder:``/``npz:`` forms) with a one-line description."""
    return {**{k: e.description for k, e in _REGISTRY.items()}, **_FORMS}


def _known_names() -> str:
    return ", ".join([*_REGISTRY, *_FORMS])


def _normalize_name(name: Any) -> str:
    if not isinstance(name, str):
        raise ConfigTypeError(
            f"dataset must be a name (str), got {name!r} ({type(name).__name__}); "
            f"known: {_known_names()}"
        )
    prefix, sep, rest = name.partition(":")
    if sep and prefix.strip().lower() in ("imagefolder", "npz"):
        if not rest:
            raise ConfigError(f"dataset {name!r}: missing PATH after '{prefix}:'")
        return f"{prefix.strip().lower()}:{rest}"
    key = name.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; known: {_known_names()}")
    return key


def _check_int(field: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{field} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ConfigError(f"{field} must be >= {minimum}, got {value!r}")


def load_dataset(
    name: str,
    *,
    data_root: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    skip_corrupt: bool = False,
    image_size: int | None = None,
    unlabeled: str | None = None,
    labeled_fraction: float = 1.0,
) -> DatasetSplits:
    """Read dataset ``name`` and split it into train / val / test, deterministically.

    ``name`` is one of :func:`list_datasets` or ``imagefolder:PATH`` / ``npz:PATH``. The split
    is stratified by class and seeded by ``split_seed``; sources with an official test set use
    it (``test_fraction`` is then ignored) and carve val out of train. ``image_size`` resizes
    every image to a square of that side (ImageFolder default: the first image's size).

    ``unlabeled`` (``imagefolder:PATH`` or ``npz:PATH``, see ``tricksearch.data._unlabeled``)
    reads an unlabelled pool into ``x_unlabeled``; ``labeled_fraction`` < 1 keeps that
    stratified fraction of the train split's labels (seeded by ``split_seed``) and moves the
    other train samples to ``x_unlabeled``, their labels dropped; val and test are unchanged.
    The result is cached in-process on all the arguments; its tensors are shared, so treat them
    as read-only.
    """
    key = _normalize_name(name)
    check_fractions(val_fraction, test_fraction, test_used=False)  # the sum: once read
    _check_int("split_seed", split_seed, 0)
    if image_size is not None:
        _check_int("image_size", image_size, 1)
    if not isinstance(skip_corrupt, bool):
        raise ConfigTypeError(f"skip_corrupt must be a bool, got {skip_corrupt!r}")
    if unlabeled is not None:
        parse_unlabeled(unlabeled)
    fraction = check_labeled_fraction(labeled_fraction)
    root = None if data_root is None else os.fspath(data_root)
    return _load_cached(
        key,
        root,
        float(val_fraction),
        float(test_fraction),
        split_seed,
        skip_corrupt,
        image_size,
        unlabeled,
        fraction,
    )


@functools.lru_cache(maxsize=8)
def _load_cached(
    key: str,
    data_root: str | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    skip_corrupt: bool,
    image_size: int | None,
    unlabeled: str | None,
    labeled_fraction: float,
) -> DatasetSplits:
    prefix, _, path = key.partition(":")
    if prefix == "imagefolder":
        raw = read_imagefolder(path, image_size=image_size, skip_corrupt=skip_corrupt)
    elif prefix == "npz":
        raw = read_npz(path)
    else:
        raw = _REGISTRY[key].read(data_root)
    if image_size is not None and raw.kind != "image":
        raise ConfigError(
            f"image_size: got {image_size!r}, but dataset {key!r} holds {raw.kind} data "
            f"(shape {tuple(raw.x.shape)}); image_size applies to images only"
        )
    if image_size is not None:
        raw.x = resize_uint8(raw.x, (image_size, image_size))
        if raw.x_test is not None:
            raw.x_test = resize_uint8(raw.x_test, (image_size, image_size))
    pool = None
    if unlabeled is not None:
        pool, pool_info = read_pool(
            unlabeled,
            like=tuple(raw.x.shape[1:]),
            kind=raw.kind,
            dataset=key,
            skip_corrupt=skip_corrupt,
            image_size=image_size,
        )
        skipped = [*raw.info.get("skipped_files", []), *pool_info.pop("skipped_files")]
        raw.info = {**raw.info, "skipped_files": skipped, "n_skipped": len(skipped)}
        raw.info["unlabeled"] = pool_info
    return make_splits(
        key,
        raw.x,
        raw.y,
        classes=raw.classes,
        x_test=raw.x_test,
        y_test=raw.y_test,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        info=raw.info,
        kind=raw.kind,
        x_unlabeled=pool,
        labeled_fraction=labeled_fraction,
    )


def clear_dataset_cache() -> None:
    """Forget every dataset :func:`load_dataset` has cached (e.g. after files changed on disk)."""
    _load_cached.cache_clear()


def _labels_in_range(name: str, labels: torch.Tensor, num_classes: int | None) -> int:
    """``num_classes`` (default: the largest label + 1), checked against the labels."""
    lo, hi = int(labels.min()), int(labels.max())
    if num_classes is None:
        num_classes = hi + 1
    else:
        _check_int("num_classes", num_classes, 1)
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"dataset {name!r}: labels must lie in 0..{num_classes - 1} "
            f"(num_classes={num_classes}), got {lo}..{hi}"
        )
    return num_classes


def dataset_from_tensors(
    x: Any,
    y: Any,
    *,
    name: str = "tensors",
    x_test: Any = None,
    y_test: Any = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    num_classes: int | None = None,
    kind: str | None = None,
    x_unlabeled: Any = None,
    labeled_fraction: float = 1.0,
) -> DatasetSplits:
    """Split arrays already in memory (torch tensors or numpy arrays) like :func:`load_dataset`.

    ``x`` holds images, 1-D signals or feature vectors; unless ``kind`` names it, the kind
    follows from the dtype and shape (``DatasetSplits.kind`` tells which was read):

    - integer (``uint8``) ``[N, C, H, W]``, ``[N, H, W, C]`` or ``[N, H, W]``, or float in
      ``[0, 1]`` ``[N, C, H, W]`` / ``[N, H, W, C]``: images, stored as ``uint8``;
    - float ``[N, C, L]``: signals (``[N, 1, L]`` is one channel, not a 1 x L image);
    - float ``[N, F]``: feature vectors.

    Signals and features stay float and are standardised per channel (per feature) with the
    train split's mean and std. ``kind="image"`` reads float grey images ``[N, H, W]``;
    ``kind="signal"`` also takes ``[N, L]`` (one channel). ``y`` holds integer labels in
    ``0..num_classes-1`` (``num_classes`` defaults to the largest label + 1). When
    ``x_test``/``y_test`` are given they are the test split and ``test_fraction`` is ignored.
    Any other layout (1-D, 5-D, NaN or inf values, non-numbers...) raises ``DataError`` naming
    the array, what it holds and what is allowed. ``x_unlabeled`` (samples of ``x``'s kind and
    shape, no labels; or ``imagefolder:PATH`` / ``npz:PATH``) is an unlabelled pool;
    ``labeled_fraction`` < 1 hides the labels of all but that stratified fraction of the train
    split (see :func:`load_dataset`). Not cached.
    """
    if (x_test is None) != (y_test is None):
        raise ConfigError("x_test and y_test must be given together (or neither)")
    check_fractions(val_fraction, test_fraction, test_used=False)  # the sum: in make_splits
    _check_int("split_seed", split_seed, 0)
    labeled_fraction = check_labeled_fraction(labeled_fraction)
    xs, kind = as_samples(x, f"dataset {name!r}: x", kind)
    pool = None
    if isinstance(x_unlabeled, str):
        pool, _ = read_pool(x_unlabeled, like=tuple(xs.shape[1:]), kind=kind, dataset=name)
    elif x_unlabeled is not None:
        pool = pool_from_tensors(x_unlabeled, xs, kind, name)
    noun = "images" if kind == "image" else "samples"
    ys = as_labels(y, f"dataset {name!r}: y", len(xs), noun=noun)
    xt = yt = None
    if x_test is not None:
        xt, _ = as_samples(x_test, f"dataset {name!r}: x_test", kind)
        yt = as_labels(y_test, f"dataset {name!r}: y_test", len(xt), noun=noun)
        if xt.shape[1:] != xs.shape[1:]:
            raise DataError(
                f"dataset {name!r}: x_test has {kind} samples of shape {tuple(xt.shape[1:])} "
                f"but x has {tuple(xs.shape[1:])}; both must have the same shape after N"
            )
    labels = ys if yt is None else torch.cat([ys, yt])
    num_classes = _labels_in_range(name, labels, num_classes)
    return make_splits(
        name,
        xs,
        ys,
        classes=[str(i) for i in range(num_classes)],
        x_test=xt,
        y_test=yt,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        info={"source": "tensors"},
        kind=kind,
        x_unlabeled=pool,
        labeled_fraction=labeled_fraction,
    )
