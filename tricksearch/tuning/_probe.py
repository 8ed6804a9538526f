"""The probe of ``--gpus-per-trial auto``: a few training steps on the GPU, before Ray starts.

What is trained: ``engine.fit`` on a slice of the real data (:data:`STEPS` steps per epoch, one
warm-up epoch, then :data:`EPOCHS` timed), in fresh processes (spawned: the search's own process
never holds a CUDA context, which would take memory from the trials):

- memory: the **heaviest** configuration the space can produce for memory, the baseline at the
  largest batch size the space may sample (activations grow with the batch; the model is the
  same in every trial — tricks that add state, an EMA copy or a teacher, are what the 20 %
  headroom of the rule is for, and an OOM they still cause is handled as such); its peak of
  reserved memory, plus the CUDA context's memory (``nvidia-smi`` before and after, else
  ``_packing.CONTEXT_BYTES``);
- throughput: the baseline, run by 1, 2, 4 and 8 processes at once (levels the memory allows;
  they start their timed epochs together at a barrier): total images/s per level.

``_packing.pack`` turns the numbers into k trials per GPU. Without CUDA there is nothing to probe:
``auto`` is 0 GPUs, with a note.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tricksearch.errors import ConfigError
from tricksearch.tuning._packing import AUTO, CONTEXT_BYTES, Packing, mps_line, pack

if TYPE_CHECKING:
    from torch import nn

    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace
    from tricksearch.tuning._config import SearchConfig

__all__ = ["LEVELS", "heaviest_batch", "resolve_auto", "resolve_on_cpu"]

LEVELS = (1, 2, 4, 8)
STEPS = 20
EPOCHS = 2
ROUND_TIMEOUT = 120.0


def resolve_on_cpu(config: SearchConfig) -> tuple[SearchConfig, list[str]]:
    """``auto`` without CUDA here: 0 GPUs, with a note (with ``--address``, refused: the probe
    runs on this machine's GPU)."""
    import torch

    if config.gpus_per_trial != AUTO or torch.cuda.is_available():
        return config, []
    if config.address:
        raise ConfigError(
            "gpus_per_trial: 'auto' probes this machine's GPU, and torch sees none here; "
            "give a number (0.25: four trials per GPU) to run on the cluster's GPUs."
        )
    note = "--gpus-per-trial auto: torch sees no CUDA device here, so trials run on the CPU (0)"
    return dataclasses.replace(config, gpus_per_trial=0.0), [note]


def heaviest_batch(space: SearchSpace, base: Recipe) -> int:
    """The largest batch size a trial of ``space`` may train with (the base recipe's when the
    space does not search it)."""
    spec = space.batch_size
    values = [base.budget.batch_size]
    if spec is not None and getattr(spec, "choices", None):
        values += [int(v) for v in spec.choices]
    elif spec is not None and getattr(spec, "high", None) is not None:
        values.append(int(spec.high))
    elif isinstance(spec, (int, float)):
        values.append(int(spec))
    return max(values)


def resolve_auto(
    config: SearchConfig,
    base: Recipe,
    space: SearchSpace,
    data: DatasetSplits,
    model_factory: Callable[..., nn.Module] | None,
    *,
    measure: Callable[..., dict[str, Any]] | None = None,
) -> tuple[SearchConfig, list[str]]:
    """``config`` with ``gpus_per_trial`` = 1/k from the probe, and the notes saying why."""
    import os

    if config.gpus_per_trial != AUTO:
        return config, []
    numbers = (measure or _measure)(base, space, data, model_factory)
    max_k = max(1, int((os.cpu_count() or 1) // config.cpus_per_trial))
    decided: Packing = pack(
        numbers["free_bytes"],
        numbers["peak_bytes"],
        numbers["context_bytes"],
        numbers["throughput_by_k"],
        max_k=max_k,
    )
    notes = [
        f"--gpus-per-trial auto: {decided.k} trial{'s' if decided.k > 1 else ''} per GPU "
        f"({decided.share:g} GPU each): {decided.reason}; probe: batch "
        f"{numbers['batch_size']} peaks at {numbers['peak_bytes'] / 2**20:.0f} MiB, "
        + ", ".join(f"{k}×: {v:.0f} img/s" for k, v in sorted(numbers["throughput_by_k"].items()))
        + f" ({numbers['seconds']:.0f} s)"
    ]
    if line := mps_line():
        notes.append(line)
    return dataclasses.replace(config, gpus_per_trial=decided.share), notes


# --- the measurement (needs CUDA) -------------------------------------------------------------
def _measure(
    base: Recipe,
    space: SearchSpace,
    data: DatasetSplits,
    model_factory: Callable[..., nn.Module] | None,
) -> dict[str, Any]:
    t0 = time.monotonic()
    heavy = heaviest_batch(space, base)
    free_before = _smi_free()
    mem = _round(base, heavy, data, model_factory, 1)[0]
    peak = mem["peak_reserved"]
    context = CONTEXT_BYTES
    if free_before is not None and mem.get("smi_free_in_worker") is not None:
        context = max(0, free_before - mem["smi_free_in_worker"] - mem["reserved_then"])
    free = free_before if free_before is not None else mem["free_at_start"] + context
    fits = max(1, int(0.8 * free // (peak + context)))
    batch = base.budget.batch_size
    throughput = {}
    for k in LEVELS:
        if k > fits:
            break
        results = _round(base, batch, data, model_factory, k)
        throughput[k] = sum(r["images_per_s"] for r in results)
        if k > 1 and throughput[k] < 1.15 * throughput[k // 2]:
            break  # the rule stops here anyway
    return {
        "free_bytes": free,
        "peak_bytes": peak,
        "context_bytes": context,
        "throughput_by_k": throughput,
        "batch_size": heavy,
        "seconds": time.monotonic() - t0,
    }


def _smi_free() -> int | None:
    """Free memory of GPU 0 in bytes by ``nvidia-smi`` (None when it does not answer)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(float(out.strip().splitlines()[0]) * 2**20)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def _round(
    base: Recipe,
    batch: int,
    data: DatasetSplits,
    factory: Callable[..., nn.Module] | None,
    k: int,
) -> list[dict[str, Any]]:
    """``k`` processes training ``base`` at ``batch`` at once; each one's numbers."""
    import torch.multiprocessing as mp

    recipe = base.with_changes(
        budget=base.budget.to_dict() | {"batch_size": batch, "epochs": EPOCHS}
    )
    part = _slice(data, batch * STEPS)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(recipe.to_dict(), part, factory, barrier, queue))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=ROUND_TIMEOUT) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise ConfigError(f"gpus_per_trial auto: the probe could not train: {errors[0]}")
    return results


def _slice(data: DatasetSplits, n: int) -> DatasetSplits:
    """``n`` training samples (repeated when the split is smaller), a small val and test."""
    import torch

    idx = torch.arange(n) % len(data.y_train)
    small = {}
    for part in ("val", "test"):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        small[f"x_{part}"], small[f"y_{part}"] = x[:256], y[:256]
    return dataclasses.replace(
        data, x_train=data.x_train[idx], y_train=data.y_train[idx], **small, info=dict(data.info)
    )


def _worker(recipe_dict: dict, data: Any, factory: Any, barrier: Any, queue: Any) -> None:
    """One probe process: warm up, wait for the others, time :data:`EPOCHS` epochs."""
    try:
        import torch

        from tricksearch.engine import fit
        from tricksearch.recipe import Recipe

        torch.set_num_threads(1)
        recipe = Recipe.from_dict(recipe_dict)
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        free_at_start = torch.cuda.mem_get_info()[0]
        warm = recipe.with_changes(budget=recipe.budget.to_dict() | {"epochs": 1})
        fit(warm, model=factory, data=data, device="cuda")
        torch.cuda.synchronize()
        barrier.wait(timeout=ROUND_TIMEOUT)
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        fit(recipe, model=factory, data=data, device="cuda")
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        queue.put(
            {
                "images_per_s": len(data.y_train) * recipe.budget.epochs / seconds,
                "peak_reserved": torch.cuda.max_memory_reserved(),
                "peak_allocated": torch.cuda.max_memory_allocated(),
                "reserved_then": torch.cuda.memory_reserved(),
                "free_at_start": free_at_start,
                "smi_free_in_worker": _smi_free(),
            }
        )
    except Exception as exc:
        from tricksearch.tuning._failures import cause_line

        queue.put({"error": cause_line(exc)})
