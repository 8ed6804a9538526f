"""``build``: turn a Recipe into the pieces of a training loop.

Each family module owns its tricks and exposes one builder; this module only calls them, so a new
trick means a new declaration and a few lines in its family module, never a branch here. A user's
own training loop can take these pieces and ignore the engine:

    parts = tricksearch.build(recipe, model, num_classes=10, steps_per_epoch=len(loader))
    for step, (x, y) in enumerate(batches):
        parts.set_lr(step)
        x, target = parts.transform(x, y, epoch)
        loss = parts.loss(model(x), target)
        ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tricksearch.tricks import augment, loss, mixing, model_tweaks, optimizer, procedure, schedule

if TYPE_CHECKING:
    from tricksearch.recipe import Recipe

__all__ = ["Components", "build", "model_options"]


@dataclass
class Components:
    """Everything a training loop needs, built from one recipe. Off tricks are ``None``."""

    optimizer: torch.optim.Optimizer
    lr_schedule: schedule.LRSchedule
    loss: Callable[..., torch.Tensor]
    augment: Callable[[torch.Tensor, int], torch.Tensor] | None
    mixer: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None
    multiscale: Callable[[torch.Tensor, int], torch.Tensor] | None
    adversarial: Callable[..., torch.Tensor] | None
    precision: procedure.Precision
    ema: nn.Module | None
    grad_clip: float | None
    uses_teacher: bool
    peak_lr: float

    @property
    def soft_targets(self) -> bool:
        """True when the loss receives probability vectors rather than class indices."""
        return self.mixer is not None

    def set_lr(self, step: int) -> float:
        """Set the learning rate of every parameter group for global step ``step``; return it."""
        lr = self.lr_schedule.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        """The same schedule as a torch scheduler (call ``.step()`` once per optimizer step)."""
        return self.lr_schedule.torch_scheduler(self.optimizer)


def model_options(recipe: Recipe) -> dict[str, Any]:
    """Options the model builder needs from the recipe: its own options plus model tweaks."""
    options = dict(recipe.model.options)
    options.update(model_tweaks.model_options(recipe.model_tweaks))
    return options


def build(
    recipe: Recipe,
    model: nn.Module,
    *,
    num_classes: int,
    steps_per_epoch: int,
    class_counts: torch.Tensor | None = None,
    channels: int = 1,
    image_size: tuple[int, int] = (32, 32),
    std: tuple[float, ...] = (1.0,),
    init: bool = True,
) -> Components:
    """Build optimizer, LR schedule, loss and batch transforms for ``model`` from ``recipe``.

    ``init=True`` also applies the tricks that act on a freshly built model (zero-γ, class-prior
    bias); pass ``False`` for a model that is already trained. ``class_counts`` (train samples per
    class) is needed by the class-prior bias and by focal loss with inverse-frequency α.
    """
    if class_counts is None:
        class_counts = torch.ones(num_classes)
    if init:
        model_tweaks.init_model(recipe.model_tweaks, model)
        loss.init_model(recipe.loss, model, class_counts=class_counts)
    budget = recipe.budget
    lr_schedule = schedule.make_lr_schedule(
        recipe.schedule,
        base_lr=budget.lr,
        batch_size=budget.batch_size,
        epochs=budget.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    peak_lr = schedule.scaled_lr(recipe.schedule, budget.lr, budget.batch_size)
    opt = optimizer.build_optimizer(recipe.optimizer, model, lr=peak_lr)
    return Components(
        optimizer=opt,
        lr_schedule=lr_schedule,
        loss=loss.build_loss(recipe.loss, num_classes=num_classes, class_counts=class_counts),
        augment=augment.build_augment(recipe.augment, channels=channels, image_size=image_size),
        mixer=mixing.build_mixing(recipe.mixing, num_classes=num_classes),
        multiscale=augment.build_multiscale(recipe.augment, seed=budget.seed),
        adversarial=procedure.build_adversarial(recipe.procedure, std=std),
        precision=procedure.build_precision(recipe.procedure),
        ema=procedure.build_ema(recipe.procedure, model),
        grad_clip=optimizer.grad_clip_norm(recipe.optimizer),
        uses_teacher=loss.uses_teacher(recipe.loss),
        peak_lr=peak_lr,
    )
