"""The training loop: Recipe + model + data -> metrics per epoch.

It reads top to bottom: build the pieces from the recipe, then for every epoch cut batches on the
device, augment, mix, (perturb), forward, loss, backward, step, evaluate, report. Torch only: no
ray, no optuna, so a recipe trains anywhere.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tricksearch.data import DatasetSplits, load_dataset
from tricksearch.data.loader import make_loader, to_float
from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.models import build_model
from tricksearch.recipe import Recipe
from tricksearch.tricks.build import Components, build, model_options

__all__ = [
    "EpochMetrics",
    "FitResult",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "load_data",
    "make_model",
    "resolve_device",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite (the recipe diverged)."""


@dataclass
class EpochMetrics:
    """What one epoch produced; passed to ``on_epoch`` and kept in ``FitResult.history``."""

    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    lr: float
    epoch_seconds: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class FitResult:
    """The outcome of :func:`fit`. ``test_*`` are filled only when ``evaluate_test=True``."""

    history: list[EpochMetrics]
    val_acc: float
    val_loss: float
    test_acc: float | None
    test_loss: float | None
    seconds: float
    device: str
    model: nn.Module = field(repr=False)
    images_seen: int = 0

    def metrics(self) -> dict[str, Any]:
        return {
            "val_acc": self.val_acc,
            "val_loss": self.val_loss,
            "test_acc": self.test_acc,
            "test_loss": self.test_loss,
            "seconds": self.seconds,
            "device": self.device,
            "images_seen": self.images_seen,
            "history": [m.as_dict() for m in self.history],
        }


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; otherwise checked as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: got {device!r}, expected auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: got {device!r}, but this machine has no CUDA GPU; use cpu.")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: got {device!r}, expected auto, cpu, cuda or cuda:N.")
    return dev


def load_data(recipe: Recipe) -> DatasetSplits:
    """The dataset and split named by the recipe (cached per process)."""
    d = recipe.data
    return load_dataset(
        d.dataset,
        data_root=d.data_root,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        split_seed=d.split_seed,
        skip_corrupt=d.skip_corrupt,
    )


ModelFactory = Callable[..., nn.Module]


def make_model(
    recipe: Recipe, data: DatasetSplits, model: str | ModelFactory | None = None
) -> nn.Module:
    """Build the model of the recipe (or a user's factory) for this dataset, seeded."""
    torch.manual_seed(recipe.budget.seed)
    spec: str | ModelFactory = recipe.model.name if model is None else model
    return build_model(
        spec,
        in_channels=data.channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        options=model_options(recipe),
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    data: DatasetSplits,
    device: torch.device,
    *,
    batch_size: int = 1024,
    models: list[nn.Module] | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` — or of the softmax average of ``models``."""
    members = models or [model]
    was_training = [m.training for m in members]
    for m in members:
        m.eval()
    correct, total_loss, n = 0, 0.0, len(y)
    for start in range(0, n, batch_size):
        xb = to_float(x[start : start + batch_size].to(device), data.mean, data.std)
        yb = y[start : start + batch_size].to(device)
        probs = torch.stack([F.softmax(m(xb).float(), dim=1) for m in members]).mean(0)
        total_loss += F.nll_loss(probs.clamp_min(1e-12).log(), yb, reduction="sum").item()
        correct += (probs.argmax(1) == yb).sum().item()
    for m, flag in zip(members, was_training, strict=False):
        m.train(flag)
    return correct / max(n, 1), total_loss / max(n, 1)


def _call_on_epoch(on_epoch: Callable[..., Any], metrics: EpochMetrics) -> None:
    """Call ``on_epoch(metrics)``, or ``on_epoch(**fields)`` when it takes keywords only."""
    try:
        params = inspect.signature(on_epoch).parameters.values()
    except (TypeError, ValueError):
        on_epoch(metrics)
        return
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if positional:
        on_epoch(metrics)
    else:
        on_epoch(**metrics.as_dict())


def fit(
    recipe: Recipe,
    *,
    model: nn.Module | str | ModelFactory | None = None,
    data: DatasetSplits | None = None,
    on_epoch: Callable[..., Any] | None = None,
    device: str | torch.device | None = None,
    evaluate_test: bool = False,
    teacher: nn.Module | None = None,
    max_device_bytes: int | None = None,
) -> FitResult:
    """Train ``model`` (default: the recipe's) on ``data`` (default: the recipe's) per the recipe.

    ``on_epoch`` is called after every epoch with :class:`EpochMetrics` (one positional argument)
    or with its fields as keywords. Same seed and device give the same numbers. Raises
    :class:`TrainingDiverged` when the loss becomes NaN/inf. ``max_device_bytes`` caps the size of
    a train split kept on the device (larger ones stream through a DataLoader-style path).
    """
    if not isinstance(recipe, Recipe):
        raise ConfigTypeError(f"recipe: got {type(recipe).__name__}, expected a Recipe.")
    dev = resolve_device(device)
    data = load_data(recipe) if data is None else data
    if isinstance(model, nn.Module):
        net = model
        fresh = False
    else:
        net = make_model(recipe, data, model)
        fresh = True
    net = net.to(dev)

    budget = recipe.budget
    torch.manual_seed(budget.seed)
    # The train split lives on the device when it fits in ``max_device_bytes`` (default 2 GiB);
    # otherwise batches stream from host memory (same order, so the same numbers on a CPU).
    extra = {} if max_device_bytes is None else {"max_device_bytes": max_device_bytes}
    loader = make_loader(
        data, budget.batch_size, split="train", device=dev, shuffle=True, seed=budget.seed, **extra
    )
    parts: Components = build(
        recipe,
        net,
        num_classes=data.num_classes,
        steps_per_epoch=len(loader),
        class_counts=data.class_counts(),
        channels=data.channels,
        image_size=data.image_size,
        std=data.std,
        init=fresh,
    )
    parts.precision.check(dev)  # e.g. fp16 on a CPU: refused now, not at step 1
    if parts.uses_teacher and teacher is None:
        from tricksearch.engine.teacher import get_teacher

        teacher = get_teacher(recipe, data, device=dev)
    if teacher is not None:
        teacher = teacher.to(dev).eval()
    scaler = parts.precision.scaler(dev)
    snapshot_epochs = set(parts.lr_schedule.snapshot_epochs())
    snapshots: list[nn.Module] = []

    history: list[EpochMetrics] = []
    step, images = 0, 0
    t_start = time.perf_counter()
    for epoch in range(budget.epochs):
        t0 = time.perf_counter()
        net.train()
        # Summed on the device: no host sync in the training step (checked once per epoch).
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        lr = parts.lr_schedule.lr_at(step)
        for xb, yb in loader.epoch(epoch):
            lr = parts.set_lr(step)
            if parts.augment is not None:
                xb = parts.augment(xb, epoch)
            x = to_float(xb, data.mean, data.std)
            if parts.multiscale is not None:
                x = parts.multiscale(x, epoch)
            target: torch.Tensor = yb
            if parts.mixer is not None:
                x, target = parts.mixer(x, yb)
            if parts.adversarial is not None:
                # The attack raises the task loss (cross entropy on the hard or soft target),
                # not the distillation or flooding terms of the training loss.
                x = parts.adversarial(net, x, target, F.cross_entropy)
            with parts.precision.autocast(dev):
                logits = net(x)
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(x).float()
            loss = parts.loss(logits.float(), target, teacher_logits=teacher_logits)
            parts.optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if parts.grad_clip is not None:
                    scaler.unscale_(parts.optimizer)
                    nn.utils.clip_grad_norm_(net.parameters(), parts.grad_clip)
                scaler.step(parts.optimizer)
                scaler.update()
            else:
                loss.backward()
                if parts.grad_clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), parts.grad_clip)
                parts.optimizer.step()
            if parts.ema is not None:
                parts.ema.update_parameters(net)
            step += 1
            n = len(yb)
            seen += n
            loss_sum += loss.detach().double() * n
            hard = target.argmax(1) if target.ndim == 2 else target
            correct += (logits.argmax(1) == hard).sum()
        images += seen
        train_loss = loss_sum.item() / max(seen, 1)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch + 1}: the mean training loss is {train_loss} "
                f"(lr {lr:.3g} at the end of the epoch); lower budget.lr or switch tricks off."
            )
        if epoch in snapshot_epochs:
            snapshots.append(copy.deepcopy(parts.ema if parts.ema is not None else net).eval())
        eval_net = parts.ema if parts.ema is not None else net
        val_acc, val_loss = evaluate(eval_net, data.x_val, data.y_val, data, dev)
        metrics = EpochMetrics(
            epoch=epoch + 1,
            train_loss=train_loss,
            train_acc=correct.item() / max(seen, 1),
            val_loss=val_loss,
            val_acc=val_acc,
            lr=lr,
            epoch_seconds=time.perf_counter() - t0,
        )
        history.append(metrics)
        if on_epoch is not None:
            _call_on_epoch(on_epoch, metrics)

    final_net = parts.ema if parts.ema is not None else net
    members = snapshots if len(snapshots) > 1 else None
    if members:
        val_acc, val_loss = evaluate(final_net, data.x_val, data.y_val, data, dev, models=members)
    else:
        val_acc, val_loss = history[-1].val_acc, history[-1].val_loss
    test_acc = test_loss = None
    if evaluate_test:
        test_acc, test_loss = evaluate(
            final_net, data.x_test, data.y_test, data, dev, models=members
        )
    final_model = (
        final_net.module if hasattr(final_net, "module") and parts.ema is not None else net
    )
    return FitResult(
        history=history,
        val_acc=val_acc,
        val_loss=val_loss,
        test_acc=test_acc,
        test_loss=test_loss,
        seconds=time.perf_counter() - t_start,
        device=str(dev),
        model=final_model,
        images_seen=images,
    )
