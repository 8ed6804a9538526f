"""``fit`` as ``N`` local processes of one data-parallel run (torch.multiprocessing, no Ray):
``tricksearch train --workers N`` and the retraining of a recipe with ``runtime.workers``.

Each process joins a gloo (CPU) or NCCL (one GPU each) process group on a free local port and
runs ``fit(dist=DataParallel(rank, N))`` (:mod:`tricksearch.engine.distributed`); rank 0 sends
every epoch's metrics and its result back to the caller.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.engine.distributed import check_world, free_address, process_group
from tricksearch.errors import ConfigError

if TYPE_CHECKING:
    from tricksearch.engine.fit import FitResult
    from tricksearch.recipe import Recipe

__all__ = ["spawn_fit"]


def _spawned(
    rank: int,
    world_size: int,
    init_method: str,
    threads: int | None,
    job: dict[str, Any],
    queue: Any,
) -> None:
    """One process of :func:`spawn_fit`: join the group, train; rank 0 sends epochs and result."""
    from tricksearch.engine.fit import fit

    if threads:
        torch.set_num_threads(threads)
    device = job.get("device") or "cpu"
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    try:
        with process_group(rank, world_size, init_method=init_method, device=device) as place:
            main = rank == 0
            result = fit(
                job["recipe"],
                model=job.get("model"),
                data=job.get("data"),
                device=device,
                evaluate_test=job.get("evaluate_test", False),
                on_epoch=(lambda m: queue.put(("epoch", m))) if main else None,
                dist=place,
            )
        if main:
            model = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
            result.model = None  # type: ignore[assignment]
            buffer = io.BytesIO()  # bytes, not shared tensors: this process may exit first
            torch.save(model, buffer)
            queue.put(("result", (result, buffer.getvalue())))
    except BaseException as exc:  # the parent raises it again, as one line
        queue.put(("error", f"rank {rank}: {type(exc).__name__}: {exc}"))
        raise


def spawn_fit(
    recipe: Recipe,
    workers: int,
    *,
    model: Any = None,
    data: Any = None,
    device: str | None = None,
    evaluate_test: bool = False,
    on_epoch: Callable[[Any], object] | None = None,
    threads: int | None = None,
) -> FitResult:
    """``fit`` as ``workers`` local processes (torch.multiprocessing, gloo or NCCL, no Ray).

    Returns rank 0's :class:`FitResult`, its model rebuilt in this process; ``on_epoch`` is
    called here with each epoch's metrics. A failure in any process is raised as one line."""
    import torch.multiprocessing as mp

    from tricksearch.engine.setup import make_model, resolve_device

    check_world(workers, "workers", recipe.budget.batch_size)
    device = str(resolve_device(device))
    if device.startswith("cuda") and torch.cuda.device_count() < workers:
        raise ConfigError(
            f"workers: got {workers} on CUDA, but torch sees {torch.cuda.device_count()} GPU(s); "
            "a data-parallel run takes one GPU per worker."
        )
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    job = {"recipe": recipe, "model": model, "data": data, "device": device}
    job["evaluate_test"] = evaluate_test
    address = free_address()
    procs = [
        ctx.Process(target=_spawned, args=(r, workers, address, threads, job, queue), daemon=True)
        for r in range(workers)
    ]
    for proc in procs:
        proc.start()
    try:
        outcome = _collect(queue, procs, on_epoch)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    result, weights = outcome
    weights = torch.load(io.BytesIO(weights), weights_only=True)
    net = model if isinstance(model, nn.Module) else None
    if net is None:
        from tricksearch.engine.setup import load_data

        net = make_model(recipe, data if data is not None else load_data(recipe), model)
    net.load_state_dict(weights)
    result.model = net
    return result


def _collect(queue: Any, procs: list[Any], on_epoch: Callable[[Any], object] | None) -> Any:
    """Read the processes' messages until rank 0's result (or the first error)."""
    import time

    while True:
        while queue.empty():
            if not any(p.is_alive() for p in procs):
                if queue.empty():
                    codes = [p.exitcode for p in procs]
                    raise RuntimeError(f"data-parallel training: the workers exited ({codes}).")
                break
            time.sleep(0.05)
        kind, payload = queue.get()
        if kind == "epoch" and on_epoch is not None:
            on_epoch(payload)
        elif kind == "result":
            return payload
        elif kind == "error":
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
            raise RuntimeError(f"data-parallel training failed: {payload}")
