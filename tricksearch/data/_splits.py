"""The split dataset every stage trains on, and the deterministic stratified split that makes it.

A :class:`DatasetSplits` holds three disjoint parts (train / val / test) as CPU tensors, the
class names, the data kind and the per-channel ``mean`` and ``std`` that
:func:`tricksearch.data.loader.to_float` normalizes with:

- images (``kind="image"``): ``uint8`` NCHW; ``mean``/``std`` are those of the training images
  scaled to [0, 1], applied to every batch;
- signals (``"signal"``, float32 ``[N, C, L]``) and feature vectors (``"features"``, float32
  ``[N, F]``): standardised once, when split, per channel (signals: over samples and positions;
  features: per feature) with the training split's mean and std, the same numbers for val and
  test; those numbers are kept in ``info["standardization"]`` and ``mean``/``std`` are then 0
  and 1 (nothing left to do per batch).

The search only ever looks at ``val``; ``test`` is read once, for the winner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from tricksearch.data._kinds import check_kind
from tricksearch.errors import ConfigError, ConfigTypeError, DataError

__all__ = [
    "DatasetSplits",
    "check_fractions",
    "check_labeled_fraction",
    "labeled_subset",
    "make_splits",
    "standardize",
    "stratified_indices",
]

#: Dimensions of the stored tensors for each kind.
_NDIM = {"image": 4, "signal": 3, "features": 2}


@dataclass
class DatasetSplits:
    """A dataset split into train / val / test, CPU tensors of one kind (image, signal, features).

    ``kind`` ``"image"``: ``uint8`` ``[N, C, H, W]``; ``"signal"``: float32 ``[N, C, L]``;
    ``"features"``: float32 ``[N, F]`` (see the module docstring). The tensors are shared by
    every caller of :func:`tricksearch.data.load_dataset` (which caches them in-process): treat
    them as read-only.
    """

    name: str
    x_train: Tensor = field(repr=False)
    y_train: Tensor = field(repr=False)
    x_val: Tensor = field(repr=False)
    y_val: Tensor = field(repr=False)
    x_test: Tensor = field(repr=False)
    y_test: Tensor = field(repr=False)
    num_classes: int
    classes: list[str] = field(repr=False)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict, repr=False)
    kind: str = "image"
    #: Training samples without labels (same dtype and sample shape as ``x_train``), for the
    #: semi-supervised tricks; None when the dataset has none.
    x_unlabeled: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_kind(self.kind, f"dataset {self.name!r}: kind")
        if self.x_unlabeled is not None and (
            self.x_unlabeled.dtype != self.x_train.dtype
            or self.x_unlabeled.shape[1:] != self.x_train.shape[1:]
        ):
            raise DataError(
                f"dataset {self.name!r}: x_unlabeled must be {self.x_train.dtype} samples of "
                f"shape {tuple(self.x_train.shape[1:])} like x_train, got "
                f"{self.x_unlabeled.dtype} of shape {tuple(self.x_unlabeled.shape)}"
            )
        for part in ("train", "val", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            dtype_ok = x.dtype == torch.uint8 if self.kind == "image" else x.is_floating_point()
            if not dtype_ok or x.ndim != _NDIM[self.kind]:
                raise DataError(
                    f"dataset {self.name!r}: x_{part} of {self.kind} data must be "
                    f"{_stored_layout(self.kind)}, got {x.dtype} of shape {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
                raise DataError(
                    f"dataset {self.name!r}: y_{part} must be an int64 [N] tensor with N = "
                    f"{len(x)}, got {y.dtype} of shape {tuple(y.shape)}"
                )
            if x.shape[1:] != self.x_train.shape[1:]:
                raise DataError(
                    f"dataset {self.name!r}: x_{part} has samples of shape "
                    f"{tuple(x.shape[1:])}, x_train has {tuple(self.x_train.shape[1:])}"
                )
        if len(self.classes) != self.num_classes:
            raise DataError(
                f"dataset {self.name!r}: {len(self.classes)} class names for "
                f"num_classes={self.num_classes}"
            )

    @property
    def channels(self) -> int:
        """Input channels: image channels (1 grey, 3 RGB), signal channels ``C``, or for feature
        vectors the number of features ``F`` (each feature is a channel of length 1)."""
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """Image height and width in pixels; ``(1, L)`` for signals, ``(1, 1)`` for features.

        So ``channels * height * width`` is the number of inputs of every kind (what ``mlp``
        flattens).
        """
        if self.kind == "image":
            return int(self.x_train.shape[2]), int(self.x_train.shape[3])
        return 1, self.length or 1

    @property
    def length(self) -> int | None:
        """Samples per signal channel ``L``; 1 for feature vectors; None for images."""
        if self.kind == "image":
            return None
        return int(self.x_train.shape[2]) if self.kind == "signal" else 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample: ``(C, H, W)``, ``(C, L)`` or ``(F,)``."""
        return tuple(int(v) for v in self.x_train.shape[1:])

    @property
    def unlabeled_count(self) -> int:
        """How many unlabelled training samples the dataset has (0 when none)."""
        return 0 if self.x_unlabeled is None else len(self.x_unlabeled)

    def class_counts(self) -> Tensor:
        """Training samples per class, as a float tensor of length ``num_classes``."""
        return torch.bincount(self.y_train, minlength=self.num_classes).float()

    def summary(self) -> str:
        """One line for logs and the CLI: name, sizes, shape, classes."""
        if self.kind == "image":
            c, (h, w) = self.channels, self.image_size
            shape = f"{c}x{h}x{w} uint8"
        elif self.kind == "signal":
            shape = f"signals {self.channels}x{self.length} float (standardised on train)"
        else:
            shape = f"{self.channels} features float (standardised on train)"
        kept = self.info.get("labeled_fraction", 1.0)
        labels = f" ({kept:.0%} of its labels kept)" if kept < 1.0 else ""
        pool = f", unlabeled {self.unlabeled_count}" if self.x_unlabeled is not None else ""
        return (
            f"{self.name}: train {len(self.y_train)}{labels}, val {len(self.y_val)}, "
            f"test {len(self.y_test)}{pool}; {shape}; {self.num_classes} classes"
        )


def _stored_layout(kind: str) -> str:
    return {
        "image": "a uint8 [N, C, H, W] tensor",
        "signal": "a float [N, C, L] tensor",
        "features": "a float [N, F] tensor",
    }[kind]


def check_fractions(val_fraction: float, test_fraction: float, *, test_used: bool = True) -> None:
    """Refuse split fractions outside ``0 <= val < 1``, ``0 < test < 1``, ``val + test < 1``.

    ``test_used`` is False for sources with their own test set, where ``test_fraction`` is
    ignored and so is not added to ``val_fraction``.
    """
    for fname, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(
                f"{fname} must be a number, got {value!r} ({type(value).__name__})"
            )
        if not math.isfinite(value):
            raise ConfigError(f"{fname} must be finite, got {value!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must satisfy 0 <= val_fraction < 1, got {val_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(
            f"test_fraction must satisfy 0 < test_fraction < 1, got {test_fraction!r}"
        )
    if test_used and val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1 (something must be left to train on), "
            f"got val_fraction={val_fraction!r} + test_fraction={test_fraction!r}"
        )


def check_labeled_fraction(value: float, where: str = "labeled_fraction") -> float:
    """``value`` as a float in ``(0, 1]``, or a one-line error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigTypeError(f"{where}: got {value!r}, expected a number in (0, 1].")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ConfigError(f"{where}: got {value!r}, expected a number in (0, 1].")
    return float(value)


def labeled_subset(y: Tensor, fraction: float, *, seed: int) -> tuple[Tensor, Tensor]:
    """``(kept, hidden)``: sorted indices of ``y`` whose labels are kept, and the others.

    A stratified fraction ``fraction`` of every class is kept (:func:`stratified_indices` with
    ``1 - fraction`` hidden: ``round(N * (1 - fraction))`` hidden in all, spread over the classes
    by largest remainder; every class keeps at least one sample), deterministic in ``seed``.
    Choosing which labels to keep reads every label once (to count each class); the hidden ones
    are dropped by the caller and never stored.
    """
    if fraction >= 1.0:
        return torch.arange(len(y)), torch.zeros(0, dtype=torch.int64)
    hidden, kept = stratified_indices(y, (1.0 - fraction,), seed=seed)
    return kept, hidden


def _allocate(counts: list[int], taken: list[int], frac: float, gen: torch.Generator) -> list[int]:
    """Samples per class for one part: ``round(N * frac)`` in total, spread in proportion.

    Each class first gets ``floor(n_c * frac)``; the rest go one by one to the classes with the
    largest remainders (ties broken by the seeded generator), as in scikit-learn's stratified
    splits. A class never gives up its last sample not yet taken (train keeps one of each).
    """
    total = sum(counts)
    avail = [max(n - t - 1, 0) for n, t in zip(counts, taken, strict=True)]
    desired = [n * frac for n in counts]
    take = [min(math.floor(d), a) for d, a in zip(desired, avail, strict=True)]
    short = min(math.floor(total * frac + 0.5), sum(avail)) - sum(take)
    tiebreak = torch.rand(len(counts), generator=gen).tolist()
    order = sorted(range(len(counts)), key=lambda c: (take[c] - desired[c], tiebreak[c]))
    while short > 0:
        for c in order:
            if short > 0 and take[c] < avail[c]:
                take[c] += 1
                short -= 1
    return take


def stratified_indices(y: Tensor, fractions: tuple[float, ...], *, seed: int) -> tuple[Tensor, ...]:
    """Split the indices of ``y`` class by class into ``len(fractions) + 1`` disjoint parts.

    Part ``k`` (for ``k < len(fractions)``) gets ``round(N * fractions[k])`` samples, spread over
    the classes in proportion to their sizes (:func:`_allocate`); the last part (train) gets the
    rest, and always at least one sample of every class present. The shuffle uses a
    ``torch.Generator`` seeded with ``seed``, so the same labels and seed give the same split on
    every machine. Each part is sorted ascending.
    """
    gen = torch.Generator().manual_seed(int(seed))
    per_class = []
    for cls in torch.unique(y).tolist():
        idx = torch.nonzero(y == cls, as_tuple=False).flatten()
        per_class.append(idx[torch.randperm(len(idx), generator=gen)])
    counts = [len(idx) for idx in per_class]
    taken = [0] * len(counts)
    parts: list[list[Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for k, frac in enumerate(fractions):
        take = _allocate(counts, taken, frac, gen)
        for c, idx in enumerate(per_class):
            parts[k].append(idx[taken[c] : taken[c] + take[c]])
            taken[c] += take[c]
    for c, idx in enumerate(per_class):
        parts[-1].append(idx[taken[c] :])
    return tuple(
        torch.sort(torch.cat(p))[0] if p else torch.zeros(0, dtype=torch.int64) for p in parts
    )


def _channel_stats(x: Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``x / 255``, in float64, chunked over N."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = max(len(x) * x.shape[2] * x.shape[3], 1)
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant channel: do not divide by 0
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _float_stats(x: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor, list[int]]:
    """Per-channel mean and (population) std of float ``[N, C, L]`` or ``[N, F]`` data.

    Signals: over samples and positions; features: over samples. Float64, two passes (exact
    for a constant channel), chunked over N. A constant channel (std 0, or below 1e-9 of its
    mean: rounding) gets std 1 so that nothing is divided by zero; its indices are returned too.
    """
    dims = (0, 2) if x.ndim == 3 else (0,)
    view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = max(x.numel() // x.shape[1], 1)
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), chunk):
        total += x[start : start + chunk].to(torch.float64).sum(dim=dims)
    mean = total / count
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        dev = x[start : start + chunk].to(torch.float64) - mean.view(view)
        squares += (dev * dev).sum(dim=dims)
    std = (squares / count).sqrt()
    constant = (std == 0) | (std <= 1e-9 * mean.abs())
    std = torch.where(constant, torch.ones_like(std), std)
    return mean, std, torch.nonzero(constant).flatten().tolist()


def standardize(x: Tensor, mean: Tensor, std: Tensor, chunk: int = 8192) -> Tensor:
    """``(x - mean) / std`` per channel (dim 1), computed in float64, returned as float32."""
    view = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    m, s = mean.to(torch.float64).view(view), std.to(torch.float64).view(view)
    out = torch.empty(x.shape, dtype=torch.float32)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64)
        out[start : start + chunk] = ((part - m) / s).to(torch.float32)
    return out


def _normalise_parts(
    kind: str, x_train: Tensor, others: tuple[Tensor, ...]
) -> tuple[tuple[Tensor, ...], tuple[float, ...], tuple[float, ...], dict[str, Any]]:
    """The stored parts (train first), ``mean``/``std`` for ``to_float`` and info entries.

    Images stay ``uint8`` (normalised per batch with the train images' statistics); signals and
    features are standardised here with the train split's statistics (see the module docstring).
    """
    if kind == "image":
        mean, std = _channel_stats(x_train)
        return (x_train, *others), mean, std, {}
    m, s, constant = _float_stats(x_train)
    parts = tuple(standardize(x, m, s) for x in (x_train, *others))
    stats = {
        "mean": [float(v) for v in m],
        "std": [float(v) for v in s],
        "computed_on": "train",
        "per": "channel" if kind == "signal" else "feature",
        "constant_channels": constant,
    }
    c = x_train.shape[1]
    return parts, (0.0,) * c, (1.0,) * c, {"standardization": stats}


def make_splits(
    name: str,
    x: Tensor,
    y: Tensor,
    *,
    classes: list[str],
    x_test: Tensor | None = None,
    y_test: Tensor | None = None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    info: dict[str, Any] | None = None,
    kind: str = "image",
    x_unlabeled: Tensor | None = None,
    labeled_fraction: float = 1.0,
) -> DatasetSplits:
    """Cut ``x``/``y`` into train / val (/ test unless the source brings its own test set).

    ``x`` and ``x_test`` are ``uint8`` NCHW images or, for ``kind`` ``"signal"`` /
    ``"features"``, float ``[N, C, L]`` / ``[N, F]`` (standardised here with the train split's
    statistics); ``y`` and ``y_test`` are ``int64`` labels in ``0..len(classes)-1``. The
    fractions are checked here (their sum only when test is cut).

    ``x_unlabeled`` (samples of the same kind and shape, no labels) is the unlabelled pool;
    ``labeled_fraction`` < 1 keeps that stratified fraction of the train split's labels
    (:func:`labeled_subset`, seeded by ``split_seed``) and appends the other train samples to
    the pool, their labels dropped. Statistics are those of the labelled train samples.
    """
    check_kind(kind, "kind")
    present = torch.unique(y).tolist() if len(y) else []
    if len(present) < 2:
        found = ", ".join(repr(classes[i]) if i < len(classes) else str(i) for i in present)
        raise DataError(
            f"dataset {name!r}: the labels hold {len(present)} class(es) ({found or 'none'}); "
            "a classifier needs at least 2: check the labels, or the folder's class subfolders."
        )
    official_test = x_test is not None and y_test is not None
    check_fractions(val_fraction, test_fraction, test_used=not official_test)
    if x_test is not None and y_test is not None:
        val_idx, train_idx = stratified_indices(y, (val_fraction,), seed=split_seed)
        xt, yt = x_test, y_test
    else:
        test_idx, val_idx, train_idx = stratified_indices(
            y, (test_fraction, val_fraction), seed=split_seed
        )
        xt, yt = x[test_idx], y[test_idx]
    if len(train_idx) == 0 or len(yt) == 0:
        raise DataError(
            f"dataset {name!r}: {len(y)} samples are too few to split into train "
            f"({len(train_idx)}) and test ({len(yt)})"
        )
    labeled_fraction = check_labeled_fraction(labeled_fraction)
    kept, hidden = labeled_subset(y[train_idx], labeled_fraction, seed=split_seed)
    train_idx, hidden_idx = train_idx[kept], train_idx[hidden]
    pool = [p for p in (x_unlabeled, x[hidden_idx] if len(hidden_idx) else None) if p is not None]
    others = (x[val_idx], xt, *([torch.cat(pool)] if pool else []))
    (x_train, x_val, xt, *x_unl), mean, std, extra = _normalise_parts(kind, x[train_idx], others)
    meta = dict(info or {})
    meta.setdefault("skipped_files", [])
    meta.setdefault("n_skipped", len(meta["skipped_files"]))
    meta.update(
        split_seed=int(split_seed),
        val_fraction=float(val_fraction),
        test_fraction=None if official_test else float(test_fraction),
        official_test=official_test,
        **extra,
    )
    if labeled_fraction < 1.0:
        meta["labeled_fraction"] = labeled_fraction
    return DatasetSplits(
        name=name,
        x_train=x_train.contiguous(),
        y_train=y[train_idx].contiguous(),
        x_val=x_val.contiguous(),
        y_val=y[val_idx].contiguous(),
        x_test=xt.contiguous(),
        y_test=yt.contiguous(),
        num_classes=len(classes),
        classes=list(classes),
        mean=mean,
        std=std,
        info=meta,
        kind=kind,
        x_unlabeled=x_unl[0].contiguous() if x_unl else None,
    )
