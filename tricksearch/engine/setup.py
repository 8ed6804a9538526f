"""Setting up a training: the device, the recipe's data, its model (lazy modules materialised)
and evaluation. Used by :func:`tricksearch.engine.fit` and by whoever builds or scores a model
outside a training (the pre-flight, the ablation, the CLI)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from tricksearch.components import model_options
from tricksearch.data import DatasetSplits, load_dataset
from tricksearch.data.loader import to_float
from tricksearch.engine.options import EngineOptions
from tricksearch.errors import ConfigError
from tricksearch.models import build_model
from tricksearch.recipe import Recipe

__all__ = [
    "ModelFactory",
    "evaluate",
    "load_data",
    "make_model",
    "materialize_lazy",
    "resolve_device",
]


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
    """The dataset and split named by the recipe, with its unlabelled pool (``data.unlabeled``,
    ``data.labeled_fraction``); cached per process."""
    d = recipe.data
    return load_dataset(
        d.dataset,
        data_root=d.data_root,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        split_seed=d.split_seed,
        skip_corrupt=d.skip_corrupt,
        unlabeled=d.unlabeled,
        labeled_fraction=d.labeled_fraction,
    )


ModelFactory = Callable[..., nn.Module]


def make_model(
    recipe: Recipe,
    data: DatasetSplits,
    model: str | ModelFactory | None = None,
    *,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Build the model of the recipe (or a user's factory) for this dataset, seeded, on ``device``.

    Lazily initialised modules (``nn.LazyLinear`` …) are materialised on the real data shape
    (:func:`materialize_lazy`), so the model returned has every parameter. A registry model made
    for another data kind is refused (``cnn-small`` on signals), naming the models that fit.
    """
    torch.manual_seed(recipe.budget.seed)
    spec: str | ModelFactory = recipe.model.name if model is None else model
    net = build_model(
        spec,
        in_channels=data.channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        options=model_options(recipe),
        kind=data.kind,
    )
    device = torch.device(device)
    return materialize_lazy(net.to(device), data, device)


def materialize_lazy(net: nn.Module, data: DatasetSplits, device: torch.device) -> nn.Module:
    """Give the lazily initialised modules of ``net`` their parameters; a no-op without them.

    One forward pass (no grad, eval mode) on two real training images on ``device``: before it,
    an ``nn.LazyLinear`` has no weight to copy (EMA's averaged model), to edit (the class-prior
    bias, zero-γ) or to hand to the optimizer.
    """
    lazy = (m for m in net.modules() if isinstance(m, LazyModuleMixin))
    if not any(m.has_uninitialized_params() for m in lazy):
        return net
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(to_float(data.x_train[:2].to(device), data.mean, data.std))
    net.train(was_training)
    return net


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
    options: EngineOptions | None = None,
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` — or of the softmax average of ``models``.

    ``options`` (the recipe's engine options, :mod:`tricksearch.engine.options`): channels-last
    batches, bf16 autocast of the forward passes (``eval_bf16``; softmax and loss in fp32).
    The sums stay on the device and are read once at the end (no host sync per batch).
    """
    options = options or EngineOptions()
    members = models or [model]
    was_training = [m.training for m in members]
    for m in members:
        m.eval()
    n = len(y)
    # float64, as the Python sum of the per-batch values was: the same numbers
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, n, batch_size):
        # non_blocking: a host split's batches are queued, not waited for (their memory is kept)
        xb = x[start : start + batch_size].to(device, non_blocking=True)
        xb = options.batch(to_float(xb, data.mean, data.std))
        yb = y[start : start + batch_size].to(device, non_blocking=True)
        with options.eval_autocast(device):
            outs = [m(xb) for m in members]
        probs = torch.stack([F.softmax(o.float(), dim=1) for o in outs]).mean(0)
        total_loss += F.nll_loss(probs.clamp_min(1e-12).log(), yb, reduction="sum").double()
        correct += (probs.argmax(1) == yb).sum()
    for m, flag in zip(members, was_training, strict=False):
        m.train(flag)
    return int(correct.item()) / max(n, 1), total_loss.item() / max(n, 1)
