"""Trick family ``loss``: what the model is trained to minimise, and the targets it sees.

Tricks (see ../shared/TRICKS.md, "Loss and targets"):

- ``label_smoothing`` — q = (1−ε)·q + ε/K (Szegedy et al. 2016, "Rethinking the Inception
  Architecture for Computer Vision"). Hard targets go through
  ``F.cross_entropy(label_smoothing=ε)``; soft targets (mixup, cutmix, …) are smoothed once, here,
  never twice.
- ``focal`` — FL = −Σ_k α_k q_k (1−p_k)^γ log p_k, softmax multi-class (Lin et al. 2017, "Focal Loss
  for Dense Object Detection"); for a one-hot q this is −α_t (1−p_t)^γ log p_t.
- ``flooding`` — L' = |L − b| + b on the mini-batch mean loss (Ishida et al. 2020, "Do We Need Zero
  Training Loss After Achieving Zero Training Error?").
- ``distillation`` — L = (1−α)·base + α·T²·KL(softmax(r/T) ‖ softmax(z/T)) (Hinton et al. 2015,
  "Distilling the Knowledge in a Neural Network").
- ``bias_prior`` — classifier bias b_k = log(freq_k) at init, so the first predictions are the class
  prior (Karpathy, "A Recipe for Training Neural Networks", 2019; Lin et al. 2017 §4.1).

The maths are plain public functions; :func:`build_loss` assembles them in a fixed order:
base loss (cross entropy or focal, label smoothing folded in) → distillation mix → flooding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register

__all__ = [
    "LossFn",
    "build_loss",
    "distillation_loss",
    "flood",
    "focal_loss",
    "init_model",
    "inverse_frequency_weights",
    "smooth_targets",
    "soft_cross_entropy",
    "uses_teacher",
]

LossFn = Callable[..., torch.Tensor]

FAMILY = "loss"


@dataclass(frozen=True)
class _BoundedParam(Param):
    """A :class:`Param` whose ``low`` and/or ``high`` bound may be exclusive.

    ``label_smoothing.epsilon`` must stay below 1 and Beta parameters above 0; the shared
    :class:`Param` only knows closed bounds.
    """

    low_open: bool = False
    high_open: bool = False

    def allowed(self) -> str:
        if self.kind not in ("int", "float") or not (self.low_open or self.high_open):
            return super().allowed()
        noun = "an integer" if self.kind == "int" else "a number"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            text = f"{noun} in {left}{lo}, {hi}{right}"
        elif lo is not None:
            text = f"{noun} {'>' if self.low_open else '>='} {lo}"
        else:
            text = f"{noun} {'<' if self.high_open else '<='} {hi}"
        return text + (" or null" if self.nullable else "")

    def _number(self, value: Any, where: str, typ: type) -> Any:
        value = super()._number(value, where, typ)
        if (self.low_open and self.low is not None and value <= self.low) or (
            self.high_open and self.high is not None and value >= self.high
        ):
            raise ConfigError(f"{where}: got {value!r}, expected {self.allowed()}.")
        return value


# --------------------------------------------------------------------------------------------
# declarations

LABEL_SMOOTHING = register(
    TrickSpec(
        name="label_smoothing",
        family=FAMILY,
        summary="train on q = (1−ε)·onehot(y) + ε/K instead of the one-hot target",
        paper="Szegedy et al. 2016, Rethinking the Inception Architecture for Computer Vision",
        params=(
            _BoundedParam(
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
)

FOCAL = register(
    TrickSpec(
        name="focal",
        family=FAMILY,
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
)

FLOODING = register(
    TrickSpec(
        name="flooding",
        family=FAMILY,
        summary="L' = |L − b| + b on the batch loss: gradient ascent once the loss sinks below b",
        paper="Ishida et al. 2020, Do We Need Zero Training Loss After Achieving Zero Training "
        "Error?",
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
)

DISTILLATION = register(
    TrickSpec(
        name="distillation",
        family=FAMILY,
        summary="mix the base loss with T²·KL(teacher ‖ student) at temperature T",
        paper="Hinton et al. 2015, Distilling the Knowledge in a Neural Network",
        needs_teacher=True,
        params=(
            _BoundedParam(
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
)

BIAS_PRIOR = register(
    TrickSpec(
        name="bias_prior",
        family=FAMILY,
        summary="initialise the classifier bias to log class frequency (the class prior)",
        paper="Lin et al. 2017 (prior init, §4.1); Karpathy 2019, A Recipe for Training Neural "
        "Networks",
    )
)

_SPECS: dict[str, TrickSpec] = {
    s.name: s for s in (LABEL_SMOOTHING, FOCAL, FLOODING, DISTILLATION, BIAS_PRIOR)
}


# --------------------------------------------------------------------------------------------
# maths


def smooth_targets(target: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
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


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Cross entropy with probability targets q, batch-averaged: −mean_i Σ_k q_ik log p_ik."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(soft_targets * log_p).sum(dim=-1).mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float,
    alpha: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
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


def inverse_frequency_weights(class_counts: torch.Tensor) -> torch.Tensor:
    """Per-class weights α_k ∝ 1/freq_k, normalised to mean 1 (focal ``alpha=inverse_frequency``).

    A class with no example counts as one, so its weight stays finite.
    """
    counts = class_counts.detach().to(torch.float64).clamp_min(1.0)
    inv = 1.0 / counts
    return (inv / inv.mean()).float()


def flood(loss: torch.Tensor, level: float) -> torch.Tensor:
    """Flooding (Ishida et al. 2020): |L − b| + b. Same value, but the gradient flips below b."""
    return (loss - level).abs() + level


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    base_loss: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
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


# --------------------------------------------------------------------------------------------
# builders


def _validated(section: dict[str, dict]) -> dict[str, dict[str, Any]]:
    if not isinstance(section, dict):
        raise ConfigTypeError(f"{FAMILY}: got {section!r}, expected a mapping of trick names.")
    out: dict[str, dict[str, Any]] = {}
    for name, params in section.items():
        if name not in _SPECS:
            raise ConfigError(
                f"{FAMILY}.{name}: unknown loss trick; allowed: {', '.join(sorted(_SPECS))}"
            )
        out[name] = _SPECS[name].validate(params, where=f"{FAMILY}.{name}")
    return out


def uses_teacher(section: dict[str, dict]) -> bool:
    """Whether the loss needs teacher logits (distillation is on)."""
    return "distillation" in section


def build_loss(
    section: dict[str, dict],
    *,
    num_classes: int,
    class_counts: torch.Tensor | None = None,
) -> LossFn:
    """The loss function of a recipe's ``loss`` section (only the tricks that are on).

    Returns ``loss_fn(logits [B,K], target, teacher_logits=None) -> scalar`` where ``target`` is
    int64 ``[B]`` or float ``[B,K]`` probabilities (from mixing). Order: base loss (cross entropy or
    focal, label smoothing folded into the target once) → distillation mix (needs
    ``teacher_logits``) → flooding on the batch mean. An empty section is ``F.cross_entropy``.
    ``class_counts`` (``[K]``) is needed by focal ``alpha=inverse_frequency``.
    """
    tricks = _validated(section)
    eps = tricks["label_smoothing"]["epsilon"] if "label_smoothing" in tricks else 0.0

    focal = tricks.get("focal")
    alpha: torch.Tensor | None = None
    if focal is not None and focal["alpha"] == "inverse_frequency":
        if class_counts is None:
            raise ConfigError(
                "loss.focal.alpha: 'inverse_frequency' needs the class counts of the training set, "
                "but none were given."
            )
        if class_counts.shape != (num_classes,):
            raise ConfigError(
                f"loss.focal.alpha: class_counts has shape {tuple(class_counts.shape)}, "
                f"expected ({num_classes},)."
            )
        alpha = inverse_frequency_weights(class_counts)

    distill = tricks.get("distillation")
    flood_level = tricks["flooding"]["level"] if "flooding" in tricks else None

    def loss_fn(
        logits: torch.Tensor,
        target: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if focal is not None:
            loss = focal_loss(logits, target, focal["gamma"], alpha, label_smoothing=eps)
        elif target.ndim == 2:
            loss = soft_cross_entropy(logits, smooth_targets(target, num_classes, eps))
        else:
            loss = F.cross_entropy(logits, target, label_smoothing=eps)
        if distill is not None:
            if teacher_logits is None:
                raise ValueError(
                    "loss.distillation is on, but loss_fn was called without teacher_logits."
                )
            loss = distillation_loss(
                logits, teacher_logits, loss, distill["temperature"], distill["alpha"]
            )
        if flood_level is not None:
            loss = flood(loss, flood_level)
        return loss

    return loss_fn


def _classifier(model: nn.Module) -> nn.Linear:
    head = getattr(model, "classifier", None)
    scope = head if isinstance(head, nn.Module) else model
    if isinstance(scope, nn.Linear):
        return scope
    linears = [m for m in scope.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"loss.bias_prior: {type(model).__name__} has no nn.Linear classifier "
            "(expected `model.classifier` or a final nn.Linear); switch bias_prior off."
        )
    return linears[-1]


def init_model(section: dict[str, dict], model: nn.Module, *, class_counts: torch.Tensor) -> None:
    """Apply the loss tricks that act on the model at init (``bias_prior``); no-op otherwise.

    ``bias_prior`` sets the classifier bias to b_k = log(freq_k), so that softmax(bias) is the
    class prior of the training set. A class with no example counts as one.
    """
    if "bias_prior" not in _validated(section):
        return
    layer = _classifier(model)
    if layer.bias is None:
        raise ConfigError(
            f"loss.bias_prior: the classifier of {type(model).__name__} "
            f"({layer}) has no bias to initialise; switch bias_prior off or give it a bias."
        )
    if class_counts.shape != (layer.out_features,):
        raise ConfigError(
            f"loss.bias_prior: class_counts has shape {tuple(class_counts.shape)}, but the "
            f"classifier has {layer.out_features} outputs."
        )
    counts = class_counts.detach().to(torch.float64).clamp_min(1.0)
    log_freq = torch.log(counts) - math.log(float(counts.sum()))
    with torch.no_grad():
        layer.bias.copy_(log_freq.to(dtype=layer.bias.dtype, device=layer.bias.device))
