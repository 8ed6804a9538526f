"""Trials packed on one GPU (``--gpus-per-trial auto``): the rule, and what an OOM changes.

The rule (:func:`pack`), pure, from numbers the probe (``_probe``) measured:

    k_memory     = floor(headroom × free / (peak + context))     headroom 0.8 of the free memory
    k_throughput = walk up the measured levels (1, 2, 4, 8 processes at once): a level is taken
                   while its total images/s beat the level taken before by ≥ ``min_gain`` (15 %),
                   the first that does not ends the walk (the GPU is busy: more trials would only
                   share it more thinly); never beyond the largest level measured
    k            = max(1, min(k_memory, k_throughput, max_k))

``peak`` is the trial's peak of reserved memory (``torch.cuda.max_memory_reserved``, what the
caching allocator holds, not just what tensors use), measured on the heaviest configuration the
space can produce (the largest batch size; see ``_probe``); ``context`` is a CUDA context's own
memory (measured with ``nvidia-smi`` where it answers, else :data:`CONTEXT_BYTES`). The trials
then ask Ray for ``1/k`` GPU each.

An out-of-memory error inside a trial is not the configuration's fault: the trial is reported as
``OOM`` (``OOM_KEY`` in its last result; Optuna FAIL, so samplers skip it, with ``OOM_ATTR``;
never "failed"), and when it shared its GPU, its configuration is queued again and the trials
created after it ask for more GPU (:meth:`PackingState.after_oom`: one trial fewer per GPU
than the OOM ran with). The share lives in ``RUN/packing.json``, read by Ray's resources callable
(:func:`packed_resources`) at every trial's creation, so a resume keeps the lowered packing.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AUTO",
    "CONTEXT_BYTES",
    "OOM_ATTR",
    "OOM_KEY",
    "PACKING_FILE",
    "Packing",
    "PackingState",
    "is_oom",
    "mps_line",
    "pack",
    "packed_resources",
    "packing_line",
    "parse_gpus",
]

AUTO = "auto"
#: Memory a CUDA context takes besides the tensors when it cannot be measured (300–500 MiB seen).
CONTEXT_BYTES = 512 * 2**20
#: The share of the free memory the packing may plan with (the rest is headroom: fragmentation,
#: tricks whose extra state the probe's configurations lack).
HEADROOM = 0.8
#: A packing level is worth it when its total throughput beats the one below by this factor.
MIN_GAIN = 1.15
#: Result key of a trial that ran out of GPU memory, and the Optuna user attribute it leaves
#: (the GPU share it ran with).
OOM_KEY = "trial_oom"
OOM_ATTR = "out_of_gpu_memory"
#: The packing's state in the run folder: the GPU share the next trials ask for, and the OOMs.
PACKING_FILE = "packing.json"


def parse_gpus(value: Any) -> float | str:
    """``--gpus-per-trial``: ``auto`` or a number >= 0; one line otherwise."""
    from tricksearch.errors import ConfigError

    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"gpus_per_trial: got {value!r}, expected 'auto' or a number >= 0."
        ) from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ConfigError(f"gpus_per_trial: got {value!r}, expected 'auto' or a number >= 0.")
    return number


@dataclass(frozen=True)
class Packing:
    """What :func:`pack` decided: ``k`` trials per GPU, the two bounds, and why in one line."""

    k: int
    k_memory: int
    k_throughput: int
    reason: str

    @property
    def share(self) -> float:
        return 1.0 / self.k


def pack(
    free_bytes: float,
    peak_bytes: float,
    context_bytes: float = CONTEXT_BYTES,
    throughput_by_k: Mapping[int, float] | None = None,
    *,
    headroom: float = HEADROOM,
    min_gain: float = MIN_GAIN,
    max_k: int | None = None,
) -> Packing:
    """Trials per GPU: as many as fit in ``headroom`` of ``free_bytes`` (each ``peak_bytes`` +
    ``context_bytes``) and as still raise the total throughput (``throughput_by_k``: total
    images/s with k processes at once; None or one level: memory decides). See the module."""
    per_trial = max(1.0, float(peak_bytes) + float(context_bytes))
    k_memory = max(0, math.floor(headroom * float(free_bytes) / per_trial))
    levels = sorted((int(k), float(v)) for k, v in (throughput_by_k or {}).items() if k >= 1)
    if len(levels) < 2:
        k_throughput = k_memory if k_memory >= 1 else 1
        why_tp = "no throughput levels measured"
    else:
        k_throughput, best = levels[0]
        why_tp = f"the GPU kept gaining up to {levels[-1][0]} at once"
        for k, total in levels[1:]:
            if total < min_gain * best:
                why_tp = (
                    f"{k} at once gave {total:.0f} images/s vs {best:.0f} with {k_throughput}: "
                    f"the GPU is busy"
                )
                break
            k_throughput, best = k, total
    k = max(1, min(k_memory, k_throughput, max_k or k_throughput))
    mib = per_trial / 2**20
    if k_memory < 1:
        reason = (
            f"a trial needs {mib:.0f} MiB but {headroom:.0%} of the free "
            f"{free_bytes / 2**20:.0f} MiB is less: one per GPU, and an OOM is reported as such"
        )
    else:
        reason = (
            f"memory fits {k_memory} ({mib:.0f} MiB each incl. the CUDA context, "
            f"{headroom:.0%} of {free_bytes / 2**30:.1f} GiB free); throughput: {why_tp}"
        )
        if max_k and max_k < min(k_memory, k_throughput):
            reason += f"; capped at {max_k} by the CPUs"
    return Packing(k, k_memory, k_throughput, reason)


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is CUDA running out of memory (``torch.cuda.OutOfMemoryError``, or a
    ``RuntimeError`` with CUDA's message, as cuDNN and older code raise it)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


@dataclass
class PackingState:
    """The GPU share the next trials ask for, kept in ``path`` (``RUN/packing.json``) so that
    Ray's resources callable (a copy, in Ray's registry) and a resume read the same number.
    ``events``: one ``{"trial", "share", "new_share"}`` per OOM."""

    path: Path
    share: float
    start_share: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path, share: float) -> PackingState:
        """The state in ``path`` when a resumed search left one, else a new one at ``share``."""
        try:
            raw = json.loads(path.read_text())
            state = cls(path, float(raw["share"]), float(raw["start_share"]), list(raw["events"]))
        except (OSError, ValueError, KeyError, TypeError):
            state = cls(path, share, share)
        state.save()
        return state

    def save(self) -> None:
        data = {"share": self.share, "start_share": self.start_share, "events": self.events}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.path)

    @staticmethod
    def requeue(trial_share: float) -> bool:
        """A trial that ran out of memory is run again when it shared its GPU (alone on it, the
        configuration does not fit this GPU: it stays OOM)."""
        return 0.0 < trial_share < 1.0

    def after_oom(self, trial: str, trial_share: float) -> float:
        """An OOM in a trial that ran with ``trial_share``: the next trials ask for the share of
        one trial fewer per GPU (``1/(k-1)``, k = ``floor(1/trial_share)``), unless an earlier
        OOM lowered it as far already. Returns the share from now on."""
        new = self.share
        if self.requeue(trial_share):
            k = max(1, math.floor(1.0 / trial_share + 1e-9))
            new = max(self.share, 1.0 / max(1, k - 1))
        self.events.append({"trial": trial, "share": trial_share, "new_share": new})
        self.share = new
        self.save()
        return new

    def line(self) -> str | None:
        """The closing line about packing and OOMs (None without a GPU share or an OOM)."""
        if not self.events:
            if 0 < self.start_share < 1:
                return f"GPU packing: {_per_gpu(self.start_share)}; no trial ran out of memory"
            return None
        n, rerun = len(self.events), sum(self.requeue(e["share"]) for e in self.events)
        text = (
            f"GPU memory: {n} trial{'s' if n != 1 else ''} ran out of memory (OOM, not counted "
            "as a failed configuration"
        )
        text += f"; {rerun} queued again)" if rerun else ")"
        if self.share != self.start_share:
            text += f"; packing lowered from {_per_gpu(self.start_share)} to {_per_gpu(self.share)}"
        return text


def packing_line(run_dir: Path, n_oom: int) -> str | None:
    """After the trials: the packing and its OOMs (``RUN/packing.json``), or the OOMs alone
    (trials that shared no GPU); None when there is nothing to say."""
    path = run_dir / PACKING_FILE
    if path.is_file():
        return PackingState.open(path, 0.0).line()
    if n_oom:
        return (
            f"memory: {n_oom} trial{'s' if n_oom != 1 else ''} ran out of memory (OOM, not "
            "counted as a failed configuration)"
        )
    return None


def _per_gpu(share: float) -> str:
    k = 1.0 / share
    shown = f"{k:.0f}" if abs(k - round(k)) < 1e-6 else f"{k:.2f}"
    return f"{shown} trial{'s' if k != 1 else ''} per GPU ({share:g} GPU each)"


def packed_resources(config: dict[str, Any], *, path: str, cpu: float, share: float) -> dict:
    """Ray's resources of a trial at its creation: ``cpu`` CPUs and the GPU share the packing
    holds now (``path``), ``share`` when it cannot be read. Module-level: Ray pickles it."""
    try:
        share = float(json.loads(Path(path).read_text())["share"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {"cpu": cpu, "gpu": share}


def mps_line() -> str | None:
    """CUDA MPS, when its control program is installed: whether a daemon runs (then packed trials
    run their kernels concurrently instead of time-slicing); never started or required here."""
    import os

    control = shutil.which("nvidia-cuda-mps-control")
    if control is None:
        return None
    pipe = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"))
    if (pipe / "control").exists():
        return "CUDA MPS daemon running: packed trials share the GPU's SMs concurrently"
    return (
        "CUDA MPS is available but not running; `nvidia-cuda-mps-control -d` before the search "
        "lets packed trials run concurrently instead of time-slicing (optional)"
    )
