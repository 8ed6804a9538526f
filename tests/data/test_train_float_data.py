"""End to end through ``tricksearch.train``: float signals with ``cnn1d``, features with ``mlp``.

The data carry a planted class signal (a sine frequency per class under noise and a large
offset; class means apart in a few of many features), so a few epochs must land clearly above
chance. The offsets and scales would break an uint8 squeeze into [0, 1]; standardisation on the
train split makes them harmless.
"""

from __future__ import annotations

import torch

import tricksearch


def _sine_signals(n: int, length: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    t = torch.arange(length, dtype=torch.float64)
    freq = torch.tensor([1.0, 3.0, 6.0], dtype=torch.float64)[y]
    phase = torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 * torch.pi
    clean = torch.sin(2 * torch.pi * freq[:, None] * t / length + phase)
    noise = torch.randn(n, 2, length, generator=g, dtype=torch.float64)
    x = 250.0 + 40.0 * (clean[:, None] + 0.8 * noise)  # 2 channels, far from [0, 1]
    return x, y


def _features(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 12, generator=g)
    x[:, :3] += 3.0 * torch.nn.functional.one_hot(y, 4)[:, :3].float()  # class 3: none shifted
    return x * 1e3 - 7.0, y


def test_train_cnn1d_on_signals_beats_chance() -> None:
    x, y = _sine_signals(360)
    metrics = tricksearch.train(
        {"budget": {"batch_size": 32, "lr": 0.05}, "model": {"options": {"width": 8}}},
        dataset=(x, y),
        model="cnn1d",
        epochs=4,
        device="cpu",
    )
    assert metrics["val_acc"] > 0.8 and metrics["test_acc"] > 0.8  # chance: 1/3


def test_train_mlp_on_features_beats_chance() -> None:
    x, y = _features(600)
    xt, yt = _features(200, seed=1)
    metrics = tricksearch.train(
        {"budget": {"batch_size": 32, "lr": 0.05}, "model": {"options": {"hidden": 32}}},
        dataset=(x, y, xt, yt),
        model="mlp",
        epochs=4,
        device="cpu",
    )
    assert metrics["test_acc"] > 0.7  # chance: 1/4
