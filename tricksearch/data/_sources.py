"""Readers for every dataset source: bundled, IDX files, torchvision folders, ImageFolder, .npz.

Each reader returns a :class:`RawDataset` (images ``uint8`` NCHW, labels ``int64``, class names,
the official test set when the source has one) and never downloads anything. Missing files raise
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

from tricksearch.data._arrays import as_labels, as_uint8_images, remap_labels
from tricksearch.errors import DataError

__all__ = [
    "FASHION_MNIST_DEFAULT_ROOT",
    "RawDataset",
    "read_cifar",
    "read_digits",
    "read_fashion_mnist",
    "read_idx",
    "read_imagefolder",
    "read_mnist",
    "read_npz",
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
    """A dataset as read from its source, before splitting."""

    x: Tensor
    y: Tensor
    classes: list[str]
    x_test: Tensor | None = None
    y_test: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


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


# ---------------------------------------------------------------------------------- imagefolder

# torchvision.datasets.folder.IMG_EXTENSIONS
_IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


#: Folder names of a tree already split in two: ROOT/train/CLASS/… and ROOT/test/CLASS/… (or
#: val/valid/validation as the held-out split when there is no test folder).
_SPLIT_FOLDERS = {"train", "test", "val", "valid", "validation"}


def _class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _image_files(root: Path, classes: list[str]) -> list[tuple[Path, str]]:
    samples: list[tuple[Path, str]] = []
    for cls in classes:
        for dirpath, dirnames, filenames in os.walk(root / cls, followlinks=True):
            dirnames.sort()
            for fname in sorted(filenames):
                if fname.lower().endswith(_IMG_EXTENSIONS):
                    samples.append((Path(dirpath) / fname, cls))
    return samples


def _split_layout(root: Path, folders: list[str], label: str) -> dict[str, list[Path]] | None:
    """``{"train": [...], "test": [...]}`` when ``root`` holds split folders (``train/`` with
    class sub-folders) rather than class folders; ``None`` for a plain one-folder-per-class tree.

    ``train`` + ``test``: the test folder is the official test split (a ``val`` folder beside
    them joins the training data: tricksearch carves its validation split from it). ``train`` +
    ``val`` (no test): the val folder is the held-out split. ``train`` alone: its classes, with
    the test split carved from them. A split folder without class folders (unlabelled test
    images, say) is refused: its images have no labels.
    """
    if "train" not in folders or not set(folders) <= _SPLIT_FOLDERS:
        return None
    if not _class_folders(root / "train"):
        return None  # e.g. two real classes named "train" and "val", images directly inside
    unlabelled = [f for f in folders if not _class_folders(root / f)]
    if unlabelled:
        raise DataError(
            f"{label}: {root / unlabelled[0]} has no class folders, but {root / 'train'} has: "
            f"expected {unlabelled[0]}/CLASS/… like train/CLASS/… (the split needs labels); move "
            f"unlabelled images out of {root}"
        )
    held_out = "test" if "test" in folders else next((f for f in folders if f != "train"), None)
    return {
        "train": [root / f for f in folders if f != held_out],
        "test": [] if held_out is None else [root / held_out],
    }


def read_imagefolder(
    path: str, *, image_size: int | None = None, skip_corrupt: bool = False
) -> RawDataset:
    """Images in one sub-folder per class (torchvision ``ImageFolder`` conventions).

    Class names are the sorted sub-folder names; files with an image extension are read with
    PIL (others are ignored, as ImageFolder does), resized to ``image_size`` x ``image_size``
    (default: the size of the first image) and stored as grayscale if every image is grayscale,
    RGB otherwise. An unreadable image raises ``DataError`` naming it, unless ``skip_corrupt``:
    then it is skipped and listed in ``info["skipped_files"]``.

    A tree already split (``ROOT/train/CLASS/…`` and ``ROOT/test/CLASS/…``, or ``val`` when there
    is no ``test``; see :func:`_split_layout`) keeps its held-out folder as the test split; the
    classes are the training folder's, and a held-out class the training data lacks is refused.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow comes with torchvision
        raise DataError("imagefolder datasets need Pillow: pip install pillow") from exc

    root = Path(path).expanduser()
    label = f"dataset 'imagefolder:{path}'"
    if not root.is_dir():
        raise DataError(f"{label}: {root} is not a directory")
    folders = _class_folders(root)
    if not folders:
        raise DataError(
            f"{label}: no class folders under {root}; expected one sub-folder per class, "
            "e.g. ROOT/cat/001.png, ROOT/dog/002.png (or ROOT/train/cat/001.png, "
            "ROOT/test/cat/002.png)"
        )
    layout = _split_layout(root, folders, label) or {"train": [root], "test": []}
    found = {
        part: [(f, cls) for d in dirs for f, cls in _image_files(d, _class_folders(d))]
        for part, dirs in layout.items()
    }
    classes = sorted({cls for d in layout["train"] for cls in _class_folders(d)})
    if not found["train"]:
        where = ", ".join(str(d) for d in layout["train"])
        raise DataError(
            f"{label}: no image files under {where} (looked for {', '.join(_IMG_EXTENSIONS)} "
            f"in {', '.join(_class_folders(layout['train'][0]))})"
        )
    if layout["test"]:
        held = layout["test"][0]
        extra = sorted({cls for _, cls in found["test"]} - set(classes))
        if extra:
            raise DataError(
                f"{label}: {held} has class folder(s) {', '.join(extra)} with images that the "
                f"training folders lack; expected the training classes: {', '.join(classes)}"
            )
        if not found["test"]:
            raise DataError(f"{label}: no image files under {held} (the held-out split)")
    index = {cls: i for i, cls in enumerate(classes)}

    size: tuple[int, int] | None = (image_size, image_size) if image_size else None  # (W, H)
    arrays: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    skipped: list[str] = []
    any_color = False
    for part, samples in found.items():
        for file, cls in samples:
            try:
                with Image.open(file) as img:
                    img.load()
                    gray = img.mode in _GRAY_MODES
                    img = img.convert("L" if gray else "RGB")
                    if size is None:
                        size = img.size
                    if img.size != size:
                        img = img.resize(size, Image.Resampling.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
                if not skip_corrupt:
                    raise DataError(
                        f"{label}: cannot read image {file} ({exc.__class__.__name__}: {exc}); "
                        "remove it or pass skip_corrupt=True (--skip-corrupt) to skip such files"
                    ) from exc
                skipped.append(str(file))
                continue
            any_color = any_color or not gray
            arrays[part].append(arr)
            labels[part].append(index[cls])
    for part in found:
        if found[part] and not arrays[part]:
            raise DataError(f"{label}: all {len(found[part])} {part} image files are unreadable")
    channels = 3 if any_color else 1

    def stack(items: list[np.ndarray]) -> Tensor:
        out = np.empty((len(items), channels, size[1], size[0]), dtype=np.uint8)  # type: ignore[index]
        for i, arr in enumerate(items):
            out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(out)

    info: dict[str, Any] = {
        "source": str(root),
        "skipped_files": skipped,
        "n_skipped": len(skipped),
    }
    if layout["test"]:
        info["test_folder"] = str(layout["test"][0])
    return RawDataset(
        x=stack(arrays["train"]),
        y=torch.tensor(labels["train"], dtype=torch.int64),
        classes=classes,
        x_test=stack(arrays["test"]) if layout["test"] else None,
        y_test=torch.tensor(labels["test"], dtype=torch.int64) if layout["test"] else None,
        info=info,
    )


# ------------------------------------------------------------------------------------------ npz


def read_npz(path: str) -> RawDataset:
    """Arrays ``x`` and ``y`` (optionally ``x_test`` and ``y_test``) from an ``.npz`` file.

    Images as accepted by :func:`tricksearch.data._arrays.as_uint8_images`; labels of any integer
    values, remapped to ``0..K-1`` in sorted order (the original values become the class names).
    """
    file = Path(path).expanduser()
    label = f"dataset 'npz:{path}'"
    if not file.is_file():
        raise DataError(f"{label}: file {file} does not exist")
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{label}: cannot read {file} as .npz ({exc})") from exc
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DataError(
            f"{label}: missing array(s) {', '.join(missing)}; found {sorted(arrays)}; "
            "expected x and y, optionally x_test and y_test"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(
            f"{label}: x_test and y_test must be given together, found {sorted(arrays)}"
        )
    x = as_uint8_images(arrays["x"], f"{label}: array 'x'")
    y = as_labels(arrays["y"], f"{label}: array 'y'", len(x))
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = as_uint8_images(arrays["x_test"], f"{label}: array 'x_test'")
        y_test = as_labels(arrays["y_test"], f"{label}: array 'y_test'", len(x_test))
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{label}: array 'x_test' has images of shape {tuple(x_test.shape[1:])} (C, H, W) "
                f"but 'x' has {tuple(x.shape[1:])}"
            )
        classes, (y, y_test) = remap_labels(y, y_test)
    else:
        classes, (y,) = remap_labels(y)
    return RawDataset(
        x=x, y=y, x_test=x_test, y_test=y_test, classes=classes, info={"source": str(file)}
    )
