"""Data-parallel training: one :func:`~tricksearch.engine.fit` call per replica (torch DDP).

A run of ``N`` replicas trains the recipe as one replica would, with ``recipe.budget.batch_size``
as the *global* batch: every replica cuts the same epoch permutation into the same global
batches and takes its own contiguous ``1/N`` slice of each (:func:`shard_bounds`), so the
replicas together see exactly the samples of a one-replica step. The model is wrapped in
``torch.nn.parallel.DistributedDataParallel`` (gradients averaged across replicas; each
replica's loss is weighted by its share of the global batch, so the averaged gradient is the
gradient of the global batch's mean loss, short last batch included); the linear LR scaling
rule keeps seeing the global batch (the recipe's). Training loss and accuracy are summed over
the replicas; every replica evaluates the whole val split and takes rank 0's numbers, so all
replicas agree. With ``N > 1`` torch's RNG is reseeded per ``(seed, rank, epoch)`` at the start
of every epoch: augmentation, mixing and dropout draw differently on each replica, and a resumed
run draws what an uninterrupted one would.

Exact only where the loss is the mean of per-sample terms: tricks with batch-level terms
(flooding, mixing within the batch, BatchNorm statistics of a local batch) give a close but not
identical run. A final global batch with fewer samples than replicas is dropped (no replica may
get an empty batch).

The process group is the caller's: :func:`process_group` (gloo on a CPU, NCCL on CUDA), then
``fit(recipe, dist=DataParallel(rank, world_size))`` in every process. :func:`spawn_fit` does
both for ``N`` local processes (torch.multiprocessing, no Ray): ``tricksearch train --workers N``
(:func:`tricksearch.engine.spawn.spawn_fit`).

``sync_bn`` (model tweak): ``nn.SyncBatchNorm.convert_sync_batchnorm`` when the run has ≥ 2
replicas on CUDA and the model has BatchNorm layers; anywhere else (torch's SyncBatchNorm needs
CUDA) the model keeps plain BatchNorm and one note is printed: the numbers are those without it.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.data.loader import shard_bounds
from tricksearch.errors import ConfigError, ConfigTypeError

if TYPE_CHECKING:
    from tricksearch.engine.fit import _Run
    from tricksearch.recipe import Recipe

__all__ = [
    "DataParallel",
    "attach",
    "backend_for",
    "check_world",
    "free_address",
    "process_group",
    "shard_bounds",
    "sync_bn_note",
]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run: ``rank`` in ``0 .. world_size - 1``."""

    rank: int
    world_size: int

    def __post_init__(self) -> None:
        for name in ("rank", "world_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigTypeError(f"dist.{name}: got {value!r}, expected an integer.")
        check_world(self.world_size, "dist.world_size")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(
                f"dist.rank: got {self.rank}, expected 0 .. {self.world_size - 1} (world size "
                f"{self.world_size})."
            )


def check_world(workers: Any, field: str = "workers", batch_size: int | None = None) -> int:
    """``workers`` as an int >= 1 that divides ``batch_size`` (when given); else one line."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ConfigTypeError(f"{field}: got {workers!r}, expected an integer >= 1.")
    if workers < 1:
        raise ConfigError(f"{field}: got {workers}, expected an integer >= 1.")
    if batch_size is not None and batch_size % workers:
        raise ConfigError(
            f"{field}: got {workers}, which does not divide the batch size {batch_size}: the "
            f"global batch is split evenly between the workers; use a batch size that is a "
            f"multiple of {workers}."
        )
    return workers


def backend_for(device: torch.device | str) -> str:
    """The collective backend for ``device``: NCCL on CUDA, gloo elsewhere."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def free_address(host: str = "127.0.0.1") -> str:
    """``tcp://host:port`` with a port free now (the rendezvous of :func:`process_group`)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return f"tcp://{host}:{sock.getsockname()[1]}"


@contextmanager
def process_group(
    rank: int,
    world_size: int,
    *,
    init_method: str,
    device: torch.device | str = "cpu",
    timeout_s: float = 600.0,
) -> Iterator[DataParallel]:
    """Join the run's process group (gloo on a CPU, NCCL on CUDA) for the block; left after."""
    import torch.distributed as tdist

    place = DataParallel(rank, world_size)
    tdist.init_process_group(
        backend_for(device),
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    try:
        yield place
    finally:
        tdist.destroy_process_group()


def sync_bn_note(reason: str) -> str:
    """The one line printed when a recipe's ``sync_bn`` cannot take effect."""
    return f"note: model_tweaks.sync_bn: {reason}; trained with plain BatchNorm (same numbers)."


def _sync_bn(net: nn.Module, recipe: Recipe, device: torch.device, world_size: int) -> None:
    """Convert the BatchNorm layers of ``net`` in place when the recipe asks and it can work."""
    if "sync_bn" not in recipe.section("model_tweaks"):
        return
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        reason = "the model has no BatchNorm layer"
    elif device.type != "cuda" or world_size < 2:
        reason = "SyncBatchNorm needs a data-parallel run on 2 or more CUDA GPUs"
    else:
        for name, child in list(net.named_children()):
            setattr(net, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
        return
    print(sync_bn_note(reason), file=sys.stderr)


class _Local:
    """One process: every hook is the identity (``fit`` without ``dist``)."""

    rank, world_size, is_main = 0, 1, True

    def train_net(self, net: nn.Module) -> nn.Module:
        return net

    def scale_loss(self, loss: torch.Tensor, n_local: int) -> torch.Tensor:
        return loss

    def seed_epoch(self, seed: int, epoch: int) -> None:
        return None

    def reduce_train(self, loss: float, correct: int, seen: int) -> tuple[float, int, int]:
        return loss, correct, seen

    def agree(self, *values: float) -> tuple[float, ...]:
        return values


#: The hooks of a training that is not data-parallel.
LOCAL = _Local()


class _Replica(_Local):
    """One replica of a data-parallel run (the process group is initialised)."""

    def __init__(self, place: DataParallel, net: nn.Module, device: torch.device, batch: int):
        from torch.nn.parallel import DistributedDataParallel

        self.rank, self.world_size = place.rank, place.world_size
        self.is_main = place.rank == 0
        self.device, self.batch = device, batch
        ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(net, device_ids=ids)
        self.global_n = batch  # size of the current global batch (set by the sharded loader)

    def train_net(self, net: nn.Module) -> nn.Module:
        return self.ddp

    def scale_loss(self, loss: torch.Tensor, n_local: int) -> torch.Tensor:
        # DDP averages the replicas' gradients: weighting each local mean by its share of the
        # global batch makes the average the gradient of the global batch's mean loss.
        return loss * (n_local * self.world_size / self.global_n)

    def seed_epoch(self, seed: int, epoch: int) -> None:
        key = f"tricksearch-ddp:{seed}:{self.rank}:{epoch}".encode()
        torch.manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1)

    def reduce_train(self, loss: float, correct: int, seen: int) -> tuple[float, int, int]:
        import torch.distributed as tdist

        sums = torch.tensor([loss * seen, correct, seen], dtype=torch.float64, device=self.device)
        tdist.all_reduce(sums)
        total = int(sums[2].item())
        return sums[0].item() / max(total, 1), int(sums[1].item()), total

    def agree(self, *values: float) -> tuple[float, ...]:
        import torch.distributed as tdist

        out = torch.tensor(values, dtype=torch.float64, device=self.device)
        tdist.broadcast(out, src=0)
        return tuple(out.tolist())


def attach(run: _Run, recipe: Recipe, dist: DataParallel | None) -> None:
    """Make ``run`` one replica of ``dist`` (no ``dist``: one process, nothing changes but the
    ``sync_bn`` note): the batch size checked, the loader sharded, the model in DDP."""
    import torch.distributed as tdist

    _sync_bn(run.net, recipe, run.device, 1 if dist is None else dist.world_size)
    if dist is None or dist.world_size == 1:
        return
    if not isinstance(dist, DataParallel):
        raise ConfigTypeError(f"dist: got {type(dist).__name__}, expected a DataParallel.")
    check_world(dist.world_size, "workers", recipe.budget.batch_size)
    for name in recipe.semi:
        raise ConfigError(
            f"semi.{name}: semi-supervised training runs in one process, not data-parallel "
            f"({dist.world_size} workers); train it with 1 worker (runtime.workers: 1)."
        )
    if not tdist.is_initialized() or tdist.get_world_size() != dist.world_size:
        raise ConfigError(
            f"dist: a data-parallel fit of {dist.world_size} replicas needs the process group "
            "initialised with that world size first (engine.distributed.process_group)."
        )
    replica = _Replica(dist, run.net, run.device, recipe.budget.batch_size)
    run.loader = run.loader.sharded(dist.rank, dist.world_size, on_batch=replica_batch(replica))
    run.dist = replica


def replica_batch(replica: _Replica) -> Callable[[int], None]:
    """What the sharded loader calls with each global batch's size (for the loss weights)."""

    def on_batch(n: int) -> None:
        replica.global_n = n

    return on_batch
