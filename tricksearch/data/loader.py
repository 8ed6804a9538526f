"""Batches for the training loop, the airbench way: the whole split on the device, no workers.

:class:`DeviceLoader` moves a split to the device once, as one tensor (``uint8`` images, or
float32 signals ``[N, C, L]`` / feature vectors ``[N, F]``), and cuts every epoch's batches from
a permutation that depends only on ``(seed, epoch)``: reproducible, every sample exactly once per
epoch, no worker processes, no per-sample Python. Image augmentations then run on whole batches
on the device (:func:`batch_flip`, :func:`batch_crop`), and :func:`to_float` normalizes right
before the forward pass (images: ``/ 255`` then per channel; float data: per channel only).

Randomness: the epoch's order is drawn once per epoch on the CPU (:func:`epoch_permutation`, the
same order on every device) and copied over once. The per-sample draws of :func:`batch_flip` and
:func:`batch_crop` are made on the batch's device — from the ``generator`` given (on that device),
else from torch's default generator of that device, which ``torch.manual_seed`` (the engine's
seed) seeds on the CPU and on every CUDA device — so no number is copied from the host in the
training step. On the CPU the draws are those of torch's global generator, as before.

:class:`StreamingLoader` has the same interface for data too big for the device (tensors kept
in host memory, or any ``torch.utils.data.Dataset`` read by a ``DataLoader``).
:func:`make_loader` picks one of the two.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tricksearch.data._splits import DatasetSplits
from tricksearch.errors import ConfigError, ConfigTypeError, DataError

__all__ = [
    "DeviceLoader",
    "StreamingLoader",
    "batch_crop",
    "batch_flip",
    "epoch_permutation",
    "make_loader",
    "shard_bounds",
    "to_float",
]

#: Splits larger than this stay in host memory and are streamed (:func:`make_loader`).
DEFAULT_MAX_DEVICE_BYTES = 2 * 1024**3


def _check_int(field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigTypeError(f"{field} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ConfigError(f"{field} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{field} must be a bool, got {value!r} ({type(value).__name__})")
    return value


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed that depends on ``(seed, epoch)`` only (no collisions between epochs)."""
    digest = hashlib.blake2b(f"tricksearch:{seed}:{epoch}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of the ``n`` samples in ``epoch``: a CPU ``randperm`` seeded by ``(seed, epoch)``.

    Drawn on the CPU so that the order is the same whatever the device.
    """
    gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
    return torch.randperm(n, generator=gen)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[lo, hi)``: rank ``rank``'s contiguous slice of a batch of ``n`` (sizes differ by ≤ 1)."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


class _Sharding:
    """A loader's data-parallel hook (:meth:`sharded`): every replica cuts the same global
    batches and keeps its contiguous slice of each; a global batch with fewer samples than
    replicas is skipped (no replica gets an empty batch)."""

    batch_size: int
    drop_last: bool
    rank, world_size = 0, 1
    on_batch: Callable[[int], None] | None = None

    @property
    def num_samples(self) -> int:
        raise NotImplementedError

    def sharded(
        self, rank: int, world_size: int, *, on_batch: Callable[[int], None] | None = None
    ) -> Any:
        """This loader as replica ``rank`` of ``world_size`` (in place; returns it).
        ``on_batch(n)`` is called with each global batch's size before its slice is served."""
        self.rank, self.world_size, self.on_batch = rank, world_size, on_batch
        return self

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = self.num_samples, self.batch_size
        full, last = divmod(n, b)
        return full + (1 if last and not self.drop_last and last >= self.world_size else 0)

    def _local(self, idx: Tensor) -> Tensor:
        """This replica's slice of the global batch ``idx`` (all of it with one replica)."""
        if self.world_size == 1:
            return idx
        if self.on_batch is not None:
            self.on_batch(len(idx))
        lo, hi = shard_bounds(len(idx), self.rank, self.world_size)
        return idx[lo:hi]


#: What a loader serves, for error messages.
_LOADER_LAYOUTS = (
    "a uint8 [N, C, H, W] image tensor, a float [N, C, L] signal tensor or a float [N, F] "
    "feature tensor"
)


def _check_pair(x: Any, y: Any) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ConfigTypeError(
            f"x and y must be torch tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    image = x.dtype == torch.uint8 and x.ndim == 4
    if not image and not (x.is_floating_point() and x.ndim in (2, 3)):
        raise DataError(f"x must be {_LOADER_LAYOUTS}, got {x.dtype} of shape {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"y must be a [N] tensor with N = {len(x)} (len(x)), got shape {tuple(y.shape)}"
        )


class DeviceLoader(_Sharding):
    """Whole split on the device as one tensor; batches cut by a seeded permutation.

    ``epoch(e)`` yields ``(x, y)`` with ``x`` as stored (``uint8`` ``[B, C, H, W]`` images, or
    float ``[B, C, L]`` / ``[B, F]``) and ``y`` ``int64`` ``[B]`` on ``device``. With
    ``shuffle`` the order is :func:`epoch_permutation` of ``(seed, e)``: the same for the same
    seed and epoch, different between epochs, and every sample appears exactly once per epoch
    (unless ``drop_last`` drops the short last batch). No worker processes.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        _check_pair(x, y)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.shuffle = _check_bool("shuffle", shuffle)
        self.drop_last = _check_bool("drop_last", drop_last)
        self.seed = _check_int("seed", seed, 0)
        self.device = torch.device(device)
        self.x = x.to(self.device)
        self.y = y.to(self.device, dtype=torch.int64)

    @property
    def num_samples(self) -> int:
        """Samples in the split (the last batch may be shorter unless ``drop_last``)."""
        return len(self.y)

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch number ``epoch`` (0-based), in a reproducible order."""
        epoch = _check_int("epoch", epoch, 0)
        b, n = self.batch_size, self.num_samples
        if not self.shuffle and self.world_size == 1:
            for i in range(len(self)):
                yield self.x[i * b : (i + 1) * b], self.y[i * b : (i + 1) * b]
            return
        if self.shuffle:
            order = epoch_permutation(n, self.seed, epoch).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = self._local(order[i * b : (i + 1) * b])
            yield self.x[idx], self.y[idx]


def _collate_uint8(items: Sequence[tuple[Any, Any]]) -> tuple[Tensor, Tensor]:
    """Stack ``(image, label)`` pairs into a uint8 NCHW batch; images as tensors, arrays or PIL."""
    xs = []
    for img, _ in items:
        if not isinstance(img, Tensor):
            arr = np.asarray(img)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            img = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        if img.ndim == 2:
            img = img.unsqueeze(0)
        if img.dtype != torch.uint8:
            raise DataError(
                f"a streamed dataset must yield uint8 images (tensor [C, H, W], array or PIL), "
                f"got {img.dtype} of shape {tuple(img.shape)}; drop ToTensor() from its transform"
            )
        xs.append(img)
    return torch.stack(xs), torch.as_tensor([int(lbl) for _, lbl in items], dtype=torch.int64)


class StreamingLoader(_Sharding):
    """:class:`DeviceLoader`'s interface for data that does not fit on the device.

    ``data`` is either a pair of CPU tensors ``(x, y)`` (``uint8`` images or float signals /
    feature vectors, as :class:`DeviceLoader` takes; batches are gathered in host memory and
    copied over) or a ``torch.utils.data.Dataset`` of ``(image, label)`` pairs with uint8
    images, read by a ``DataLoader`` with ``num_workers`` processes. The order of each epoch is
    the same :func:`epoch_permutation` as :class:`DeviceLoader`'s.
    """

    def __init__(
        self,
        data: tuple[Tensor, Tensor] | torch.utils.data.Dataset,
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.shuffle = _check_bool("shuffle", shuffle)
        self.drop_last = _check_bool("drop_last", drop_last)
        self.seed = _check_int("seed", seed, 0)
        self.num_workers = _check_int("num_workers", num_workers, 0)
        self.device = torch.device(device)
        self._pin = self.device.type == "cuda"
        self.tensors: tuple[Tensor, Tensor] | None = None
        self.dataset: torch.utils.data.Dataset | None = None
        if isinstance(data, tuple):
            if len(data) != 2:
                raise ConfigTypeError(f"data must be a pair (x, y), got a {len(data)}-tuple")
            _check_pair(*data)
            self.tensors = (data[0].cpu(), data[1].cpu().to(torch.int64))
        elif isinstance(data, torch.utils.data.Dataset):
            if not hasattr(data, "__len__"):
                raise ConfigTypeError("a streamed Dataset must define __len__")
            self.dataset = data
        else:
            raise ConfigTypeError(
                f"data must be (x, y) tensors or a torch Dataset, got {type(data).__name__}"
            )

    @property
    def num_samples(self) -> int:
        """Samples in the split."""
        if self.tensors is not None:
            return len(self.tensors[1])
        return len(self.dataset)  # type: ignore[arg-type]

    def epoch(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of epoch number ``epoch``, moved to the device."""
        epoch = _check_int("epoch", epoch, 0)
        n, b = self.num_samples, self.batch_size
        order = epoch_permutation(n, self.seed, epoch) if self.shuffle else torch.arange(n)
        order = order[: len(self) * b]
        if self.tensors is not None:
            x, y = self.tensors
            for i in range(len(self)):
                idx = self._local(order[i * b : (i + 1) * b])
                xb, yb = x[idx], y[idx]
                if self._pin:
                    xb, yb = xb.pin_memory(), yb.pin_memory()
                yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            return
        sizes = [len(order[i * b : (i + 1) * b]) for i in range(len(self))]
        batches = [  # this replica's slice of every global batch (all of it with one replica)
            order[i * b : (i + 1) * b][slice(*shard_bounds(n_i, self.rank, self.world_size))]
            for i, n_i in enumerate(sizes)
        ]
        loader = torch.utils.data.DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_sampler=[idx.tolist() for idx in batches],
            num_workers=self.num_workers,
            collate_fn=_collate_uint8,
            pin_memory=self._pin,
        )
        for n_i, (xb, yb) in zip(sizes, loader, strict=True):
            if self.on_batch is not None:
                self.on_batch(n_i)
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


_SPLITS = ("train", "val", "test")


def make_loader(
    data: DatasetSplits | tuple[Tensor, Tensor] | torch.utils.data.Dataset,
    batch_size: int,
    *,
    split: str = "train",
    device: torch.device | str = "cpu",
    shuffle: bool = True,
    drop_last: bool = False,
    seed: int = 0,
    max_device_bytes: int = DEFAULT_MAX_DEVICE_BYTES,
    num_workers: int = 0,
) -> DeviceLoader | StreamingLoader:
    """A loader for ``data``: device-resident unless it holds more than ``max_device_bytes``.

    ``data`` is a :class:`DatasetSplits` (``split`` picks train, val or test), a pair of tensors
    ``(x, y)``, or a ``torch.utils.data.Dataset`` (always streamed: its ``__getitem__`` may
    apply random transforms, which must not be frozen into a tensor).
    """
    _check_int("max_device_bytes", max_device_bytes, 0)
    common: dict[str, Any] = dict(device=device, shuffle=shuffle, drop_last=drop_last, seed=seed)
    if isinstance(data, DatasetSplits):
        if split not in _SPLITS:
            raise ConfigError(f"split must be one of {', '.join(_SPLITS)}, got {split!r}")
        data = (getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
    if isinstance(data, torch.utils.data.Dataset):
        return StreamingLoader(data, batch_size, num_workers=num_workers, **common)
    if not isinstance(data, tuple) or len(data) != 2:
        raise ConfigTypeError(
            "data must be a DatasetSplits, an (x, y) pair of tensors or a torch Dataset, "
            f"got {type(data).__name__}"
        )
    x, y = data
    _check_pair(x, y)
    nbytes = x.numel() * x.element_size() + y.numel() * y.element_size()
    if nbytes <= max_device_bytes:
        return DeviceLoader(x, y, batch_size, **common)
    return StreamingLoader((x, y), batch_size, **common)


@functools.lru_cache(maxsize=32)
def _stats_tensors(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, ndim: int
) -> tuple[Tensor, Tensor]:
    """``mean`` and ``std`` as float32 ``[1, C, 1, ...]`` tensors (``ndim`` dims), made once."""
    shape = (1, len(mean)) + (1,) * (ndim - 2)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
    return m, s


def to_float(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """The float32 model input of a stored batch, on ``x``'s device (always a new tensor).

    Image batches (4-D ``[B, C, H, W]``, pixel values 0..255, stored as ``uint8``):
    ``(x / 255 - mean) / std`` per channel. Signals (float ``[B, C, L]``) and feature vectors
    (float ``[B, F]``, one channel per feature): ``(x - mean) / std`` per channel, with no
    ``/ 255`` (for data split by tricksearch they are already standardised and ``mean``/``std``
    are 0 and 1).
    """
    image = x.ndim == 4
    if not image and not (x.is_floating_point() and x.ndim in (2, 3)):
        raise DataError(
            f"x must be an image batch [B, C, H, W] or a float [B, C, L] / [B, F] batch, "
            f"got {x.dtype} of shape {tuple(x.shape)}"
        )
    c = x.shape[1]
    if len(mean) != c or len(std) != c:
        raise ConfigError(
            f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}"
        )
    if any(not s > 0 for s in std):
        raise ConfigError(f"std must be > 0 in every channel, got {tuple(std)}")
    m, s = _stats_tensors(
        tuple(float(v) for v in mean), tuple(float(v) for v in std), x.device, x.ndim
    )
    out = x.to(torch.float32, copy=True)
    if image:
        out.div_(255.0)
    return out.sub_(m).div_(s)


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` uniform draws on ``device``: ``generator`` (on ``device``), else its default one."""
    return torch.rand(n, generator=generator, device=device)


def batch_flip(x: Tensor, generator: torch.Generator | None = None, *, p: float = 0.5) -> Tensor:
    """Flip each image of the batch left-right with probability ``p`` (one draw per sample).

    Works on any dtype and device; returns a new tensor of the same shape and dtype. With the
    same generator state, flipping twice gives back the input. Drawn on ``x``'s device
    (module docstring).
    """
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"flip probability p must lie in [0, 1], got {p!r}")
    mask = _rand(x.shape[0], generator, x.device) < p
    return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x.flip(-1), x)


def batch_crop(
    x: Tensor,
    padding: int,
    generator: torch.Generator | None = None,
    *,
    mode: str = "reflect",
) -> Tensor:
    """Random translation by up to ``padding`` pixels: pad, then crop back to the input size.

    Each sample gets its own offsets ``(dy, dx)`` in ``[-padding, padding]``; the whole batch is
    gathered in one indexing operation (no per-sample loop, no padded copy). ``mode`` fills the
    border as ``"reflect"`` (mirror without repeating the edge, airbench's choice; needs
    ``padding < H`` and ``< W``) or ``"zeros"``. Returns a new tensor, same shape and dtype.
    Offsets drawn on ``x``'s device (module docstring).
    """
    padding = _check_int("padding", padding, 0)
    if mode not in ("reflect", "zeros"):
        raise ConfigError(f"crop mode must be 'reflect' or 'zeros', got {mode!r}")
    if x.ndim != 4:
        raise DataError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if padding == 0 or b == 0:
        return x.clone()
    if mode == "reflect" and (padding >= h or padding >= w):
        raise ConfigError(
            f"crop padding={padding} must be smaller than the image ({h}x{w}) for reflect mode"
        )
    span = 2 * padding + 1
    dy = (_rand(b, generator, x.device) * span).long().clamp_(max=span - 1) - padding
    dx = (_rand(b, generator, x.device) * span).long().clamp_(max=span - 1) - padding
    rows = torch.arange(h, device=x.device).view(1, h) + dy.view(b, 1)  # source row per output
    cols = torch.arange(w, device=x.device).view(1, w) + dx.view(b, 1)
    if mode == "reflect":
        rows = rows.abs()
        rows = torch.where(rows > h - 1, 2 * (h - 1) - rows, rows)
        cols = cols.abs()
        cols = torch.where(cols > w - 1, 2 * (w - 1) - cols, cols)
        valid = None
    else:
        valid = ((rows >= 0) & (rows < h)).view(b, h, 1) & ((cols >= 0) & (cols < w)).view(b, 1, w)
        rows = rows.clamp(0, h - 1)
        cols = cols.clamp(0, w - 1)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    out = x[batch, :, rows.view(b, h, 1), cols.view(b, 1, w)]  # [B, H, W, C]
    if valid is not None:
        out = out.masked_fill(~valid.unsqueeze(-1), 0)
    return out.permute(0, 3, 1, 2).contiguous()
