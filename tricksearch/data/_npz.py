"""``npz:PATH``: arrays ``x`` and ``y`` (optionally ``x_test``, ``y_test``, ``kind``) in one file.

``x`` may hold images, 1-D signals or feature vectors; which one follows from its dtype and
shape (the rule of :mod:`tricksearch.data._arrays`), or from an optional string array ``kind``
(``np.savez(path, x=x, y=y, kind="image")``, e.g. for float grey images ``[N, H, W]``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from tricksearch.data._arrays import as_labels, as_samples, remap_labels
from tricksearch.data._kinds import DATA_KINDS
from tricksearch.data._sources import RawDataset
from tricksearch.errors import DataError

__all__ = ["read_npz", "read_npz_unlabeled"]


def _load(file: Path, label: str) -> dict[str, np.ndarray]:
    if not file.is_file():
        raise DataError(f"{label}: file {file} does not exist")
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{label}: cannot read {file} as .npz ({exc})") from exc


def _read_arrays(file: Path, label: str) -> dict[str, np.ndarray]:
    arrays = _load(file, label)
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{label}: missing array(s) {', '.join(missing)}; found {sorted(arrays)}; "
            "expected x and y, optionally x_test and y_test (and kind)"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(
            f"{label}: x_test and y_test must be given together, found {sorted(arrays)}"
        )
    return arrays


def _kind_of(arrays: dict[str, np.ndarray], label: str) -> str | None:
    """The ``kind`` array's value (a string among the data kinds), or None when absent."""
    if "kind" not in arrays:
        return None
    raw: Any = arrays["kind"]
    value = raw.item() if raw.ndim == 0 and raw.dtype.kind == "U" else None
    if value not in DATA_KINDS:
        raise DataError(
            f"{label}: array 'kind' holds {raw!r}; allowed: one string among "
            f"{', '.join(DATA_KINDS)} (np.savez(..., kind='signal'))"
        )
    return value


def read_npz(path: str) -> RawDataset:
    """Arrays ``x`` and ``y`` (optionally ``x_test`` and ``y_test``) from an ``.npz`` file.

    Images as accepted by :func:`tricksearch.data._arrays.as_uint8_images`; float signals
    ``[N, C, L]`` and feature vectors ``[N, F]`` are kept as float (the split standardises
    them). Labels of any integer values are remapped to ``0..K-1`` in sorted order (the
    original values become the class names).
    """
    file = Path(path).expanduser()
    label = f"dataset 'npz:{path}'"
    arrays = _read_arrays(file, label)
    x, kind = as_samples(arrays["x"], f"{label}: array 'x'", _kind_of(arrays, label))
    noun = "images" if kind == "image" else "samples"
    y = as_labels(arrays["y"], f"{label}: array 'y'", len(x), noun=noun)
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, _ = as_samples(arrays["x_test"], f"{label}: array 'x_test'", kind)
        y_test = as_labels(arrays["y_test"], f"{label}: array 'y_test'", len(x_test), noun=noun)
        if x_test.shape[1:] != x.shape[1:]:
            layout = {"image": "(C, H, W)", "signal": "(C, L)", "features": "(F,)"}[kind]
            raise DataError(
                f"{label}: array 'x_test' has {kind} samples of shape {tuple(x_test.shape[1:])} "
                f"{layout} but 'x' has {tuple(x.shape[1:])}"
            )
        classes, (y, y_test) = remap_labels(y, y_test)
    else:
        classes, (y,) = remap_labels(y)
    info: dict[str, Any] = {"source": str(file)}
    if classes != [str(i) for i in range(len(classes))]:
        info["notes"] = [
            f"{label}: labels {{{', '.join(classes)}}} renumbered 0..{len(classes) - 1} in sorted "
            "order (the class names keep the original values)"
        ]
    return RawDataset(
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        classes=classes,
        info=info,
        kind=kind,
    )


def read_npz_unlabeled(path: str, kind: str, label: str) -> Tensor:
    """The array ``x_unlabeled`` of an ``.npz`` file as ``kind`` samples (the layouts of
    :func:`read_npz`'s ``x``); a missing file or array raises ``DataError`` naming ``label``."""
    file = Path(path).expanduser()
    arrays = _load(file, label)
    if "x_unlabeled" not in arrays:
        raise DataError(
            f"{label}: no array x_unlabeled in {file} (found {sorted(arrays)}); expected "
            "np.savez(PATH, x_unlabeled=images_or_samples)"
        )
    return as_samples(arrays["x_unlabeled"], f"{label}: array 'x_unlabeled'", kind)[0]
