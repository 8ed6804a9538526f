"""The training state of :func:`~tricksearch.engine.fit` between two epochs, to stop and go on.

``fit(..., on_state=save)`` hands over, after every epoch, everything the next epochs depend on;
``fit(..., resume=state)`` starts after that epoch and gives the same numbers as a training that
was never interrupted (same device and thread count):

- the model, the optimizer (Lookahead's slow weights and AdaBound's steps included), the EMA
  model, fp16's loss scaler and the snapshot ensemble's members (their ``state_dict``);
- the global optimizer step (the LR schedule is a function of it), the history and the count
  of images seen; the semi-supervised trainer's state (self-training's pseudo-labels; the pool's
  batches are a function of the step);
- the random number generators every trick draws from: torch's (CPU and every CUDA device),
  Python's ``random`` and NumPy's global one (a user's model may use them). The per-step draws
  of the tricks are made on the batch's device from torch's default generator of that device
  (seeded by ``torch.manual_seed(budget.seed)``; the few host-side decisions — which mixing
  trick, λ, a box — from the CPU one), so both states are in here; the EMA's update count is
  read back from its ``n_averaged`` buffer on restore.

The state holds tensors, numbers, strings, lists and dicts only, so ``torch.load(...,
weights_only=True)`` reads it back (:func:`save_state`, :func:`load_state`).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tricksearch.errors import ConfigError

if TYPE_CHECKING:
    from tricksearch.engine.fit import EpochMetrics, _Run

__all__ = ["STATE_FORMAT", "capture", "load_state", "restore", "save_state"]

STATE_FORMAT = "tricksearch-training-state"


def capture(
    run: _Run, history: list[EpochMetrics], snapshots: list[nn.Module], images: int
) -> dict[str, Any]:
    """Everything the epochs after ``len(history)`` depend on (tensors copied to the CPU)."""
    parts = run.parts
    state: dict[str, Any] = {
        "format": STATE_FORMAT,
        "epoch": len(history),
        "step": run.step,
        "images": images,
        "history": [m.as_dict() for m in history],
        "model": _cpu(run.net.state_dict()),
        "optimizer": _cpu(parts.optimizer.state_dict()),
        "ema": None if parts.ema is None else _cpu(parts.ema.state_dict()),
        "scaler": None if run.scaler is None else run.scaler.state_dict(),
        "snapshots": [_cpu(s.state_dict()) for s in snapshots],
        "rng": _rng_state(),
        "semi": None if parts.semi is None else parts.semi.state_dict(),  # pseudo-labels
    }
    return state


def restore(
    run: _Run, state: dict[str, Any]
) -> tuple[list[dict[str, float]], list[nn.Module], int]:
    """Put ``state`` into a freshly prepared run: (history as dicts, snapshot members, images).

    The run must be built from the same recipe (and model) as the one that was captured: a
    state of another shape is refused with the parameter that differs."""
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError("resume: not a training state written by fit(on_state=…).")
    parts = run.parts
    try:
        run.net.load_state_dict(state["model"])
        parts.optimizer.load_state_dict(state["optimizer"])
        if parts.ema is not None and state["ema"] is not None:
            parts.ema.load_state_dict(state["ema"])
        if run.scaler is not None and state["scaler"] is not None:
            run.scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"resume: the training state does not fit this recipe and model ({first})."
        ) from None
    if (parts.ema is None) != (state["ema"] is None):
        raise ConfigError("resume: the training state and the recipe differ in ema.")
    snapshots = []
    for member in state["snapshots"]:
        net = copy.deepcopy(run.eval_net)
        net.load_state_dict(member)
        snapshots.append(net.eval())
    if parts.semi is not None:  # self-training's pseudo-label set (tricks/_semi_step.py)
        parts.semi.load_state_dict(state.get("semi") or {})
    run.step = int(state["step"])
    _set_rng_state(state["rng"])
    return list(state["history"]), snapshots, int(state["images"])


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state`; a damaged file is a one-line ConfigError."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, emptied, not a torch file …
        raise ConfigError(f"training state {str(path)!r}: cannot be read ({exc}).") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ConfigError(f"training state {str(path)!r}: not a tricksearch training state.")
    return state


def _cpu(obj: Any) -> Any:
    """``obj`` with every tensor detached and copied to the CPU (nested dicts/lists kept)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": [
            kind,
            torch.from_numpy(np.asarray(keys).astype(np.int64)),
            pos,
            has_gauss,
            cached,
        ],
    }


def _set_rng_state(rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
