"""``imagefolder:PATH``: images in one sub-folder per class (torchvision ``ImageFolder`` layout).

Reading happens in three steps, each its own function: find the class folders and image files
(:func:`_find_samples`, which also recognises a tree already split into ``train/`` and
``test/``), decode and resize every file (:func:`_decode_all`), stack them into ``uint8`` NCHW
tensors. PIL is imported when a reader runs. Decoding more than :data:`PROGRESS_MIN_FILES` files
prints progress to stderr (:class:`_Progress`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from tricksearch._clock import fmt_duration
from tricksearch.data._sources import RawDataset
from tricksearch.errors import DataError

__all__ = ["read_image_pool", "read_imagefolder"]

# torchvision.datasets.folder.IMG_EXTENSIONS
_IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}

#: Folder names of a tree already split in two: ROOT/train/CLASS/… and ROOT/test/CLASS/… (or
#: val/valid/validation as the held-out split when there is no test folder).
_SPLIT_FOLDERS = {"train", "test", "val", "valid", "validation"}

#: Reading more image files than this prints progress lines to stderr.
PROGRESS_MIN_FILES = 2000
_now = time.monotonic  # the clock of the progress lines


class _Progress:
    """``LABEL: read 2400/10000 images (24%), 0:02 elapsed, ~0:06 left`` on ``stream`` every 2 s
    or 10 % of the files, whichever comes first, and when the last is read; rewritten in place on
    a terminal, plain lines elsewhere. Silent for ``total`` ≤ :data:`PROGRESS_MIN_FILES`."""

    def __init__(self, total: int, label: str, stream: IO[str] | None) -> None:
        self.total, self.label = total, label
        self.stream = stream if total > PROGRESS_MIN_FILES else None
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = self.last = _now()
        self.last_done = 0
        self.open = False  # a line shown on the terminal, not ended yet

    def tick(self, done: int) -> None:
        if self.stream is None:
            return
        now = _now()
        if (
            done < self.total
            and now - self.last < 2.0
            and (done - self.last_done) * 10 < self.total
        ):
            return
        self.last, self.last_done = now, done
        elapsed = now - self.t0
        left = elapsed / max(1, done) * (self.total - done)
        line = (
            f"{self.label}: read {done}/{self.total} images ({100 * done // self.total}%), "
            f"{fmt_duration(elapsed)} elapsed" + (f", ~{fmt_duration(left)} left" if left else "")
        )
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.open = True
            if done == self.total:
                self.end()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def end(self) -> None:
        """End the line shown on a terminal (after the last file, or when reading stops)."""
        if self.stream is not None and self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False


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


@dataclass
class _Found:
    """The files of an ImageFolder tree: per part (train, test) ``(file, class)`` pairs."""

    layout: dict[str, list[Path]]
    files: dict[str, list[tuple[Path, str]]]
    classes: list[str]


def _find_samples(root: Path, label: str) -> _Found:
    """Class folders and image files under ``root``; refuse trees with nothing to read."""
    folders = _class_folders(root)
    if not folders:
        raise DataError(
            f"{label}: no class folders under {root}; expected one sub-folder per class, "
            "e.g. ROOT/cat/001.png, ROOT/dog/002.png (or ROOT/train/cat/001.png, "
            "ROOT/test/cat/002.png)"
        )
    layout = _split_layout(root, folders, label) or {"train": [root], "test": []}
    files = {
        part: [(f, cls) for d in dirs for f, cls in _image_files(d, _class_folders(d))]
        for part, dirs in layout.items()
    }
    classes = sorted({cls for d in layout["train"] for cls in _class_folders(d)})
    if not files["train"]:
        where = ", ".join(str(d) for d in layout["train"])
        raise DataError(
            f"{label}: no image files under {where} (looked for {', '.join(_IMG_EXTENSIONS)} "
            f"in {', '.join(_class_folders(layout['train'][0]))})"
        )
    if layout["test"]:
        held = layout["test"][0]
        extra = sorted({cls for _, cls in files["test"]} - set(classes))
        if extra:
            raise DataError(
                f"{label}: {held} has class folder(s) {', '.join(extra)} with images that the "
                f"training folders lack; expected the training classes: {', '.join(classes)}"
            )
        if not files["test"]:
            raise DataError(f"{label}: no image files under {held} (the held-out split)")
    return _Found(layout, files, classes)


@dataclass
class _Decoded:
    """Decoded images per part, their labels, the files skipped, and what the stack needs."""

    arrays: dict[str, list[np.ndarray]] = field(default_factory=lambda: {"train": [], "test": []})
    labels: dict[str, list[int]] = field(default_factory=lambda: {"train": [], "test": []})
    skipped: list[str] = field(default_factory=list)
    any_color: bool = False
    size: tuple[int, int] | None = None  # (W, H), PIL's order
    resized: int = 0  # images whose size was not ``size``


def _decode(
    file: Path, size: tuple[int, int] | None, mode: str | None = None
) -> tuple[np.ndarray, bool, bool]:
    """One image as a ``uint8`` array (HxW grey or HxWx3 RGB; ``mode`` ``"L"``/``"RGB"`` forces
    one), resized to ``size`` if given; whether it was grey, and whether it was resized."""
    from PIL import Image

    with Image.open(file) as img:
        img.load()
        gray = img.mode in _GRAY_MODES
        img = img.convert(mode or ("L" if gray else "RGB"))
        resized = size is not None and img.size != size
        if resized:
            img = img.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8), gray, resized


def _decode_all(found: _Found, size: tuple[int, int] | None, skip: bool, label: str) -> _Decoded:
    """Decode every file; the first image fixes the size unless ``size`` is given."""
    from PIL import UnidentifiedImageError

    out = _Decoded(size=size)
    index = {cls: i for i, cls in enumerate(found.classes)}
    progress = _Progress(sum(map(len, found.files.values())), label, sys.stderr)
    samples = [(part, file, cls) for part, pairs in found.files.items() for file, cls in pairs]
    try:
        for done, (part, file, cls) in enumerate(samples, 1):
            try:
                arr, gray, resized = _decode(file, out.size)
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
                if not skip:
                    raise _unreadable(label, file, exc) from exc
                out.skipped.append(str(file))
                progress.tick(done)
                continue
            if out.size is None:
                out.size = (arr.shape[1], arr.shape[0])
            out.resized += resized
            out.any_color = out.any_color or not gray
            out.arrays[part].append(arr)
            out.labels[part].append(index[cls])
            progress.tick(done)
    finally:
        progress.end()
    for part in found.files:
        if found.files[part] and not out.arrays[part]:
            raise DataError(
                f"{label}: all {len(found.files[part])} {part} image files are unreadable"
            )
    return out


def _unreadable(label: str, file: Path, exc: Exception) -> DataError:
    return DataError(
        f"{label}: cannot read image {file} ({exc.__class__.__name__}: {exc}); "
        "remove it or pass skip_corrupt=True (--skip-corrupt) to skip such files"
    )


def _stack(items: list[np.ndarray], channels: int, size: tuple[int, int]) -> Tensor:
    """``uint8`` ``[N, channels, H, W]`` from HxW / HxWx3 arrays (grey ones repeated if RGB)."""
    out = np.empty((len(items), channels, size[1], size[0]), dtype=np.uint8)
    for i, arr in enumerate(items):
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(out)


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
        import PIL  # noqa: F401 - checked here so that the hint comes before any file is read
    except ImportError as exc:  # pragma: no cover - pillow comes with torchvision
        raise DataError("imagefolder datasets need Pillow: pip install pillow") from exc
    root = Path(path).expanduser()
    label = f"dataset 'imagefolder:{path}'"
    if not root.is_dir():
        raise DataError(f"{label}: {root} is not a directory")
    found = _find_samples(root, label)
    size = (image_size, image_size) if image_size else None
    dec = _decode_all(found, size, skip_corrupt, label)
    channels = 3 if dec.any_color else 1
    if dec.size is None:  # unreachable: _decode_all refuses a train part with no image read
        raise DataError(f"{label}: no image could be read")
    info: dict[str, Any] = {
        "source": str(root),
        "skipped_files": dec.skipped,
        "n_skipped": len(dec.skipped),
    }
    if dec.resized:
        n = sum(len(a) for a in dec.arrays.values())
        first = "the size of the first image" if image_size is None else "image_size"
        info["notes"] = [
            f"{label}: {dec.resized} of {n} images were resized to {dec.size[0]}x{dec.size[1]} "
            f"({first}); the images differ in size"
        ]
    has_test = bool(found.layout["test"])
    if has_test:
        info["test_folder"] = str(found.layout["test"][0])
    return RawDataset(
        x=_stack(dec.arrays["train"], channels, dec.size),
        y=torch.tensor(dec.labels["train"], dtype=torch.int64),
        classes=found.classes,
        x_test=_stack(dec.arrays["test"], channels, dec.size) if has_test else None,
        y_test=torch.tensor(dec.labels["test"], dtype=torch.int64) if has_test else None,
        info=info,
    )


def read_image_pool(
    path: str, *, channels: int, size: tuple[int, int], skip_corrupt: bool, label: str
) -> tuple[Tensor, list[str]]:
    """Every image file under ``path`` (recursively, sorted; no class folders needed) as
    ``uint8`` ``[N, channels, H, W]`` for ``size`` ``(H, W)``: converted to grey (1 channel) or
    RGB (3) and resized like :func:`read_imagefolder`'s images. An unreadable file raises
    ``DataError`` naming it, unless ``skip_corrupt``; the skipped files are returned too."""
    from PIL import UnidentifiedImageError

    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{label}: {root} is not a directory; expected a folder of images")
    if channels not in (1, 3):
        raise DataError(
            f"{label}: the labelled images have {channels} channels; a folder of images can only "
            "give 1 (grey) or 3 (RGB): use npz:PATH with an array x_unlabeled"
        )
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        files += [
            Path(dirpath) / f for f in sorted(filenames) if f.lower().endswith(_IMG_EXTENSIONS)
        ]
    if not files:
        raise DataError(
            f"{label}: no image files under {root} (looked for {', '.join(_IMG_EXTENSIONS)})"
        )
    arrays, skipped = [], []
    progress = _Progress(len(files), label, sys.stderr)
    try:
        for done, file in enumerate(files, 1):
            try:
                arrays.append(_decode(file, (size[1], size[0]), "L" if channels == 1 else "RGB")[0])
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
                if not skip_corrupt:
                    raise _unreadable(label, file, exc) from exc
                skipped.append(str(file))
            progress.tick(done)
    finally:
        progress.end()
    if not arrays:
        raise DataError(f"{label}: all {len(files)} image files under {root} are unreadable")
    return _stack(arrays, channels, (size[1], size[0])), skipped
