"""Trick family ``model_tweaks``: options of the model builder and an init hook.

Tricks (which models can take them is the models' contract: ``needs_residual``, ``model_option``):

- ``zero_gamma`` — set γ = 0 in the last normalisation layer of every residual block, so each
  block starts as the identity (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training
  ImageNet in 1 Hour"; He et al. 2019, "Bag of Tricks for Image Classification with Convolutional
  Neural Networks"). Acts on every module with a ``last_bn`` attribute, which the models package
  sets on each residual block (torchvision ResNets included); other norm layers are left alone.
- ``dropout`` — dropout with probability ``p`` before the classifier → model option ``dropout``.
- ``group_norm`` — GroupNorm with ``groups`` groups instead of BatchNorm (Wu & He 2018, "Group
  Normalization") → model options ``norm="group"``, ``norm_groups``; the model builder checks
  that the channel counts divide.
- ``activation`` — GELU, SiLU or CELU instead of ReLU (ReLU is the default, i.e. "off") → model
  option ``activation``.
- ``resnet_variant`` — ResNet-B/C/D (He et al. 2019): B moves the stride 2 to the 3×3 conv, C
  replaces the 7×7 stem by three 3×3 convs, D average-pools before the 1×1 downsample → model
  option ``variant``.
- ``sync_bn`` — SyncBatchNorm: BatchNorm statistics over the global batch of a data-parallel
  trial on several GPUs (``nn.SyncBatchNorm.convert_sync_batchnorm``, applied by
  :mod:`tricksearch.engine.distributed`). torch's SyncBatchNorm needs CUDA: on a CPU, one GPU or
  a model without BatchNorm the model keeps plain BatchNorm (one note; a search leaves it out).

``BUILDERS`` maps each trick to the function that adds it to a :class:`_TweakPlan`: model options
and init hooks. :func:`model_options` returns only the options of the tricks that are on, so an
empty section gives ``{}`` and the model builder's defaults (BatchNorm, ReLU, no dropout, variant
A); :func:`init_model` runs the init hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tricksearch.errors import ConfigError
from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._section import dispatch, resolve_section

__all__ = ["BUILDERS", "init_model", "model_options", "zero_gamma_"]

FAMILY = "model_tweaks"

ZERO_GAMMA = register(
    TrickSpec(
        name="zero_gamma",
        family=FAMILY,
        summary="γ = 0 in the last norm layer of every residual block (blocks start as identity)",
        paper="Goyal et al. 2017, Accurate, Large Minibatch SGD; He et al. 2019, Bag of Tricks",
        needs_residual=True,
    )
)

DROPOUT = register(
    TrickSpec(
        name="dropout",
        family=FAMILY,
        summary="dropout before the classifier (model option `dropout`)",
        params=(
            Param(
                "p",
                "float",
                0.2,
                help="probability of zeroing a feature",
                low=0.0,
                high=0.5,
                search=SearchSpec(0.0, 0.5),
            ),
        ),
        paper="Srivastava et al. 2014, Dropout: A Simple Way to Prevent Neural Networks from "
        "Overfitting",
        model_option="dropout",
    )
)

GROUP_NORM = register(
    TrickSpec(
        name="group_norm",
        family=FAMILY,
        summary="GroupNorm instead of BatchNorm (model options `norm`, `norm_groups`)",
        params=(
            Param(
                "groups",
                "choice",
                32,
                help="number of groups; the model builder checks that every width divides",
                choices=(8, 16, 32),
                search=SearchSpec(choices=(8, 16, 32)),
            ),
        ),
        paper="Wu & He 2018, Group Normalization",
        model_option="norm",
    )
)

ACTIVATION = register(
    TrickSpec(
        name="activation",
        family=FAMILY,
        summary="GELU, SiLU or CELU instead of ReLU (model option `activation`)",
        params=(
            Param(
                "fn",
                "choice",
                "gelu",
                help="the activation function (ReLU is the default when this trick is off)",
                choices=("gelu", "silu", "celu"),
                search=SearchSpec(choices=("gelu", "silu", "celu")),
            ),
        ),
        paper="Hendrycks & Gimpel 2016 (GELU); Elfwing et al. 2018 (SiLU); Barron 2017 (CELU)",
        model_option="activation",
    )
)

RESNET_VARIANT = register(
    TrickSpec(
        name="resnet_variant",
        family=FAMILY,
        summary="ResNet-B/C/D: stride on the 3×3 conv / 3×3 stem / avg-pool downsample",
        params=(
            Param(
                "variant",
                "choice",
                "d",
                help="b: stride 2 on the 3×3 conv; c: three 3×3 stem convs; d: c + avg-pool "
                "before the 1×1 downsample (as in the paper, each builds on the previous)",
                choices=("b", "c", "d"),
                search=SearchSpec(choices=("b", "c", "d")),
            ),
        ),
        paper="He et al. 2019, Bag of Tricks for Image Classification with CNNs",
        needs_residual=True,
        model_option="variant",
    )
)


SYNC_BN = register(
    TrickSpec(
        name="sync_bn",
        family=FAMILY,
        summary="SyncBatchNorm: BN statistics over the global batch of a multi-GPU trial",
        paper="Peng et al. 2018, MegDet: A Large Mini-Batch Object Detector (cross-GPU BN)",
    )
)


@dataclass
class _TweakPlan:
    """What the model tweaks that are on ask for: filled by ``BUILDERS``."""

    options: dict[str, Any] = field(default_factory=dict)
    init_hooks: list[Callable[[nn.Module], None]] = field(default_factory=list)


def _zero_gamma(plan: _TweakPlan, params: dict[str, Any]) -> None:
    plan.init_hooks.append(_zero_gamma_or_refuse)


def _dropout(plan: _TweakPlan, params: dict[str, Any]) -> None:
    plan.options["dropout"] = params["p"]


def _group_norm(plan: _TweakPlan, params: dict[str, Any]) -> None:
    plan.options.update(norm="group", norm_groups=params["groups"])


def _activation(plan: _TweakPlan, params: dict[str, Any]) -> None:
    plan.options["activation"] = params["fn"]


def _resnet_variant(plan: _TweakPlan, params: dict[str, Any]) -> None:
    plan.options["variant"] = params["variant"]


def _sync_bn(plan: _TweakPlan, params: dict[str, Any]) -> None:
    """Nothing for the builder: the engine converts the model of a data-parallel run."""


#: Every model tweak and the function that adds it to the plan.
BUILDERS: dict[str, Callable[[_TweakPlan, dict[str, Any]], None]] = {
    "zero_gamma": _zero_gamma,
    "dropout": _dropout,
    "group_norm": _group_norm,
    "activation": _activation,
    "resnet_variant": _resnet_variant,
    "sync_bn": _sync_bn,
}


def _plan(section: dict[str, dict]) -> _TweakPlan:
    plan = _TweakPlan()
    for build, params in dispatch(resolve_section(section, FAMILY), BUILDERS, FAMILY):
        build(plan, params)
    return plan


def model_options(section: dict[str, dict]) -> dict[str, Any]:
    """The options for ``models.build_model`` from a recipe's ``model_tweaks`` section.

    Keys (present only when their trick is on): ``dropout`` (float), ``norm`` ("group") with
    ``norm_groups`` (int), ``activation`` ("gelu" | "silu" | "celu"), ``variant`` ("b" | "c" |
    "d"). An empty section gives ``{}``: the builder's defaults.
    """
    return _plan(section).options


@torch.no_grad()
def zero_gamma_(model: nn.Module) -> int:
    """Set ``last_bn.weight`` to 0 in every module of ``model`` that has ``last_bn``.

    Returns how many layers were zeroed. Norm layers that are no block's ``last_bn`` keep their γ.
    """
    done: set[int] = set()
    for module in model.modules():
        norm = getattr(module, "last_bn", None)
        if norm is None or id(norm) in done:
            continue
        weight = getattr(norm, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ConfigError(
                f"{FAMILY}.zero_gamma: {type(module).__name__}.last_bn "
                f"({type(norm).__name__}) has no affine weight to zero."
            )
        weight.zero_()
        done.add(id(norm))
    return len(done)


def init_model(section: dict[str, dict], model: nn.Module) -> None:
    """Apply the init hooks of a ``model_tweaks`` section (zero-γ) to a freshly built ``model``."""
    for hook in _plan(section).init_hooks:
        hook(model)


def _zero_gamma_or_refuse(model: nn.Module) -> None:
    """Zero-γ, refusing a model with no residual block (no module with ``last_bn``) rather than
    silently doing nothing."""
    if zero_gamma_(model) == 0:
        raise ConfigError(
            f"{FAMILY}.zero_gamma: the model {type(model).__name__} has no residual block with "
            "a `last_bn` norm layer; use a residual model or switch zero_gamma off."
        )
