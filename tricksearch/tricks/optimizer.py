"""Trick family ``optimizer``: which optimizer, its weight decay, Lookahead, gradient clipping.

Tricks:

- one optimizer of the exclusive group ``optimizer``: ``sgd`` (momentum, Nesterov; the default),
  ``adamw`` (Loshchilov & Hutter 2019), ``radam`` (Liu et al. 2020), ``adabound`` (Luo et al.
  2019, hand-written in :mod:`tricksearch.tricks._adabound`);
- ``weight_decay`` (L2 for SGD/RAdam/AdaBound, decoupled for AdamW; off means 0);
- ``no_bias_decay``: no decay on biases and norm weights (He et al. 2019, "Bag of Tricks");
- ``lookahead`` around any of them (Zhang et al. 2019, :mod:`tricksearch.tricks._lookahead`);
- ``grad_clip``: clip the global gradient norm (the engine calls ``clip_grad_norm_``).

``BUILDERS`` maps each trick to the function that adds it to an :class:`_OptimizerPlan`;
:func:`build_optimizer` and :func:`grad_clip_norm` read the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tricksearch.errors import ConfigError
from tricksearch.tricks._adabound import AdaBound, adabound_bounds
from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._lookahead import Lookahead
from tricksearch.tricks._section import check_positive_number, dispatch, resolve_section

__all__ = [
    "BUILDERS",
    "OPTIMIZERS",
    "AdaBound",
    "Lookahead",
    "adabound_bounds",
    "build_optimizer",
    "grad_clip_norm",
    "param_groups",
]

FAMILY = "optimizer"
#: ``TrickSpec.lr_scale`` of the Adam-like optimizers: searched among SGD-like ones, their LR
#: range is SGD's times this (Adam's usual 1e-3 against SGD's 0.05).
ADAPTIVE_LR_SCALE = 0.02
#: The members of the exclusive group ``optimizer``.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw", "radam", "adabound")


def _betas() -> tuple[Param, Param]:
    return (
        Param(
            "beta1",
            "float",
            0.9,
            "decay rate of the first-moment average",
            low=0.0,
            high=0.9999,
            search=SearchSpec(low=0.8, high=0.95),
        ),
        Param(
            "beta2",
            "float",
            0.999,
            "decay rate of the second-moment average",
            low=0.0,
            high=0.99999,
            search=SearchSpec(low=0.99, high=0.9999),
        ),
    )


register(
    TrickSpec(
        name="sgd",
        family=FAMILY,
        summary="SGD with momentum, optionally Nesterov (the baseline)",
        paper="Sutskever et al. 2013, On the importance of initialization and momentum",
        group="optimizer",
        required_default=True,
        params=(
            Param(
                "momentum",
                "float",
                0.9,
                "momentum factor",
                low=0.0,
                high=0.999,
                search=SearchSpec(low=0.8, high=0.99),
            ),
            Param(
                "nesterov",
                "bool",
                False,
                "Nesterov momentum (needs momentum > 0)",
                search=SearchSpec(choices=(False, True)),
            ),
        ),
    )
)

register(
    TrickSpec(
        name="adamw",
        family=FAMILY,
        summary="Adam with decoupled weight decay",
        paper="Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization",
        group="optimizer",
        lr_scale=ADAPTIVE_LR_SCALE,
        params=_betas(),
    )
)

register(
    TrickSpec(
        name="radam",
        family=FAMILY,
        summary="rectified Adam: the variance warm-up is built in",
        paper="Liu et al. 2020, On the Variance of the Adaptive Learning Rate and Beyond",
        group="optimizer",
        lr_scale=ADAPTIVE_LR_SCALE,
        params=_betas(),
    )
)

register(
    TrickSpec(
        name="adabound",
        family=FAMILY,
        summary="Adam whose per-element step is clipped into bounds that close on final_lr",
        paper="Luo et al. 2019, Adaptive Gradient Methods with Dynamic Bound of Learning Rate",
        group="optimizer",
        lr_scale=ADAPTIVE_LR_SCALE,
        params=(
            Param(
                "final_lr",
                "float",
                0.1,
                "the SGD-like step size the bounds converge to (scaled with the LR schedule)",
                low=1e-6,
                high=10.0,
                search=SearchSpec(low=0.01, high=0.5),
            ),
            Param(
                "gamma",
                "float",
                1e-3,
                "convergence speed of the bounds",
                low=1e-8,
                high=0.5,
                search=SearchSpec(low=1e-4, high=1e-2, log=True),
            ),
            *_betas(),
        ),
    )
)

register(
    TrickSpec(
        name="weight_decay",
        family=FAMILY,
        summary="L2 penalty on the weights (decoupled for AdamW); off means 0",
        paper="Krogh & Hertz 1992, A Simple Weight Decay Can Improve Generalization",
        params=(
            Param(
                "value",
                "float",
                5e-4,
                "weight decay coefficient",
                low=0.0,
                high=1.0,
                search=SearchSpec(low=1e-6, high=1e-2, log=True),
            ),
        ),
    )
)

register(
    TrickSpec(
        name="no_bias_decay",
        family=FAMILY,
        summary="no weight decay on biases and norm-layer weights (parameters with ndim <= 1)",
        paper="He et al. 2019, Bag of Tricks for Image Classification with CNNs",
    )
)

register(
    TrickSpec(
        name="lookahead",
        family=FAMILY,
        summary="every k steps pull slow weights toward the fast ones by alpha; wraps an optimizer",
        paper="Zhang et al. 2019, Lookahead Optimizer: k steps forward, 1 step back",
        params=(
            Param(
                "k",
                "int",
                5,
                "inner steps between two synchronisations",
                low=1,
                high=1000,
                search=SearchSpec(choices=(5, 10)),
            ),
            Param(
                "alpha",
                "float",
                0.5,
                "slow step size",
                low=0.01,
                high=1.0,
                search=SearchSpec(low=0.3, high=0.8),
            ),
        ),
    )
)

register(
    TrickSpec(
        name="grad_clip",
        family=FAMILY,
        summary="clip the global gradient norm before each step",
        paper="Pascanu et al. 2013, On the difficulty of training recurrent neural networks",
        params=(
            Param(
                "max_norm",
                "float",
                1.0,
                "largest global L2 norm of the gradients",
                low=1e-6,
                search=SearchSpec(low=0.5, high=5.0),
            ),
        ),
    )
)


def param_groups(model: nn.Module, weight_decay: float, no_bias_decay: bool) -> list[dict]:
    """Parameter groups of ``model``'s trainable parameters.

    One group with ``weight_decay``; with ``no_bias_decay`` (He et al. 2019) and a non-zero decay,
    two: ``[decayed (ndim > 1), not decayed (ndim <= 1: biases, norm weights)]``, empty ones left
    out.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("optimizer: the model has no trainable parameters.")
    if not no_bias_decay or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decayed = [p for p in params if p.ndim > 1]
    exempt = [p for p in params if p.ndim <= 1]
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": exempt, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


#: Builds the optimizer of the group ``optimizer``: ``(param groups, lr, weight_decay)``.
MakeOptimizer = Callable[[list[dict], float, float], torch.optim.Optimizer]


@dataclass
class _OptimizerPlan:
    """What the optimizer tricks that are on ask for: filled by ``BUILDERS``."""

    make: MakeOptimizer | None = None
    weight_decay: float = 0.0
    no_bias_decay: bool = False
    lookahead: dict[str, Any] | None = None
    grad_clip: float | None = None


def _sgd(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    if params["nesterov"] and params["momentum"] == 0:
        raise ConfigError(
            "optimizer.sgd.nesterov: got true with momentum 0; Nesterov needs momentum > 0."
        )
    plan.make = lambda groups, lr, wd: torch.optim.SGD(groups, lr=lr, weight_decay=wd, **params)


def _adamw(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    betas = (params["beta1"], params["beta2"])
    plan.make = lambda groups, lr, wd: torch.optim.AdamW(
        groups, lr=lr, betas=betas, weight_decay=wd
    )


def _radam(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    betas = (params["beta1"], params["beta2"])
    plan.make = lambda groups, lr, wd: torch.optim.RAdam(
        groups, lr=lr, betas=betas, weight_decay=wd
    )


def _adabound(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    betas, final_lr, gamma = (params["beta1"], params["beta2"]), params["final_lr"], params["gamma"]
    plan.make = lambda groups, lr, wd: AdaBound(
        groups, lr=lr, betas=betas, final_lr=final_lr, gamma=gamma, weight_decay=wd
    )


def _weight_decay(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    plan.weight_decay = params["value"]


def _no_bias_decay(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    plan.no_bias_decay = True


def _lookahead(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    plan.lookahead = dict(params)


def _grad_clip(plan: _OptimizerPlan, params: dict[str, Any]) -> None:
    plan.grad_clip = params["max_norm"]


#: Every optimizer trick and the function that adds it to the plan.
BUILDERS: dict[str, Callable[[_OptimizerPlan, dict[str, Any]], None]] = {
    "sgd": _sgd,
    "adamw": _adamw,
    "radam": _radam,
    "adabound": _adabound,
    "weight_decay": _weight_decay,
    "no_bias_decay": _no_bias_decay,
    "lookahead": _lookahead,
    "grad_clip": _grad_clip,
}


def _plan(section: dict[str, dict]) -> _OptimizerPlan:
    plan = _OptimizerPlan()
    for build, params in dispatch(resolve_section(section, FAMILY), BUILDERS, FAMILY):
        build(plan, params)
    return plan


def build_optimizer(
    section: dict[str, dict], model: nn.Module, *, lr: float
) -> torch.optim.Optimizer:
    """The optimizer of the ``optimizer`` section for ``model``, at peak learning rate ``lr``.

    ``sgd`` is used when the section names no optimizer; ``lookahead`` wraps the result.
    """
    check_positive_number(lr, "lr")
    plan = _plan(section)
    assert plan.make is not None  # resolve_section adds the group's default, sgd
    groups = param_groups(model, plan.weight_decay, plan.no_bias_decay)
    optimizer = plan.make(groups, lr, plan.weight_decay)
    if plan.lookahead is not None:
        optimizer = Lookahead(optimizer, **plan.lookahead)
    return optimizer


def grad_clip_norm(section: dict[str, dict]) -> float | None:
    """The ``max_norm`` to clip the global gradient norm to, or ``None`` when clipping is off."""
    return _plan(section).grad_clip
