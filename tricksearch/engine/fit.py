"""The training loop: Recipe + model + data -> metrics per epoch.

:func:`fit` reads top to bottom as a page of phases: prepare (the model on the device, seeded
batches, the pieces built from the recipe, the teacher), then for every epoch train (cut batches
on the device; per batch augment, mix, (perturb), forward, loss, backward, step), evaluate,
report; then the final scores. Torch only: no ray, no optuna, so a recipe trains anywhere.

The training step (:func:`training_step`) reads nothing back from the device: every per-step
draw is made there, the epoch's sums stay there and are read once per epoch
(``engine.sync_audit``, ``tests/engine/test_no_sync.py``). The recipe's ``runtime`` engine
options (channels-last, compile, cuDNN/TF32, bf16 evaluation) are applied by
:mod:`tricksearch.engine.options`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from tricksearch.components import Components, build
from tricksearch.data import DatasetSplits, reconcile_kind
from tricksearch.data.loader import DeviceLoader, StreamingLoader, make_loader, to_float
from tricksearch.engine import distributed, state
from tricksearch.engine import options as engine_options
from tricksearch.engine.setup import (
    ModelFactory,
    evaluate,
    load_data,
    make_model,
    materialize_lazy,
    resolve_device,
)
from tricksearch.engine.teacher import get_teacher
from tricksearch.errors import ConfigTypeError
from tricksearch.recipe import Recipe
from tricksearch.tricks._semi_members import attach as semi_attach

__all__ = [
    "EpochMetrics",
    "FitResult",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "load_data",
    "make_model",
    "materialize_lazy",
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


def _train_teacher(recipe: Recipe, data: DatasetSplits, device: torch.device) -> nn.Module:
    """How :func:`~tricksearch.engine.teacher.get_teacher` trains a teacher it has not cached."""
    return fit(recipe, data=data, device=device).model


@dataclass
class _Run:
    """What the epochs of one :func:`fit` call share: the model on its device, the batches and
    the pieces built from the recipe."""

    net: nn.Module
    data: DatasetSplits
    device: torch.device
    loader: DeviceLoader | StreamingLoader
    parts: Components
    teacher: nn.Module | None
    scaler: torch.amp.GradScaler | None
    step: int = 0  # global optimizer step, across epochs
    dist: Any = distributed.LOCAL  # data-parallel hooks (engine.distributed); identity alone
    options: engine_options.EngineOptions = field(default_factory=engine_options.EngineOptions)
    forward: engine_options.Forward | None = None  # runtime.compile's compiled training forward
    # ``fit(train_subset=…)``: the train samples of an epoch (None: all) and their loaders
    subset: Callable[[int], torch.Tensor | None] | None = None
    subset_loaders: dict[int, tuple[torch.Tensor, Any]] = field(default_factory=dict)

    @property
    def eval_net(self) -> nn.Module:
        """The network that is evaluated: the EMA copy when ``ema`` is on, else the model."""
        return self.parts.ema if self.parts.ema is not None else self.net


def fit(
    recipe: Recipe,
    *,
    model: nn.Module | str | ModelFactory | None = None,
    data: DatasetSplits | None = None,
    on_epoch: Callable[[EpochMetrics], object] | None = None,
    device: str | torch.device | None = None,
    evaluate_test: bool = False,
    teacher: nn.Module | None = None,
    max_device_bytes: int | None = None,
    on_state: Callable[[EpochMetrics, dict[str, Any]], object] | None = None,
    resume: dict[str, Any] | None = None,
    dist: distributed.DataParallel | None = None,
    train_subset: Callable[[int], torch.Tensor | None] | None = None,
) -> FitResult:
    """Train ``model`` (default: the recipe's) on ``data`` (default: the recipe's) per the recipe.

    ``on_epoch(metrics)`` is called after every epoch with that epoch's :class:`EpochMetrics`
    (``metrics.as_dict()`` gives a plain dict). Same seed and device give the same numbers.
    Raises :class:`TrainingDiverged` when the loss becomes NaN/inf. ``max_device_bytes`` caps the
    size of a train split kept on the device (larger ones stream through a DataLoader-style path).
    A recipe made for another data kind (``data.kind: signal`` given images) is refused.

    ``on_state(metrics, state)`` is called after every epoch (after ``on_epoch``) with the
    training state (:mod:`tricksearch.engine.state`); ``fit(..., resume=state)`` goes on after
    that epoch with the same numbers as a training that was never interrupted.

    ``dist=DataParallel(rank, world_size)`` trains one replica of a data-parallel run (torch
    DDP; the process group initialised first; callbacks usually given on rank 0 only): see
    :mod:`tricksearch.engine.distributed`.

    ``train_subset(epoch)`` (0-based epoch) -> indices into the train split that epoch trains
    on (``None``: all of it); an epoch on a subset takes fewer optimizer steps, each advancing
    the step clock (LR schedule, warmup, SGDR cycles) by ``full / subset`` steps, so the schedule
    runs by fractional epoch and ends where the full run ends (the search's data fidelity).
    """
    if not isinstance(recipe, Recipe):
        raise ConfigTypeError(f"recipe: got {type(recipe).__name__}, expected a Recipe.")
    dev = resolve_device(device)
    data = load_data(recipe) if data is None else data
    reconcile_kind(recipe.data.kind, data.kind, dataset=f"dataset {data.name!r}")
    run = _prepare(recipe, model, data, dev, teacher, max_device_bytes)
    distributed.attach(run, recipe, dist)  # DDP: sharded batches, wrapped model; else sync_bn note
    engine_options.attach(run, recipe.runtime)  # channels_last, compile (engine/options.py)
    run.subset = train_subset
    snapshot_epochs = set(run.parts.lr_schedule.snapshot_epochs())
    snapshots: list[nn.Module] = []
    history: list[EpochMetrics] = []
    images = 0
    if resume is not None:
        done, snapshots, images = state.restore(run, resume)
        history = [EpochMetrics(**m) for m in done]
    with engine_options.device_settings(recipe.runtime, dev):  # cudnn, tf32: CUDA only
        t_start = time.perf_counter()
        for epoch in range(len(history), recipe.budget.epochs):
            t0 = time.perf_counter()
            run.dist.seed_epoch(recipe.budget.seed, epoch)  # per-replica draws (no-op alone)
            train_loss, correct, seen, lr = _train_epoch(run, epoch)
            train_loss, correct, seen = run.dist.reduce_train(train_loss, correct, seen)
            images += seen
            _check_finite(train_loss, epoch, lr)
            if epoch in snapshot_epochs:
                snapshots.append(copy.deepcopy(run.eval_net).eval())
            val_acc, val_loss = evaluate(
                run.eval_net, data.x_val, data.y_val, data, dev, options=run.options
            )
            val_acc, val_loss = run.dist.agree(val_acc, val_loss)  # rank 0's, on every replica
            metrics = EpochMetrics(
                epoch=epoch + 1,
                train_loss=train_loss,
                train_acc=correct / max(seen, 1),
                val_loss=val_loss,
                val_acc=val_acc,
                lr=lr,
                epoch_seconds=time.perf_counter() - t0,
            )
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if on_state is not None:
                on_state(metrics, state.capture(run, history, snapshots, images))
        return _result(run, history, snapshots, evaluate_test, images, t_start)


def _check_finite(train_loss: float, epoch: int, lr: float) -> None:
    if not math.isfinite(train_loss):
        raise TrainingDiverged(
            f"training diverged at epoch {epoch + 1}: the mean training loss is {train_loss} "
            f"(lr {lr:.3g} at the end of the epoch); lower budget.lr or switch tricks off."
        )


def _prepare(
    recipe: Recipe,
    model: nn.Module | str | ModelFactory | None,
    data: DatasetSplits,
    dev: torch.device,
    teacher: nn.Module | None,
    max_device_bytes: int | None,
) -> _Run:
    """Set up one training: the model on the device (lazy modules materialised), seeded batches,
    the recipe's pieces (which edit a fresh model: zero-γ, class-prior bias) and the teacher."""
    if isinstance(model, nn.Module):
        net, fresh = materialize_lazy(model.to(dev), data, dev), False
    else:
        net, fresh = make_model(recipe, data, model, device=dev), True
    # semi: a pool is required; co-/tri-training train the members of one module (seeds +1, +2)
    net = semi_attach(
        recipe, net, data, (lambda r: make_model(r, data, model, device=dev)) if fresh else None
    )
    budget = recipe.budget
    torch.manual_seed(budget.seed)
    # The train split lives on the device when it fits in ``max_device_bytes`` (default 2 GiB);
    # otherwise batches stream from host memory (same order, so the same numbers on a CPU).
    extra = {} if max_device_bytes is None else {"max_device_bytes": max_device_bytes}
    loader = make_loader(
        data, budget.batch_size, split="train", device=dev, shuffle=True, seed=budget.seed, **extra
    )
    parts = build(
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
    _warm_up(parts, data, dev)
    if parts.uses_teacher and teacher is None:
        teacher = get_teacher(recipe, data, device=dev, train=_train_teacher)
    if teacher is not None:
        teacher = teacher.to(dev).eval()
    return _Run(net, data, dev, loader, parts, teacher, parts.precision.scaler(dev))


def _warm_up(parts: Components, data: DatasetSplits, dev: torch.device) -> None:
    """Copy the step's constant tables to the device now, not in the first step (on CUDA each
    copy from Python data waits for the device): the normalisation's mean/std, the policy's."""
    if not len(data.x_train):
        return
    sample = data.x_train[:1].to(dev)  # its device is the batches' ("cuda:0", not "cuda")
    to_float(sample, data.mean, data.std)
    policy = getattr(parts.augment, "policy", None)
    if policy is not None and sample.ndim == 4:
        policy[1].table(sample.shape[-2], sample.shape[-1], sample.device)


def _train_epoch(run: _Run, epoch: int) -> tuple[float, int, int, float]:
    """One pass over the training batches: (mean training loss, correct, samples, last LR)."""
    run.net.train()
    # Summed on the device: no host sync in the training step (read once per epoch).
    loss_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    correct = torch.zeros((), dtype=torch.int64, device=run.device)
    seen = 0
    lr = run.parts.lr_schedule.lr_at(run.step)
    loader, full = _epoch_loader(run, epoch), len(run.loader)
    start, steps = run.step, len(loader)
    for i, (xb, yb) in enumerate(loader.epoch(epoch)):
        run.step = start + (i * full) // steps  # start + i on the whole split
        lr = run.parts.set_lr(run.step)
        loss, logits, target = training_step(run, xb, yb, epoch)
        run.step += 1
        n = len(yb)
        seen += n
        loss_sum += loss.detach().double() * n
        hard = target.argmax(1) if target.ndim == 2 else target
        correct += (logits.argmax(1) == hard).sum()
    run.step = start + full  # a subset's epoch advances the clock by one whole epoch too
    return loss_sum.item() / max(seen, 1), int(correct.item()), seen, lr


def _epoch_loader(run: _Run, epoch: int) -> Any:
    """The loader of ``epoch``: the run's, or one over ``run.subset(epoch)``'s samples (made
    once per subset: same batch size, seed and kind, sharded as the run's is)."""
    idx = None if run.subset is None else run.subset(epoch)
    if idx is None:
        return run.loader
    if id(idx) not in run.subset_loaders:
        full = run.loader
        part = (run.data.x_train[idx], run.data.y_train[idx])
        common = dict(device=run.device, shuffle=True, seed=full.seed)
        loader = (
            DeviceLoader(*part, full.batch_size, **common)
            if isinstance(full, DeviceLoader)
            else StreamingLoader(part, full.batch_size, **common)
        )
        if full.world_size > 1:
            loader = loader.sharded(full.rank, full.world_size, on_batch=full.on_batch)
        run.subset_loaders[id(idx)] = (idx, loader)  # the index tensor kept: its id stays unique
    return run.subset_loaders[id(idx)][1]


def training_step(
    run: _Run, xb: torch.Tensor, yb: torch.Tensor, epoch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on a batch: (loss, logits, target), all on the device, nothing read
    back (the unit ``engine.sync_audit`` and the CUDA sync test watch)."""
    if run.parts.semi is None:
        return _train_step(run, xb, yb, epoch)
    # labelled + unlabelled terms, one optimizer step (tricks/_semi_step.py)
    return run.parts.semi.step(run, xb, yb, epoch, optimizer_step)


def _train_step(
    run: _Run, xb: torch.Tensor, yb: torch.Tensor, epoch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment, mix, (perturb), forward, loss, backward, step, EMA: (loss, logits, target)."""
    parts, net = run.parts, run.net
    if parts.augment is not None:
        xb = parts.augment(xb, epoch)
    x = to_float(xb, run.data.mean, run.data.std)
    if parts.multiscale is not None:
        x = parts.multiscale(x, epoch)
    x = run.options.batch(x)  # runtime.channels_last
    target = yb
    if parts.mixer is not None:
        x, target = parts.mixer(x, yb)
    if parts.adversarial is not None:
        # The attack raises the task loss (cross entropy on the hard or soft target), not the
        # distillation or flooding terms of the training loss.
        x = parts.adversarial(net, x, target, F.cross_entropy)
    with parts.precision.autocast(run.device):
        # runtime.compile's compiled forward, else the DDP wrapper (data-parallel) or the model
        forward = run.dist.train_net(net) if run.forward is None else run.forward
        logits = forward(x)
        teacher_logits = None
        if run.teacher is not None:
            with torch.no_grad():
                teacher_logits = run.teacher(x).float()
    loss = parts.loss(logits.float(), target, teacher_logits=teacher_logits)
    optimizer_step(run, run.dist.scale_loss(loss, len(yb)))  # share of the global batch
    return loss, logits, target


def optimizer_step(run: _Run, loss: torch.Tensor) -> None:
    """Backward ``loss``, clip, step (through the fp16 scaler when there is one), update the EMA."""
    parts, net = run.parts, run.net
    parts.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        if parts.grad_clip is not None:
            run.scaler.unscale_(parts.optimizer)
            nn.utils.clip_grad_norm_(net.parameters(), parts.grad_clip)
        run.scaler.step(parts.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if parts.grad_clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), parts.grad_clip)
        parts.optimizer.step()
    if parts.ema is not None:
        parts.ema.update_parameters(net)


def _result(
    run: _Run,
    history: list[EpochMetrics],
    snapshots: list[nn.Module],
    evaluate_test: bool,
    images: int,
    t_start: float,
) -> FitResult:
    """The final scores: the last epoch's, or the snapshot ensemble's; test only when asked."""
    data, dev, final_net = run.data, run.device, run.eval_net
    members = snapshots if len(snapshots) > 1 else None
    if members:
        val_acc, val_loss = evaluate(
            final_net, data.x_val, data.y_val, data, dev, models=members, options=run.options
        )
    else:
        val_acc, val_loss = history[-1].val_acc, history[-1].val_loss
    test_acc = test_loss = None
    if evaluate_test:
        test_acc, test_loss = evaluate(
            final_net, data.x_test, data.y_test, data, dev, models=members, options=run.options
        )
    ema = run.parts.ema
    return FitResult(
        history=history,
        val_acc=val_acc,
        val_loss=val_loss,
        test_acc=test_acc,
        test_loss=test_loss,
        seconds=time.perf_counter() - t_start,
        device=str(dev),
        model=ema.module if isinstance(ema, AveragedModel) else run.net,
        images_seen=images,
    )
