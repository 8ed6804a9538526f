"""Readers for the named datasets: bundled digits, IDX files, torchvision folders.

Each reader returns a :class:`RawDataset` (images ``uint8`` NCHW, labels ``int64``, class names,
the official test set when the source has one) and never downloads anything. ImageFolder trees
and ``.npz`` files have their own modules (``_imagefolder``, ``_npz``). Missing files raise
:class:`~tricksearch.errors.DataError` saying which files are expected where and how to get them.
Optional dependencies (scikit-learn, PIL, torchvision, scipy) are imported when a reader runs.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tricksearch.errors import DataError

__all__ = [
    "FASHION_MNIST_DEFAULT_ROOT",
    "RawDataset",
    "read_cifar",
    "read_digits",
    "read_fashion_mnist",
    "read_idx",
    "read_mnist",
    "read_svhn",
]

#: Where Debian's package ``dataset-fashion-mnist`` installs its four gzipped IDX files.
FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass
class RawDataset:
    """A dataset as read from its source, before splitting.

    ``x`` and ``x_test`` are ``uint8`` NCHW images, or float ``[N, C, L]`` / ``[N, F]`` for
    ``kind`` ``"signal"`` / ``"features"`` (only ``.npz`` files hold those).
    """

    x: Tensor
    y: Tensor
    classes: list[str]
    x_test: Tensor | None = None
    y_test: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "image"


# --------------------------------------------------------------------------------------- digits


def read_digits() -> RawDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16 scaled to 0..255)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from exc
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # [1797, 8, 8], 0..16
    x = torch.from_numpy(np.rint(images * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1)
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    return RawDataset(
        x=x.contiguous(),
        y=y,
        classes=[str(i) for i in range(10)],
        info={"source": "sklearn.datasets.load_digits"},
    )


# ------------------------------------------------------------------------------------------ IDX

_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str], expected_ndim: int) -> np.ndarray:
    """Parse one IDX file (gzipped or not; gzip is detected from the content, not the name).

    Checks the magic number (two zero bytes, a known type code, ``expected_ndim`` dimensions)
    and that the payload size matches the header; any mismatch raises ``DataError`` naming
    the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"IDX file {path}: cannot be read ({exc})") from exc
    if len(raw) < 4:
        raise DataError(f"IDX file {path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    zero, type_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim != expected_ndim:
        raise DataError(
            f"IDX file {path}: bad magic number 0x{magic:08x}; expected "
            f"0x00000{0x800 + expected_ndim:03x} (unsigned bytes, {expected_ndim} dimension(s))"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path}: truncated header ({len(raw)} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path}: header says shape {tuple(dims)} ({expected} bytes of data), "
            f"but the file holds {len(raw) - header} bytes after the header"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find_idx_files(dirs: list[Path]) -> dict[str, Path] | None:
    """The first directory of ``dirs`` that holds all four IDX files (``.gz`` or plain)."""
    for d in dirs:
        found: dict[str, Path] = {}
        for stem in _IDX_FILES:
            for candidate in (d / f"{stem}.gz", d / stem):
                if candidate.is_file():
                    found[stem] = candidate
                    break
        if len(found) == len(_IDX_FILES):
            return found
    return None


def _missing_idx_report(dirs: list[Path]) -> str:
    """What is wrong with each existing candidate folder (or that the first one is absent)."""
    existing = [d for d in dirs if d.is_dir()]
    if not existing:
        return f"{dirs[0]} does not exist"
    parts = []
    for d in existing:
        missing = [s for s in _IDX_FILES if not ((d / f"{s}.gz").is_file() or (d / s).is_file())]
        if len(missing) == len(_IDX_FILES):
            parts.append(f"no files under {d}")
        else:
            parts.append(f"{d} lacks {', '.join(m + '[.gz]' for m in missing)}")
    return "; ".join(parts)


def _read_idx_set(name: str, files: dict[str, Path], num_classes: int) -> RawDataset:
    x = read_idx(files["train-images-idx3-ubyte"], 3)
    y = read_idx(files["train-labels-idx1-ubyte"], 1)
    xt = read_idx(files["t10k-images-idx3-ubyte"], 3)
    yt = read_idx(files["t10k-labels-idx1-ubyte"], 1)
    for images, labels, img_key, lab_key in (
        (x, y, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        (xt, yt, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ):
        if images.dtype != np.uint8:
            raise DataError(f"IDX file {files[img_key]}: images must be unsigned bytes")
        if len(images) != len(labels):
            raise DataError(
                f"dataset {name!r}: {files[img_key]} holds {len(images)} images but "
                f"{files[lab_key]} holds {len(labels)} labels"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise DataError(
                f"IDX file {files[lab_key]}: labels must lie in 0..{num_classes - 1}, got "
                f"{int(labels.min())}..{int(labels.max())}"
            )
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(
            f"dataset {name!r}: train images are {x.shape[1:]} but test images {xt.shape[1:]}"
        )
    return RawDataset(
        x=torch.from_numpy(x.copy()).unsqueeze(1),
        y=torch.from_numpy(y.astype(np.int64)),
        x_test=torch.from_numpy(xt.copy()).unsqueeze(1),
        y_test=torch.from_numpy(yt.astype(np.int64)),
        classes=[],
        info={"source": str(files["train-images-idx3-ubyte"].parent)},
    )


_IDX_LIST = ", ".join(f"{s}.gz" for s in _IDX_FILES)


def read_fashion_mnist(data_root: str | None) -> RawDataset:
    """Fashion-MNIST from gzipped (or plain) IDX files.

    Looked up in ``data_root`` (also ``data_root/FashionMNIST/raw``, torchvision's layout) or,
    without ``data_root``, in Debian's ``/usr/share/datasets/fashion-mnist``.
    """
    if data_root is None:
        dirs = [Path(FASHION_MNIST_DEFAULT_ROOT)]
    else:
        root = Path(data_root)
        dirs = [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    files = _find_idx_files(dirs)
    if files is None:
        raise DataError(
            f"dataset 'fashion-mnist': {_missing_idx_report(dirs)}; install Debian's package "
            "dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data-root "
            f"DIR holding {_IDX_LIST} (uncompressed files work too)"
        )
    raw = _read_idx_set("fashion-mnist", files, 10)
    raw.classes = list(FASHION_MNIST_CLASSES)
    return raw


def read_mnist(data_root: str | None) -> RawDataset:
    """MNIST from IDX files in ``data_root/MNIST/raw`` (torchvision's layout) or ``data_root``."""
    hint = (
        f"pass --data-root DIR where DIR/MNIST/raw (or DIR itself) holds {_IDX_LIST} "
        "(uncompressed files work too); torchvision.datasets.MNIST(DIR, download=True) fetches "
        "them, but needs network"
    )
    if data_root is None:
        raise DataError(f"dataset 'mnist': no data root given; {hint}")
    root = Path(data_root)
    dirs = [root / "MNIST" / "raw", root]
    files = _find_idx_files(dirs)
    if files is None:
        raise DataError(f"dataset 'mnist': {_missing_idx_report(dirs)}; {hint}")
    raw = _read_idx_set("mnist", files, 10)
    raw.classes = [str(i) for i in range(10)]
    return raw


# ---------------------------------------------------------------------------------- torchvision

_CIFAR = {
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        "data_batch_1..data_batch_5, test_batch, batches.meta",
    ),
    "cifar100": ("CIFAR100", "cifar-100-python", "train, test, meta"),
}


def _torchvision_datasets() -> Any:
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:  # pragma: no cover - torchvision is a dependency
        raise DataError("this dataset needs torchvision: pip install torchvision") from exc
    return tvd


def read_cifar(name: str, data_root: str | None) -> RawDataset:
    """CIFAR-10 / CIFAR-100 through torchvision, from a local folder (``download=False``)."""
    cls_name, folder, files = _CIFAR[name]
    hint = (
        f"pass --data-root DIR where DIR/{folder}/ holds {files} (the python version of the "
        f"archive); torchvision.datasets.{cls_name}(DIR, download=True) fetches it, but needs "
        "network"
    )
    if data_root is None:
        raise DataError(f"dataset {name!r}: no data root given; {hint}")
    if not (Path(data_root) / folder).is_dir():
        raise DataError(f"dataset {name!r}: {Path(data_root) / folder} does not exist; {hint}")
    tvd = _torchvision_datasets()
    try:
        train = getattr(tvd, cls_name)(data_root, train=True, download=False)
        test = getattr(tvd, cls_name)(data_root, train=False, download=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(
            f"dataset {name!r}: files under {Path(data_root) / folder} are missing or corrupt "
            f"({exc}); {hint}"
        ) from exc

    def to_nchw(arr: Any) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.asarray(arr, dtype=np.uint8))).permute(
            0, 3, 1, 2
        )

    return RawDataset(
        x=to_nchw(train.data).contiguous(),
        y=torch.as_tensor(train.targets, dtype=torch.int64),
        x_test=to_nchw(test.data).contiguous(),
        y_test=torch.as_tensor(test.targets, dtype=torch.int64),
        classes=list(train.classes),
        info={"source": str(Path(data_root) / folder)},
    )


def read_svhn(data_root: str | None) -> RawDataset:
    """SVHN (train and test splits, not ``extra``) through torchvision (``download=False``)."""
    hint = (
        "pass --data-root DIR holding train_32x32.mat and test_32x32.mat; "
        "torchvision.datasets.SVHN(DIR, split='train', download=True) fetches them, but needs "
        "network"
    )
    if data_root is None:
        raise DataError(f"dataset 'svhn': no data root given; {hint}")
    missing = [
        f for f in ("train_32x32.mat", "test_32x32.mat") if not (Path(data_root) / f).is_file()
    ]
    if missing:
        raise DataError(f"dataset 'svhn': {', '.join(missing)} not found under {data_root}; {hint}")
    try:
        import scipy.io  # noqa: F401 - torchvision's SVHN reads .mat files with scipy
    except ImportError as exc:
        raise DataError("dataset 'svhn' needs scipy to read .mat files: pip install scipy") from exc
    tvd = _torchvision_datasets()
    try:
        train = tvd.SVHN(data_root, split="train", download=False)
        test = tvd.SVHN(data_root, split="test", download=False)
    except (RuntimeError, OSError, ValueError) as exc:
        raise DataError(
            f"dataset 'svhn': files under {data_root} are corrupt ({exc}); {hint}"
        ) from exc
    return RawDataset(
        x=torch.from_numpy(np.ascontiguousarray(train.data, dtype=np.uint8)),
        y=torch.as_tensor(np.asarray(train.labels), dtype=torch.int64),
        x_test=torch.from_numpy(np.ascontiguousarray(test.data, dtype=np.uint8)),
        y_test=torch.as_tensor(np.asarray(test.labels), dtype=torch.int64),
        classes=[str(i) for i in range(10)],
        info={"source": str(data_root)},
    )
