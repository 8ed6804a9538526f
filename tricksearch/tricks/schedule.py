"""Trick family ``schedule``: the learning rate as a pure function of the global step.

Tricks (papers in the declarations): ``lr_scaling`` (lr = base_lr · batch_size / 256, or its
square root), ``warmup`` (a linear ramp or a constant small LR for the first epochs, in steps), and
one LR decay of the exclusive group ``decay``, starting where the warmup ends: ``constant`` (the
default), ``step``, ``linear``, ``cosine``, ``cosine_restarts`` (SGDR, optional snapshot ensemble).

``BUILDERS`` maps each trick to the function that adds it to a :class:`_SchedulePlan`;
:func:`make_lr_schedule` turns the plan into an :class:`LRSchedule`, whose :meth:`LRSchedule.lr_at`
takes an explicit step and keeps no state (each decay's formula is dispatched by name); the same
numbers are available as a ``LambdaLR`` for a user's own loop.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._section import (
    check_positive_int,
    check_positive_number,
    dispatch,
    resolve_section,
)

__all__ = ["BUILDERS", "DECAYS", "LRSchedule", "make_lr_schedule", "scaled_lr"]

FAMILY = "schedule"
#: The members of the exclusive group ``decay``, in the order the search lists them.
DECAYS: tuple[str, ...] = ("constant", "step", "linear", "cosine", "cosine_restarts")
WARMUP_KINDS: tuple[str, ...] = ("linear", "constant")


def _min_lr_factor() -> Param:
    return Param(
        "min_lr_factor",
        "float",
        0.0,
        "floor of the decay, as a fraction of the peak LR",
        low=0.0,
        high=1.0,
        search=SearchSpec(low=0.0, high=0.1),
    )


def _declare(name: str, **fields: Any) -> TrickSpec:
    """Register a schedule trick (``fields``: those of :class:`TrickSpec`)."""
    return register(TrickSpec(name=name, family=FAMILY, **fields))


_declare(
    "lr_scaling",
    summary="scale the base LR with the batch size: * bs/ref (linear) or * sqrt(bs/ref)",
    paper="Goyal et al. 2017, Accurate, Large Minibatch SGD; He et al. 2019, Bag of Tricks",
    params=(
        Param(
            "rule",
            "choice",
            "linear",
            "linear: lr * bs/ref; sqrt: lr * sqrt(bs/ref)",
            choices=("linear", "sqrt"),
            search=SearchSpec(choices=("linear", "sqrt")),
        ),
        Param("reference_batch", "int", 256, "batch size at which lr = base_lr", low=1),
    ),
)

_declare(
    "warmup",
    summary="start with a small LR: linear ramp or constant, for the first epochs",
    paper="Goyal et al. 2017 (gradual, linear); He et al. 2016 (constant)",
    params=(
        Param(
            "epochs",
            "float",
            5.0,
            "length of the warmup in epochs (fractions allowed; clamped to the run)",
            low=0.0,
            search=SearchSpec(low=0.0, high=10.0),
        ),
        Param(
            "kind",
            "choice",
            "linear",
            "linear: ramp from start_factor·lr to lr; constant: start_factor·lr, then lr",
            choices=WARMUP_KINDS,
            search=SearchSpec(choices=WARMUP_KINDS),
        ),
        Param(
            "start_factor",
            "float",
            0.1,
            "LR at the first step, as a fraction of the peak LR",
            low=1e-6,
            high=1.0,
            search=SearchSpec(low=0.01, high=0.3),
        ),
    ),
)

_declare(
    "constant",
    summary="no decay: the peak LR after the warmup (the baseline)",
    group="decay",
    required_default=True,
)

_declare(
    "step",
    summary="multiply the LR by gamma every fraction of the run after the warmup",
    paper="He et al. 2016, Deep Residual Learning (÷10 at fixed epochs)",
    group="decay",
    params=(
        Param(
            "every_fraction",
            "float",
            1 / 3,
            "decay period, as a fraction of the steps after the warmup",
            low=0.01,
            high=1.0,
            search=SearchSpec(low=0.1, high=1.0),
        ),
        Param(
            "gamma",
            "float",
            0.1,
            "factor applied at each decay",
            low=1e-6,
            high=1.0,
            search=SearchSpec(low=0.1, high=0.5),
        ),
    ),
)

_declare(
    "linear",
    summary="linear decay from the peak LR to min_lr_factor * peak at the end of the run",
    group="decay",
    params=(_min_lr_factor(),),
)

_declare(
    "cosine",
    summary="cosine decay ½(1+cos(πt/T)) from the peak LR to a floor, after the warmup",
    paper="Loshchilov & Hutter 2017, SGDR; He et al. 2019, Bag of Tricks",
    group="decay",
    params=(_min_lr_factor(),),
)

_declare(
    "cosine_restarts",
    summary="cosine restarted every T0 epochs, cycles * t_mult; optional snapshot ensemble",
    paper="Loshchilov & Hutter 2017, SGDR; Huang et al. 2017, Snapshot Ensembles",
    group="decay",
    params=(
        Param(
            "t0_epochs",
            "int",
            5,
            "length of the first cycle in epochs, counted from the end of the warmup",
            low=1,
            search=SearchSpec(low=1, high=10, step=1),
        ),
        Param(
            "t_mult",
            "int",
            1,
            "each cycle is t_mult times longer than the previous one",
            low=1,
            high=10,
            search=SearchSpec(choices=(1, 2)),
        ),
        _min_lr_factor(),
        Param(
            "snapshot_ensemble",
            "bool",
            False,
            "evaluate the ensemble of the models saved at the end of each cycle",
            search=SearchSpec(choices=(False, True)),
        ),
    ),
)


@dataclass(frozen=True)
class LRSchedule:
    """The learning rate of a whole run, as a pure function of the global step (0-based).

    The step counts optimizer steps; ``warmup_steps`` steps of warmup come first, then the decay,
    whose own clock ``t = step - warmup_steps`` runs over ``total_steps - warmup_steps`` steps.
    Steps past the end keep the last value of ``linear``/``cosine`` (their floor); ``step`` and
    ``cosine_restarts`` go on with their rule.
    """

    peak_lr: float
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int = 0
    warmup_kind: str = "linear"
    start_factor: float = 1.0
    decay: str = "constant"
    min_lr_factor: float = 0.0
    step_every: int = 1
    gamma: float = 0.1
    t0_steps: int = 1
    t_mult: int = 1
    snapshot_ensemble: bool = False

    def __post_init__(self) -> None:
        checks = (
            (self.total_steps >= 1, "total_steps >= 1"),
            (self.steps_per_epoch >= 1, "steps_per_epoch >= 1"),
            (0 <= self.warmup_steps <= self.total_steps, "0 <= warmup_steps <= total_steps"),
            (self.warmup_kind in WARMUP_KINDS, f"warmup_kind in {WARMUP_KINDS}"),
            (0.0 < self.start_factor <= 1.0, "0 < start_factor <= 1"),
            (self.decay in DECAYS, f"decay in {DECAYS}"),
            (0.0 <= self.min_lr_factor <= 1.0, "0 <= min_lr_factor <= 1"),
            (self.step_every >= 1, "step_every >= 1"),
            (0.0 < self.gamma <= 1.0, "0 < gamma <= 1"),
            (self.t0_steps >= 1 and self.t_mult >= 1, "t0_steps >= 1 and t_mult >= 1"),
        )
        for ok, rule in checks:
            if not ok:
                raise ValueError(f"LRSchedule: `{rule}` must hold, but got {self!r}.")

    @property
    def decay_steps(self) -> int:
        """Length of the decay, ``T`` in the formulas: the steps after the warmup."""
        return self.total_steps - self.warmup_steps

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        return self.peak_lr * self.factor_at(step)

    def factor_at(self, step: int) -> float:
        """``lr_at(step) / peak_lr``: the multiplier a ``LambdaLR`` applies."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be an integer >= 0, but got {step!r}.")
        if step < self.warmup_steps:
            return self._warmup_factor(step)
        return self._decay_factor(step - self.warmup_steps)

    def snapshot_epochs(self) -> list[int]:
        """0-based epochs that end a SGDR cycle, when the snapshot ensemble is on; else ``[]``.

        Only cycles that finish within the run count; a cycle that ends inside an epoch (a
        fractional warmup) is snapshotted at the end of that epoch.
        """
        if self.decay != "cosine_restarts" or not self.snapshot_ensemble:
            return []
        epochs = {(end - 1) // self.steps_per_epoch for end in self._cycle_ends()}
        return sorted(epochs)

    def torch_scheduler(self, optimizer: torch.optim.Optimizer) -> LambdaLR:
        """The same schedule as a ``LambdaLR`` (call ``.step()`` after every optimizer step).

        ``LambdaLR`` multiplies each group's LR at construction time, so build the optimizer with
        ``lr=self.peak_lr``.
        """
        return LambdaLR(optimizer, lr_lambda=self.factor_at)

    def _warmup_factor(self, step: int) -> float:
        if self.warmup_kind == "constant":
            return self.start_factor
        return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps

    def _decay_factor(self, t: int) -> float:
        return _DECAY_FACTORS[self.decay](self, t)

    def _progress(self, t: int) -> float:
        """How far the decay clock ``t`` is through the run, 0..1 (linear and cosine)."""
        return 1.0 if self.decay_steps == 0 else min(t, self.decay_steps) / self.decay_steps

    def _cycle_progress(self, t: int) -> float:
        """How far ``t`` is through its SGDR cycle, 0..1 (cosine_restarts)."""
        t_cur, t_i = self._cycle_position(t)
        return t_cur / t_i

    def _cosine(self, progress: float) -> float:
        floor = self.min_lr_factor
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _cycle_position(self, t: int) -> tuple[int, int]:
        """(steps into the current SGDR cycle, length of that cycle)."""
        if self.t_mult == 1:
            return t % self.t0_steps, self.t0_steps
        length = self.t0_steps
        while t >= length:  # cycles grow geometrically: a few iterations
            t -= length
            length *= self.t_mult
        return t, length

    def _cycle_ends(self) -> list[int]:
        """Global steps at which a SGDR cycle ends (exclusive), within the run."""
        ends, end, length = [], self.warmup_steps + self.t0_steps, self.t0_steps
        while end <= self.total_steps:
            ends.append(end)
            length *= self.t_mult
            end += length
        return ends


#: The decay formula of each member of the group ``decay``: ``(schedule, t) -> factor``.
_DECAY_FACTORS: dict[str, Callable[[LRSchedule, int], float]] = {
    "constant": lambda s, t: 1.0,
    "step": lambda s, t: s.gamma ** (t // s.step_every),
    "linear": lambda s, t: 1.0 - (1.0 - s.min_lr_factor) * s._progress(t),
    "cosine": lambda s, t: s._cosine(s._progress(t)),
    "cosine_restarts": lambda s, t: s._cosine(s._cycle_progress(t)),
}


def _scale(base_lr: float, batch_size: int, params: dict[str, Any]) -> float:
    ratio = batch_size / params["reference_batch"]
    return float(base_lr) * (ratio if params["rule"] == "linear" else math.sqrt(ratio))


def scaled_lr(section: dict[str, dict], base_lr: float, batch_size: int) -> float:
    """The peak LR: ``base_lr`` scaled by ``lr_scaling`` if it is on, else ``base_lr`` unchanged.

    Linear scaling rule (Goyal et al. 2017): lr = base_lr * batch_size / reference_batch; the
    ``sqrt`` rule multiplies by the square root of that ratio instead.
    """
    check_positive_number(base_lr, "base_lr")
    check_positive_int(batch_size, "batch_size")
    scaling = _plan(section).scaling
    return float(base_lr) if scaling is None else _scale(base_lr, batch_size, scaling)


@dataclass
class _SchedulePlan:
    """What the schedule tricks that are on ask for: filled by ``BUILDERS``."""

    scaling: dict[str, Any] | None = None
    warmup: dict[str, Any] | None = None
    decay: str = "constant"
    decay_params: dict[str, Any] = field(default_factory=dict)


def _lr_scaling(plan: _SchedulePlan, params: dict[str, Any]) -> None:
    plan.scaling = params


def _warmup(plan: _SchedulePlan, params: dict[str, Any]) -> None:
    plan.warmup = params


def _decay(name: str) -> Callable[[_SchedulePlan, dict[str, Any]], None]:
    def build(plan: _SchedulePlan, params: dict[str, Any]) -> None:
        plan.decay, plan.decay_params = name, params

    return build


#: Every schedule trick and the function that adds it to the plan.
BUILDERS: dict[str, Callable[[_SchedulePlan, dict[str, Any]], None]] = {
    "lr_scaling": _lr_scaling,
    "warmup": _warmup,
    **{name: _decay(name) for name in DECAYS},
}


def _plan(section: dict[str, dict]) -> _SchedulePlan:
    plan = _SchedulePlan()
    for build, params in dispatch(resolve_section(section, FAMILY), BUILDERS, FAMILY):
        build(plan, params)
    return plan


def make_lr_schedule(
    section: dict[str, dict],
    *,
    base_lr: float,
    batch_size: int,
    epochs: int,
    steps_per_epoch: int,
) -> LRSchedule:
    """Build the :class:`LRSchedule` of a run from the validated ``schedule`` section.

    The warmup is rounded to whole steps and clamped to the run; the decay (``constant`` when the
    section names none) starts where the warmup ends.
    """
    check_positive_int(epochs, "epochs")
    check_positive_int(steps_per_epoch, "steps_per_epoch")
    plan = _plan(section)
    total = epochs * steps_per_epoch
    warmup = _warmup_fields(plan.warmup, total, steps_per_epoch)
    decay_steps = total - warmup["warmup_steps"]
    fields = _DECAY_FIELDS[plan.decay](plan.decay_params, decay_steps, steps_per_epoch)
    return LRSchedule(
        peak_lr=scaled_lr(section, base_lr, batch_size),
        total_steps=total,
        steps_per_epoch=steps_per_epoch,
        decay=plan.decay,
        **warmup,
        **fields,
    )


def _warmup_fields(params: dict[str, Any] | None, total: int, steps_per_epoch: int) -> dict:
    if params is None:
        return {"warmup_steps": 0}
    steps = min(total, _round_half_up(params["epochs"] * steps_per_epoch))
    return {
        "warmup_steps": steps,
        "warmup_kind": params["kind"],
        "start_factor": params["start_factor"],
    }


def _step_fields(params: dict[str, Any], decay_steps: int, steps_per_epoch: int) -> dict:
    every = max(1, _round_half_up(params["every_fraction"] * decay_steps))
    return {"step_every": every, "gamma": params["gamma"]}


def _restarts_fields(params: dict[str, Any], decay_steps: int, steps_per_epoch: int) -> dict:
    return {
        "t0_steps": params["t0_epochs"] * steps_per_epoch,
        "t_mult": params["t_mult"],
        "min_lr_factor": params["min_lr_factor"],
        "snapshot_ensemble": params["snapshot_ensemble"],
    }


def _floor_fields(params: dict[str, Any], decay_steps: int, steps_per_epoch: int) -> dict:
    return {"min_lr_factor": params["min_lr_factor"]}


#: The :class:`LRSchedule` fields of each decay: ``(params, decay_steps, steps_per_epoch)``.
_DECAY_FIELDS: dict[str, Callable[[dict[str, Any], int, int], dict]] = {
    "constant": lambda params, decay_steps, steps_per_epoch: {},
    "step": _step_fields,
    "linear": _floor_fields,
    "cosine": _floor_fields,
    "cosine_restarts": _restarts_fields,
}


def _round_half_up(x: float) -> int:
    """Whole steps from a fraction of the run: 2.5 -> 3 (``round`` would give 2)."""
    return math.floor(x + 0.5)
