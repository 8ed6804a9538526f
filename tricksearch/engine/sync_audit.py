"""Count the host synchronisations of the training step — on the CPU, where CUDA cannot tell.

On a GPU, ``torch.cuda.set_sync_debug_mode`` reports every operation that makes the host wait
for the device. On the CPU nothing waits, so :class:`SyncAudit` reads the operations instead
(a ``TorchDispatchMode`` plus a few patched factories) and counts what would synchronise on
CUDA:

- ``read``: a value of a device tensor read on the host — ``.item()``, ``float()``/``int()``/
  ``bool()``/``if tensor:``, ``.tolist()``, ``.cpu()``, ``.numpy()``;
- ``shape``: an operation whose output shape depends on device values (``nonzero``, boolean
  indexing, ``masked_select``, ``unique``, ``repeat_interleave`` without ``output_size``);
- ``copy``: a tensor made on the host inside the step (a factory called without ``device=``,
  ``torch.tensor(data)``) that then meets device tensors — on CUDA that is a copy from pageable
  memory, which synchronises (counted once per host tensor); a ``torch.tensor(data,
  device=…)`` counts at once.

"Device tensors" are all tensors except those the step made on the host (the model, the batch,
the optimizer state …). A host tensor used on its own (a Python-side draw that picks a code
path or a shape, an optimizer's CPU step counter read with ``.item()``) is no sync and is not
counted. ``F.one_hot``'s range check (``.item()`` on the CPU only) is not counted. Limits: a
factory given ``device=torch.device("cpu")`` counts as on the device (on the CPU it is the
device; the string ``"cpu"``, as torch's optimizers write it, counts as the host), tensors made
on the host before the step count as on the device, and ``.to("cpu")`` is not seen.

:func:`audit_fit` runs :func:`~tricksearch.engine.fit` with the audit around every training
step (``fit.training_step``) and returns the counts of each step. ``like_cuda=True`` makes the
batched augmentation policies take their CUDA code path (``"where"``, no ``nonzero``) so that
the audit counts what the GPU would run.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SyncAudit", "audit_fit", "steady_syncs"]

aten = torch.ops.aten

_SHAPE_OPS = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
}
_INDEX_OPS = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default}
_FACTORIES = (
    "rand",
    "randn",
    "randint",
    "randperm",
    "arange",
    "zeros",
    "ones",
    "full",
    "empty",
    "linspace",
)
_READS = ("tolist", "cpu", "numpy")


class SyncAudit(TorchDispatchMode):
    """Counts (``self.counts``: read / shape / copy) the would-be CUDA syncs while active.

    Use :meth:`patched` once around the whole run (it patches torch's factories and the
    tensor read methods) and the audit itself (``with audit:``) around each step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.where: Counter[str] = Counter()  # "kind at file:line" of every count
        self.active = False
        self._host: dict[int, torch.Tensor] = {}  # id -> tensor (kept alive: ids stay unique)
        self._moved: set[int] = set()

    def __enter__(self) -> SyncAudit:
        self.active = True
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.active = False
        super().__exit__(*exc)

    # ---------------------------------------------------------------------------------------
    def is_host(self, t: torch.Tensor) -> bool:
        return id(t) in self._host

    def _count(self, kind: str) -> None:
        self.counts[kind] += 1
        self.where[f"{kind} at {_caller()}"] += 1

    def _tag(self, out: Any) -> None:
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._host[id(t)] = t

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        host = [t for t in tensors if self.is_host(t)]
        on_device = [t for t in tensors if not self.is_host(t)]
        if func is aten._local_scalar_dense.default and on_device:
            self._count("read")
        elif func in _SHAPE_OPS and on_device:
            self._count("shape")
        elif func in _INDEX_OPS and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool and not self.is_host(i)
            for i in pytree.tree_leaves(args[1])
        ):
            self._count("shape")
        if host and on_device:
            for t in host:
                if id(t) not in self._moved:
                    self._moved.add(id(t))
                    self._count("copy")
        out = func(*args, **kwargs)
        if host and not on_device:
            self._tag(out)
        return out

    # ---------------------------------------------------------------------------------------
    def _factory(self, orig: Callable, name: str) -> Callable:
        @functools.wraps(orig)
        def made(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            if not self.active or not isinstance(out, torch.Tensor):
                return out
            data = args[0] if args else kwargs.get("data")
            if name in ("tensor", "as_tensor") and isinstance(data, torch.Tensor):
                if out is not data and not self.is_host(data) and out.device != data.device:
                    self._count("copy")
                return out
            if _on_host(kwargs.get("device")):
                self._tag(out)
            elif name in ("tensor", "as_tensor"):
                self._count("copy")  # Python data copied to the device
            return out

        return made

    def _read(self, orig: Callable) -> Callable:
        @functools.wraps(orig)
        def read(t: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.active and not self.is_host(t):
                self._count("read")
            out = orig(t, *args, **kwargs)
            if self.active and isinstance(out, torch.Tensor):
                self._tag(out)
            return out

        return read

    def _unchecked(self, orig: Callable) -> Callable:
        """``orig`` with the audit paused: ``F.one_hot`` checks its range with ``.item()`` on
        the CPU only (on CUDA it relies on a device-side assert)."""

        @functools.wraps(orig)
        def call(*args: Any, **kwargs: Any) -> Any:
            active, self.active = self.active, False
            try:
                with torch.utils._python_dispatch._disable_current_modes():
                    return orig(*args, **kwargs)
            finally:
                self.active = active

        return call

    @contextlib.contextmanager
    def patched(self) -> Iterator[SyncAudit]:
        """Patch torch's factories and the read methods for the audit's lifetime."""
        saved: list[tuple[Any, str, Any]] = [(F, "one_hot", F.one_hot)]
        F.one_hot = self._unchecked(F.one_hot)
        for name in (*_FACTORIES, "tensor", "as_tensor"):
            saved.append((torch, name, getattr(torch, name)))
            setattr(torch, name, self._factory(getattr(torch, name), name))
        for name in _READS:
            saved.append((torch.Tensor, name, getattr(torch.Tensor, name)))
            setattr(torch.Tensor, name, self._read(getattr(torch.Tensor, name)))
        try:
            yield self
        finally:
            for owner, name, orig in reversed(saved):
                setattr(owner, name, orig)


def _on_host(device: Any) -> bool:
    """A factory's ``device=``: none, or the string ``"cpu"`` (torch's own host counters, such
    as Adam's step, are made with ``device="cpu"``; a run's device is a ``torch.device``)."""
    return device is None or (isinstance(device, str) and device.startswith("cpu"))


def _caller() -> str:
    """The innermost frame outside torch and this module (``path:line``), for the report."""
    frames = traceback.extract_stack()[:-3]
    for f in reversed(frames):
        name = f.filename.replace("\\", "/")
        if "/torch/" in name or name.endswith("sync_audit.py"):
            continue
        short = name.split("/site-packages/")[-1].split("/tricksearch/")[-1]
        return f"{short}:{f.lineno}"
    return "?"


def _cuda_paths(run: Any) -> None:
    """The batched policies' CUDA path (``how="where"``) for this run's augmentation."""
    augment = getattr(run.parts, "augment", None)
    policy = getattr(augment, "policy", None)
    if policy is not None:
        policy[1].how = "where"


def audit_fit(*args: Any, like_cuda: bool = True, **kwargs: Any) -> list[Counter[str]]:
    """``fit(*args, **kwargs)`` with a :class:`SyncAudit` around each training step: the counts
    of every step, in order."""
    fit_module = importlib.import_module("tricksearch.engine.fit")  # the module, not fit()
    audit, steps = SyncAudit(), []
    inner = fit_module.training_step

    def watched(run: Any, *a: Any) -> Any:
        if like_cuda:
            _cuda_paths(run)
        audit.counts = Counter()
        with audit:
            out = inner(run, *a)
        steps.append(audit.counts)
        return out

    with audit.patched():
        fit_module.training_step = watched
        try:
            fit_module.fit(*args, **kwargs)
        finally:
            fit_module.training_step = inner
    return steps


def steady_syncs(steps: list[Counter[str]]) -> int:
    """Syncs per step after the first (which may build per-device constants once): the most any
    later step had (the first step's when there is only one)."""
    later = steps[1:] or steps
    return max((sum(c.values()) for c in later), default=0)
