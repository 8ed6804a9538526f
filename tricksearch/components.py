"""The pieces of a training loop built from a Recipe: ``build``, ``Components``, ``model_options``.

Each trick family (``tricks/schedule.py``, ``tricks/loss.py``, …) owns its tricks and exposes its
builders; this module only composes them from a Recipe, so a new trick means a declaration, its
maths and one ``BUILDERS`` entry in its family module, never a branch here. A user's own training
loop can take these pieces and ignore the engine:

    parts = tricksearch.build(recipe, model, num_classes=10, steps_per_epoch=len(loader))
    step = 0
    for epoch in range(recipe.budget.epochs):
        for x_uint8, y in loader:
            parts.set_lr(step)
            if parts.augment: x_uint8 = parts.augment(x_uint8, epoch)   # uint8 images
            x, target = normalise(x_uint8), y
            if parts.multiscale: x = parts.multiscale(x, epoch)
            if parts.mixer: x, target = parts.mixer(x, y)                # soft targets
            with parts.precision.autocast(x.device):
                loss = parts.loss(model(x).float(), target)
            parts.optimizer.zero_grad(); loss.backward(); parts.optimizer.step()
            if parts.ema: parts.ema.update_parameters(model)
            step += 1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tricksearch.recipe import Recipe
from tricksearch.tricks import (
    augment,
    loss,
    mixing,
    model_tweaks,
    optimizer,
    procedure,
    schedule,
    semi,
)
from tricksearch.tricks._semi_members import init_targets

__all__ = ["Components", "build", "model_options"]


@dataclass
class Components:
    """Everything a training loop needs, built from one recipe. Off tricks are ``None``."""

    optimizer: torch.optim.Optimizer
    lr_schedule: schedule.LRSchedule
    loss: loss.LossFn
    augment: augment.BatchAugment | None
    mixer: mixing.BatchMixer | None
    multiscale: augment.MultiScale | None
    adversarial: procedure.Adversarial | None
    precision: procedure.Precision
    ema: torch.optim.swa_utils.AveragedModel | None
    grad_clip: float | None
    uses_teacher: bool
    peak_lr: float
    semi: Any = None  # the semi-supervised trainer (tricks/semi.py): its step replaces the engine's

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
    ``channels`` and ``image_size`` describe images (the augmentations check them); ``std`` is the
    per-channel std of the normalised input (adversarial ε is given on the [0, 1] scale).
    """
    if class_counts is None:
        class_counts = torch.ones(num_classes)
    if init:
        for target in init_targets(model):  # each member of co-/tri-training
            model_tweaks.init_model(recipe.model_tweaks, target)
            loss.init_model(recipe.loss, target, class_counts=class_counts)
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
        semi=semi.build_semi(
            recipe.semi,
            num_classes=num_classes,
            class_counts=class_counts,
            total_steps=budget.epochs * steps_per_epoch,
            seed=budget.seed,
            batch_size=budget.batch_size,
        ),
    )
