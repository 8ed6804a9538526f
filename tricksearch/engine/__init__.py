"""The training engine: ``fit(recipe, model=…, data=…, on_epoch=…)``. Torch only."""

from __future__ import annotations

from tricksearch.engine.checkpoint import load_checkpoint, save_checkpoint
from tricksearch.engine.fit import (
    EpochMetrics,
    FitResult,
    TrainingDiverged,
    evaluate,
    fit,
    load_data,
    make_model,
    materialize_lazy,
    resolve_device,
)

__all__ = [
    "EpochMetrics",
    "FitResult",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_data",
    "make_model",
    "materialize_lazy",
    "resolve_device",
    "save_checkpoint",
]
