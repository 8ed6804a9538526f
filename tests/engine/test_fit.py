"""The engine: determinism, the on_epoch contract, divergence, devices, lazy modules, teachers,
checkpoints. ``short_recipe`` and ``digits`` come from tests/conftest.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tricksearch.engine import (
    TrainingDiverged,
    evaluate,
    fit,
    load_checkpoint,
    materialize_lazy,
    resolve_device,
)
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe


def test_same_seed_same_numbers(short_recipe: Recipe) -> None:
    r = short_recipe
    a, b = fit(r), fit(r)
    assert [m.train_loss for m in a.history] == [m.train_loss for m in b.history]
    assert a.val_acc == b.val_acc
    other = fit(r.with_changes(budget=r.budget.to_dict() | {"seed": 1}))
    assert [m.train_loss for m in other.history] != [m.train_loss for m in a.history]


def test_on_epoch_gets_every_epoch(short_recipe: Recipe) -> None:
    r = short_recipe
    seen_obj, seen_kw = [], []
    fit(r, on_epoch=lambda m: seen_obj.append(m))
    fit(r, on_epoch=lambda m: seen_kw.append(m.as_dict()))  # one signature: on_epoch(metrics)
    assert [m.epoch for m in seen_obj] == [1, 2]
    assert set(seen_kw[0]) >= {"train_loss", "val_acc", "val_loss", "epoch_seconds"}
    assert seen_kw[1]["val_acc"] == seen_obj[1].val_acc


def test_test_split_only_when_asked(short_recipe: Recipe, digits) -> None:
    r = short_recipe
    assert fit(r).test_acc is None
    res = fit(r, evaluate_test=True)
    assert 0.0 <= res.test_acc <= 1.0
    assert res.images_seen == 2 * len(digits.y_train)


class _Exploding(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("inf")


def test_nan_loss_raises_diverged(short_recipe: Recipe) -> None:
    r = short_recipe
    with pytest.raises(TrainingDiverged, match="diverged at epoch 1"):
        fit(r, model=_Exploding)


def test_user_factory_and_module(short_recipe: Recipe) -> None:
    r = short_recipe
    calls = []

    def factory(in_channels: int, num_classes: int) -> nn.Module:
        calls.append((in_channels, num_classes))
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))

    res = fit(r, model=factory)
    assert calls == [(1, 10)]
    assert res.val_acc > 0.5
    res2 = fit(r, model=res.model)  # an nn.Module trains on
    assert res2.val_acc >= 0.5


def _lazy_cnn(in_channels: int, num_classes: int) -> nn.Module:
    """A user's model whose classifier learns its input size at the first forward."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes)
    )


@pytest.mark.parametrize(
    "tricks",
    [{"procedure": {"ema": {}}}, {"loss": {"bias_prior": {}}}],
    ids=["ema", "bias_prior"],
)
def test_lazy_modules_are_materialised_before_tricks_touch_the_weights(
    short_recipe: Recipe, tricks: dict
) -> None:
    """EMA copies the weights and bias_prior edits the classifier bias before the first step:
    a ``nn.LazyLinear`` has them only after one forward pass, which the engine runs first."""
    r = short_recipe.with_changes(budget=short_recipe.budget.to_dict() | {"epochs": 1}, **tricks)
    res = fit(r, model=_lazy_cnn, device="cpu")
    m = res.history[0]
    assert all(math.isfinite(v) for v in (m.train_loss, m.val_loss, res.val_acc, res.val_loss))
    classifier = res.model[-1]
    assert isinstance(classifier, nn.Linear) and classifier.in_features == 8 * 8 * 8


def test_materialize_lazy_leaves_other_models_alone(digits) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).train()
    before = [p.clone() for p in net.parameters()]
    assert materialize_lazy(net, digits, torch.device("cpu")) is net and net.training
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    lazy = _lazy_cnn(1, 10).train()
    materialize_lazy(lazy, digits, torch.device("cpu"))
    assert lazy.training and lazy[-1].weight.shape == (10, 8 * 8 * 8)


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_evaluate_matches_manual_accuracy(digits) -> None:
    data = digits
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    acc, loss = evaluate(net, data.x_val, data.y_val, data, torch.device("cpu"))
    x = (data.x_val.float() / 255 - torch.tensor(data.mean).view(1, -1, 1, 1)) / torch.tensor(
        data.std
    ).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = net(x)
    assert acc == pytest.approx((logits.argmax(1) == data.y_val).float().mean().item())
    assert loss == pytest.approx(nn.functional.cross_entropy(logits, data.y_val).item(), rel=1e-5)


@pytest.mark.slow
def test_distillation_teacher_trained_once_and_cached(
    tmp_path, monkeypatch, short_recipe: Recipe
) -> None:
    monkeypatch.setenv("TRICKSEARCH_CACHE", str(tmp_path))
    from tricksearch.engine import teacher as teacher_mod

    teacher_mod._MEMORY.clear()
    r = short_recipe.with_changes(
        loss={"distillation": {"teacher": "cnn-small", "teacher_epochs": 1}}
    )
    fit(r)
    cached = list((tmp_path / "teachers").glob("*.pt"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    teacher_mod._MEMORY.clear()  # a new worker process: loads from disk, does not retrain
    other = r.with_changes(budget=r.budget.to_dict() | {"lr": 0.01, "batch_size": 64})
    fit(other)
    assert [p.stat().st_mtime_ns for p in (tmp_path / "teachers").glob("*.pt")] == [mtime]


def test_checkpoint_round_trip(tmp_path, short_recipe: Recipe, digits) -> None:
    from tricksearch.api import train

    metrics = train(short_recipe, out=tmp_path / "run")
    model = load_checkpoint(tmp_path / "run" / "model.pt")
    data = digits
    acc, _ = evaluate(model, data.x_test, data.y_test, data, torch.device("cpu"))
    assert acc == pytest.approx(metrics["test_acc"])
    with pytest.raises(ConfigError, match="not a tricksearch checkpoint"):
        torch.save({"x": 1}, tmp_path / "bad.pt")
        load_checkpoint(tmp_path / "bad.pt")


def test_streaming_path_gives_the_same_numbers_as_the_device_path(
    short_recipe: Recipe, digits
) -> None:
    from tricksearch.data.loader import StreamingLoader

    r = short_recipe.with_changes(augment={"hflip": {}, "random_crop": {"padding": 1}})
    resident = fit(r)
    streamed = fit(r, max_device_bytes=0)  # nothing "fits": batches stream from host memory
    assert [m.train_loss for m in streamed.history] == [m.train_loss for m in resident.history]
    assert streamed.images_seen == resident.images_seen
    from tricksearch.data.loader import make_loader

    assert isinstance(make_loader(digits, 64, max_device_bytes=0), StreamingLoader)
