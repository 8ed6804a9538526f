"""The pre-flight, before Ray starts: what cannot train on this model and data is found here.

    the baseline recipe, one epoch of one batch on a tiny slice of the real data, on the target
    device (the model built on the real data shape: lazy modules materialised)
        -> fails: ConfigError "the model cannot train on this data: <ExcType>: <first line>"
    every trick the space can switch on (each member of an exclusive group too), alone, the same
    way -> a trick that raises is left out of the space, with a note
        "<trick>: left out: <ExcType>: <first line>"

Each check is ``engine.fit`` itself (the code path a trial runs: the pieces built from the recipe,
augmentation, mixing, EMA, evaluation, precision), on a copy of the data with a few samples per
split, so the whole pre-flight costs seconds. The data kinds and image sizes the tricks declare
are applied before (``SearchSpace.for_data``); the pre-flight catches what declarations miss, so
that no trial fails for an incompatibility. A teacher (distillation) is built, not trained, and
nothing is cached: ``TRICKSEARCH_CACHE`` points at a throwaway folder while the checks run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from tricksearch.errors import ConfigError
from tricksearch.tuning._console import say
from tricksearch.tuning._failures import cause_line

if TYPE_CHECKING:
    from torch import nn

    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace, TrickEntry

__all__ = ["PreflightResult", "preflight", "tiny_splits", "trick_recipe"]

#: Samples per split of the data copy the pre-flight trains on, and its batch size: one
#: training step per check, an evaluation on a few dozen samples.
TRAIN_SAMPLES = 16
EVAL_SAMPLES = 32


@dataclass(frozen=True)
class PreflightResult:
    """What the pre-flight found. ``space``: the space without the tricks that failed (their
    notes added to ``space.notes``); ``notes``: those notes alone; ``left_out``: trick -> the
    error's first line; ``checked``: the tricks tried, in the space's order; ``seconds``: the
    pre-flight's cost; ``device``: where it trained, ``target`` (the trials' device) or the CPU
    when this machine lacks it."""

    space: SearchSpace
    notes: list[str]
    seconds: float
    checked: list[str]
    left_out: dict[str, str]
    device: str
    target: str

    @property
    def line(self) -> str:
        """``"pre-flight: 31 tricks checked in 4.2 s, 3 left out"``."""
        n = len(self.checked)
        where = "" if self.device == self.target else f" on {self.device} (no {self.target} here)"
        return (
            f"pre-flight: {n} trick{'s' if n != 1 else ''} checked in {self.seconds:.1f} s"
            f"{where}, {len(self.left_out)} left out"
        )


def preflight(
    space: SearchSpace,
    base: Recipe,
    data: DatasetSplits,
    model_factory: Callable[..., nn.Module] | None = None,
    device: str = "cpu",
    *,
    out: IO[str] | None = None,
) -> PreflightResult:
    """Train the baseline, then each trick of ``space`` alone, for one step on a tiny copy of
    ``data`` on ``device`` (see the module docstring); the cost line goes to ``out``.

    Raises :class:`ConfigError` when the baseline itself cannot train (nothing else is lost:
    Ray has not started). When ``device`` is ``"cuda"`` and this machine has none (a driver
    joining a cluster), the checks run on the CPU with the space fitted to it
    (``SearchSpace.for_device``), so a GPU-only setting is not left out for it.
    """
    import torch

    from tricksearch.api import torch_threads

    t0 = time.perf_counter()
    here = device
    if device.startswith("cuda") and not torch.cuda.is_available():
        here = "cpu"
    tried = space if here == device else space.for_device(here)
    small = tiny_splits(data)
    probe = _probe_recipe(base, len(small.y_train))
    # One torch thread: batches of 16 gain nothing from more, and on a busy machine the threads'
    # spinning made the pre-flight 20 times slower (2.6 s instead of 0.1 s).
    with _throwaway_cache(), torch_threads(1):
        failure = _try(probe, small, model_factory, here)
        if failure is not None:
            label = base.model.name if model_factory is None else _label(model_factory)
            raise ConfigError(
                f"pre-flight: model {label!r} cannot train on this data ({data.summary()}): "
                f"{failure}"
            )
        checked = [n for n in tried.tricks_included() if n in space.tricks]
        left_out: dict[str, str] = {}
        for name in checked:
            try:
                recipe = trick_recipe(probe, tried.tricks[name])
            except Exception as exc:  # the recipe itself is refused (a contract)
                left_out[name] = cause_line(exc)
                continue
            failure = _try(recipe, small, model_factory, here)
            if failure is not None:
                left_out[name] = failure
    notes = [f"{name}: left out: {cause}" for name, cause in left_out.items()]
    result = PreflightResult(
        space=_without(space, left_out, notes),
        notes=notes,
        seconds=time.perf_counter() - t0,
        checked=checked,
        left_out=left_out,
        device=here,
        target=device,
    )
    say(out, result.line)
    return result


def tiny_splits(data: DatasetSplits) -> DatasetSplits:
    """A copy of ``data`` with :data:`TRAIN_SAMPLES` training samples and :data:`EVAL_SAMPLES`
    val, test and unlabelled samples (when it has a pool), spread evenly over each split (so over
    its classes when it is sorted), with everything else (kind, classes, normalisation) kept."""

    def spread(n_total: int, n: int) -> slice | list[int]:
        if n_total <= n:
            return slice(None)
        return [round(i * (n_total - 1) / (n - 1)) for i in range(n)]

    parts = {}
    for part, n in (("train", TRAIN_SAMPLES), ("val", EVAL_SAMPLES), ("test", EVAL_SAMPLES)):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        keep = spread(len(y), n)
        parts[f"x_{part}"], parts[f"y_{part}"] = x[keep], y[keep]
    if data.x_unlabeled is not None:  # a small pool: the semi tricks train on it
        parts["x_unlabeled"] = data.x_unlabeled[spread(len(data.x_unlabeled), EVAL_SAMPLES)]
    return dataclasses.replace(data, **parts, info=dict(data.info))


def trick_recipe(probe: Recipe, entry: TrickEntry) -> Recipe:
    """``probe`` with the trick of ``entry`` on, alone (other members of its group off): its
    default parameters, or the values the space fixes."""
    from tricksearch.tricks import SearchSpec

    fixed = {k: v for k, v in entry.params.items() if not isinstance(v, SearchSpec)}
    return probe.with_trick(entry.name, fixed)


# --- helpers -----------------------------------------------------------------------------------
def _probe_recipe(base: Recipe, n_train: int) -> Recipe:
    """The base recipe for one epoch of one batch (at most :data:`TRAIN_SAMPLES` samples)."""
    budget = base.budget.to_dict() | {
        "epochs": 1,
        "batch_size": max(1, min(TRAIN_SAMPLES, n_train)),
    }
    return base.with_changes(budget=budget)


def _try(
    recipe: Recipe,
    data: DatasetSplits,
    model_factory: Callable[..., nn.Module] | None,
    device: str,
) -> str | None:
    """None when ``recipe`` trains (a loss that diverges in one step is the value's doing, not
    an incompatibility), else the error's cause in one line."""
    from tricksearch.engine import TrainingDiverged, fit

    try:
        teacher = _teacher(recipe, data, device)
        fit(recipe, model=model_factory, data=data, device=device, teacher=teacher)
    except TrainingDiverged:
        return None
    except Exception as exc:
        return cause_line(exc)
    return None


def _teacher(recipe: Recipe, data: DatasetSplits, device: str) -> nn.Module | None:
    """For a recipe with distillation, its teacher built on the data but not trained (a trained
    one is what a trial gets; here only that it loads or builds, and fits the data, counts);
    None otherwise."""
    from pathlib import Path

    from tricksearch.engine import load_checkpoint, make_model
    from tricksearch.engine.teacher import teacher_recipe
    from tricksearch.tricks.loss import uses_teacher

    if not uses_teacher(recipe.loss):
        return None

    name = recipe.loss["distillation"]["teacher"]
    if name.endswith(".pt") or Path(name).is_file():
        return load_checkpoint(name, map_location=device)
    return make_model(teacher_recipe(recipe), data, device=device)


def _without(space: SearchSpace, left_out: dict[str, str], notes: list[str]) -> SearchSpace:
    """A copy of ``space`` without the tricks ``left_out``, with ``notes`` added (as
    ``SearchSpace.for_data`` makes its copies)."""
    if not left_out:
        return space
    from tricksearch.spaces import SearchSpace

    return SearchSpace(
        {n: e for n, e in space.tricks.items() if n not in left_out},
        lr=space.lr,
        batch_size=space.batch_size,
        name=space.name,
        description=space.description,
        notes=[*space.given_notes, *notes],
    )


def _label(factory: Callable[..., nn.Module]) -> str:
    from tricksearch.models import python_model_name

    return python_model_name(factory)


@contextlib.contextmanager
def _throwaway_cache() -> Iterator[None]:
    """``TRICKSEARCH_CACHE`` pointed at a temporary folder, removed afterwards: nothing the
    pre-flight makes (a teacher) is found by the real search."""
    before = os.environ.get("TRICKSEARCH_CACHE")
    with tempfile.TemporaryDirectory(prefix="tricksearch-preflight-") as tmp:
        os.environ["TRICKSEARCH_CACHE"] = tmp
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("TRICKSEARCH_CACHE", None)
            else:
                os.environ["TRICKSEARCH_CACHE"] = before
