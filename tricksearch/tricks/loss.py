"""Trick family ``loss``: what the model is trained to minimise, and the targets it sees.

Each trick is declared below (parameters, default search range, paper), its maths is a plain
function with its formula, and ``BUILDERS`` maps it to the function that adds it to a
:class:`_LossPlan`. :func:`build_loss` computes the base loss (cross entropy or focal, label
smoothing folded into the target once), then the steps in ``BUILDERS`` order (distillation mix →
flooding); :func:`init_model` runs the init hooks (``bias_prior``, in ``tricks/_bias_prior.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tricksearch.errors import ConfigError
from tricksearch.tricks._base import (
    BoundedParam,
    Param,
    SearchSpec,
    TrickSpec,
    register,
    tricks_in_family,
)
from tricksearch.tricks._bias_prior import set_bias_prior
from tricksearch.tricks._section import dispatch, validate_tricks

__all__ = [
    "BUILDERS",
    "LossFn",
    "build_loss",
    "distillation_loss",
    "flood",
    "focal_loss",
    "init_model",
    "inverse_frequency_weights",
    "set_bias_prior",
    "smooth_targets",
    "soft_cross_entropy",
    "uses_teacher",
]

FAMILY = "loss"


# declarations -------------------------------------------------------------------------------------


def _declare(name: str, **fields: Any) -> TrickSpec:
    """Register a loss trick (``fields``: those of :class:`TrickSpec`)."""
    return register(TrickSpec(name=name, family=FAMILY, **fields))


LABEL_SMOOTHING = _declare(
    "label_smoothing",
    summary="train on q = (1−ε)·onehot(y) + ε/K instead of the one-hot target",
    paper="Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision",
    params=(
        BoundedParam(
            "epsilon",
            "float",
            0.1,
            help="probability mass spread uniformly over the K classes",
            low=0.0,
            high=1.0,
            high_open=True,
            search=SearchSpec(0.0, 0.3),
        ),
    ),
)

FOCAL = _declare(
    "focal",
    summary="focal loss −Σ q_k (1−p_k)^γ log p_k: down-weights examples already fit well",
    paper="Lin et al. 2017, Focal Loss for Dense Object Detection",
    params=(
        Param(
            "gamma",
            "float",
            2.0,
            help="focusing exponent; 0 is plain cross entropy",
            low=0.0,
            search=SearchSpec(0.0, 5.0),
        ),
        Param(
            "alpha",
            "choice",
            "none",
            help="per-class weight: none, or inverse class frequency normalised to mean 1",
            choices=("none", "inverse_frequency"),
            search=SearchSpec(choices=("none", "inverse_frequency")),
        ),
    ),
)

FLOODING = _declare(
    "flooding",
    summary="L' = |L − b| + b on the batch loss: gradient ascent once the loss sinks below b",
    paper="Ishida et al. 2020, Do We Need Zero Training Loss After Achieving Zero Training Error?",
    params=(
        Param(
            "level",
            "float",
            0.05,
            help="flood level b (0 = off)",
            low=0.0,
            search=SearchSpec(0.0, 0.5),
        ),
    ),
)

DISTILLATION = _declare(
    "distillation",
    summary="mix the base loss with T²·KL(teacher ‖ student) at temperature T",
    paper="Hinton et al. 2015, Distilling the Knowledge in a Neural Network",
    needs_teacher=True,
    params=(
        BoundedParam(
            "temperature",
            "float",
            4.0,
            help="softmax temperature T of both teacher and student",
            low=0.0,
            low_open=True,
            search=SearchSpec(1.0, 20.0, log=True),
        ),
        Param(
            "alpha",
            "float",
            0.5,
            help="weight of the distillation term; 1 − alpha weighs the base loss",
            low=0.0,
            high=1.0,
            search=SearchSpec(0.1, 0.9),
        ),
        Param(
            "teacher",
            "str",
            None,
            help="teacher checkpoint (*.pt) or model name (e.g. resnet-cifar) trained once "
            "and cached; null = the default teacher",
            nullable=True,
        ),
        Param(
            "teacher_epochs",
            "int",
            0,
            help="epochs to train a named teacher (0 = as many as the student)",
            low=0,
        ),
    ),
)

BIAS_PRIOR = _declare(
    "bias_prior",
    summary="initialise the classifier bias to log class frequency (the class prior)",
    paper="Lin et al. 2017 (prior init, §4.1); Karpathy 2019, A Recipe for Training Neural "
    "Networks",
)


# maths --------------------------------------------------------------------------------------------


def smooth_targets(target: Tensor, num_classes: int, epsilon: float) -> Tensor:
    """Label smoothing (Szegedy et al. 2016): q' = (1−ε)·q + ε/K.

    ``target`` is either class indices (int64 ``[B]``, turned into one-hot) or a probability
    matrix ``[B, K]``. Returns a float ``[B, K]`` matrix whose rows still sum to 1.
    """
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), but got {epsilon!r}.")
    if target.ndim == 1:
        q = F.one_hot(target, num_classes).float()
    elif target.ndim == 2:
        if target.shape[1] != num_classes:
            raise ValueError(
                f"soft targets have {target.shape[1]} columns, expected num_classes={num_classes}."
            )
        q = target if target.is_floating_point() else target.float()
    else:
        raise ValueError(f"target must be [B] indices or [B, K] probabilities, got {target.shape}.")
    if epsilon == 0.0:
        return q
    return q * (1.0 - epsilon) + epsilon / num_classes


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor) -> Tensor:
    """Cross entropy with probability targets q, batch-averaged: −mean_i Σ_k q_ik log p_ik."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(soft_targets * log_p).sum(dim=-1).mean()


def focal_loss(
    logits: Tensor,
    target: Tensor,
    gamma: float,
    alpha: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax focal loss (Lin et al. 2017), averaged over the batch.

    FL_i = −Σ_k α_k q_ik (1−p_ik)^γ log p_ik, with q the (smoothed) target distribution; for a
    one-hot q this is the paper's −α_t (1−p_t)^γ log p_t. γ = 0 and no α is cross entropy.
    ``alpha`` is an optional per-class weight ``[K]``; the result is a plain mean over the batch
    (not the weighted mean ``F.cross_entropy(weight=…)`` takes), so α normalised to mean 1 keeps
    the scale of the loss.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, but got {gamma!r}.")
    num_classes = logits.shape[-1]
    q = smooth_targets(target, num_classes, label_smoothing)
    log_p = F.log_softmax(logits.float(), dim=-1)
    # 1 − p computed as −expm1(log p): exact near p = 1; clamped so (·)^γ has a finite gradient.
    one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)
    weight = q * one_minus_p.pow(gamma)
    if alpha is not None:
        if alpha.shape != (num_classes,):
            raise ValueError(f"alpha must have shape ({num_classes},), got {tuple(alpha.shape)}.")
        weight = weight * alpha.to(device=log_p.device, dtype=log_p.dtype)
    return -(weight * log_p).sum(dim=-1).mean()


def inverse_frequency_weights(class_counts: Tensor) -> Tensor:
    """Per-class weights α_k ∝ 1/freq_k, normalised to mean 1 (focal ``alpha=inverse_frequency``).

    A class with no example counts as one, so its weight stays finite.
    """
    counts = class_counts.detach().to(torch.float64).clamp_min(1.0)
    inv = 1.0 / counts
    return (inv / inv.mean()).float()


def flood(loss: Tensor, level: float) -> Tensor:
    """Flooding (Ishida et al. 2020): |L − b| + b. Same value, but the gradient flips below b."""
    return (loss - level).abs() + level


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    base_loss: Tensor,
    temperature: float,
    alpha: float,
) -> Tensor:
    """Knowledge distillation (Hinton et al. 2015).

    L = (1−α)·base + α·T²·KL(softmax(r/T) ‖ softmax(z/T)), r the teacher's logits (no gradient
    flows into them), z the student's. T² keeps the soft term's gradient scale independent of T.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, but got {temperature!r}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"teacher logits {tuple(teacher_logits.shape)} do not match the student's "
            f"{tuple(student_logits.shape)}."
        )
    t = float(temperature)
    log_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.detach().float() / t, dim=-1)
    kl = F.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean")
    return (1.0 - alpha) * base_loss + alpha * (t * t) * kl


# builders -----------------------------------------------------------------------------------------


def uses_teacher(section: dict[str, dict]) -> bool:
    """Whether the loss needs teacher logits (a trick declared ``needs_teacher`` is on)."""
    specs = tricks_in_family(FAMILY)
    return any(specs[name].needs_teacher for name in section if name in specs)


#: A built loss: ``loss_fn(logits [B,K], target, teacher_logits=None) -> scalar``.
LossFn = Callable[..., Tensor]
#: A step after the base loss: ``(loss, logits, target, teacher_logits) -> loss``.
LossStep = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]
#: A base loss: ``(logits, target, label_smoothing) -> loss``.
BaseLoss = Callable[[Tensor, Tensor, float], Tensor]
#: A hook on a freshly built model: ``(model, class_counts) -> None``.
InitHook = Callable[[nn.Module, Tensor], None]


@dataclass
class _LossPlan:
    """What the loss tricks that are on ask for: filled by ``BUILDERS``, read by the builders."""

    num_classes: int
    class_counts: Tensor | None
    epsilon: float = 0.0
    base: BaseLoss | None = None  # None: cross entropy
    steps: list[LossStep] = field(default_factory=list)
    init_hooks: list[InitHook] = field(default_factory=list)


def _label_smoothing(plan: _LossPlan, params: dict[str, Any]) -> None:
    plan.epsilon = params["epsilon"]


def _focal(plan: _LossPlan, params: dict[str, Any]) -> None:
    alpha: Tensor | None = None
    counts, k = plan.class_counts, plan.num_classes
    if params["alpha"] == "inverse_frequency":
        if counts is None or counts.shape != (k,):
            got = (
                "none were given"
                if counts is None
                else f"class_counts has shape {tuple(counts.shape)}"
            )
            raise ConfigError(
                "loss.focal.alpha: 'inverse_frequency' needs the class counts of the training "
                f"set, shape ({k},), but {got}."
            )
        alpha = inverse_frequency_weights(counts)
    gamma = params["gamma"]

    def base(logits: Tensor, target: Tensor, eps: float) -> Tensor:
        return focal_loss(logits, target, gamma, alpha, label_smoothing=eps)

    plan.base = base


def _distillation(plan: _LossPlan, params: dict[str, Any]) -> None:
    temperature, alpha = params["temperature"], params["alpha"]

    def step(loss: Tensor, logits: Tensor, _target: Tensor, teacher: Tensor | None) -> Tensor:
        if teacher is None:
            raise ValueError(
                "loss.distillation is on, but loss_fn was called without teacher_logits."
            )
        return distillation_loss(logits, teacher, loss, temperature, alpha)

    plan.steps.append(step)


def _flooding(plan: _LossPlan, params: dict[str, Any]) -> None:
    level = params["level"]
    plan.steps.append(lambda loss, _logits, _target, _teacher: flood(loss, level))


def _bias_prior(plan: _LossPlan, params: dict[str, Any]) -> None:
    plan.init_hooks.append(set_bias_prior)


#: Every loss trick and the function that adds it to the plan. The order is the order of the
#: steps after the base loss: the distillation mix comes before flooding.
BUILDERS: dict[str, Callable[[_LossPlan, dict[str, Any]], None]] = {
    "label_smoothing": _label_smoothing,
    "focal": _focal,
    "distillation": _distillation,
    "flooding": _flooding,
    "bias_prior": _bias_prior,
}


def _plan(section: dict[str, dict], num_classes: int, class_counts: Tensor | None) -> _LossPlan:
    plan = _LossPlan(num_classes=num_classes, class_counts=class_counts)
    for build, params in dispatch(validate_tricks(section, FAMILY, BUILDERS), BUILDERS, FAMILY):
        build(plan, params)
    return plan


def _cross_entropy(logits: Tensor, target: Tensor, eps: float) -> Tensor:
    if target.ndim == 2:
        return soft_cross_entropy(logits, smooth_targets(target, logits.shape[-1], eps))
    return F.cross_entropy(logits, target, label_smoothing=eps)


def build_loss(
    section: dict[str, dict], *, num_classes: int, class_counts: Tensor | None = None
) -> LossFn:
    """``loss_fn(logits [B,K], target, teacher_logits=None) -> scalar`` of a ``loss`` section.

    ``target`` is int64 ``[B]`` or float ``[B,K]`` probabilities (from mixing); an empty section is
    ``F.cross_entropy``. ``class_counts`` (``[K]``) is needed by focal ``alpha=inverse_frequency``.
    """
    plan = _plan(section, num_classes, class_counts)
    base, eps, steps = plan.base or _cross_entropy, plan.epsilon, tuple(plan.steps)

    def loss_fn(logits: Tensor, target: Tensor, teacher_logits: Tensor | None = None) -> Tensor:
        loss = base(logits, target, eps)
        for step in steps:
            loss = step(loss, logits, target, teacher_logits)
        return loss

    return loss_fn


def init_model(section: dict[str, dict], model: nn.Module, *, class_counts: Tensor) -> None:
    """Apply the loss tricks that act on a freshly built model (``bias_prior``); no-op otherwise."""
    plan = _plan(section, len(class_counts), class_counts)
    for hook in plan.init_hooks:
        hook(model, class_counts)
