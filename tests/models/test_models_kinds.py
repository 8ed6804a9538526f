"""Models per data kind: cnn1d on signals of any length, mlp on every kind, clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tricksearch.errors import ConfigError
from tricksearch.models import (
    Cnn1d,
    build_model,
    get_classifier,
    list_models,
    model_kinds,
    model_options,
    model_traits,
    models_for_kind,
)


def _cnn1d(channels: int, length: int, **options: object) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        "cnn1d",
        in_channels=channels,
        num_classes=4,
        image_size=(1, length),
        options=options,
        kind="signal",
    )


@pytest.mark.parametrize(("channels", "length"), [(1, 1), (1, 2), (2, 7), (3, 64), (1, 1000)])
def test_cnn1d_runs_on_any_length(channels: int, length: int) -> None:
    model = _cnn1d(channels, length).eval()
    assert isinstance(model, Cnn1d)
    assert model(torch.randn(2, channels, length)).shape == (2, 4)
    assert model.fc is model.classifier is get_classifier(model)


def test_cnn1d_pools_adaptively_so_longer_signals_run_too() -> None:
    model = _cnn1d(2, 32).eval()
    assert model(torch.randn(3, 2, 500)).shape == (3, 4)
    assert model_traits("cnn1d") == {"residual": False, "adaptive_pool": True}
    assert model_traits(model)["adaptive_pool"]  # AdaptiveAvgPool1d counts


def test_cnn1d_options() -> None:
    assert {"width", "kernel", "activation", "norm", "dropout"} <= set(model_options("cnn1d"))
    model = _cnn1d(1, 16, width=8, kernel=3, norm="group", norm_groups=4, activation="gelu")
    assert model.features[0].kernel_size == (3,) and model.features[0].out_channels == 8
    assert isinstance(model.features[1], nn.GroupNorm)
    assert any(isinstance(m, nn.BatchNorm1d) for m in _cnn1d(1, 16).modules())
    with pytest.raises(ConfigError, match=r"options.kernel must be odd"):
        _cnn1d(1, 16, kernel=4)
    with pytest.raises(ConfigError, match=r"cnn1d.*image_size \(1, L\).*got image_size \(8, 8\)"):
        build_model("cnn1d", in_channels=1, num_classes=2, image_size=(8, 8))


def test_cnn1d_learns_to_tell_sine_frequencies_apart() -> None:
    torch.manual_seed(0)
    n, length = 96, 32
    y = torch.arange(n) % 2
    t = torch.arange(length).float()
    x = torch.sin(2 * torch.pi * (2.0 + 5.0 * y)[:, None] * t / length)[:, None]
    x = x + 0.3 * torch.randn(n, 1, length)
    model = _cnn1d(1, length, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.9


@pytest.mark.parametrize(
    ("kind", "shape", "image_size"),
    [
        ("features", (2, 9), (1, 1)),
        ("signal", (2, 3, 10), (1, 10)),
        ("image", (2, 1, 8, 8), (8, 8)),
    ],
)
def test_mlp_flattens_every_kind(kind: str, shape: tuple, image_size: tuple) -> None:
    model = build_model(
        "mlp", in_channels=shape[1], num_classes=5, image_size=image_size, kind=kind
    )
    assert model(torch.randn(*shape)).shape == (2, 5)


@pytest.mark.parametrize("name", ["cnn-small", "resnet-cifar", "torchvision:resnet18"])
@pytest.mark.parametrize("kind", ["signal", "features"])
def test_image_models_are_refused_on_other_data(name: str, kind: str) -> None:
    fits = "mlp, cnn1d" if kind == "signal" else "mlp"
    with pytest.raises(ConfigError) as info:
        build_model(name, in_channels=2, num_classes=3, image_size=(1, 16), kind=kind)
    msg = str(info.value)
    assert f"model {name!r} works on image data, not {kind} data" in msg
    assert f"models for {kind} data: {fits}, or a callable" in msg and "\n" not in msg


def test_cnn1d_is_refused_on_images_and_kinds_are_declared() -> None:
    with pytest.raises(
        ConfigError, match=r"'cnn1d' works on signal data, not image data.*cnn-small"
    ):
        build_model("cnn1d", in_channels=3, num_classes=2, image_size=(32, 32), kind="image")
    with pytest.raises(ConfigError, match=r"kind: got 'audio'"):
        build_model("mlp", in_channels=3, num_classes=2, image_size=(1, 1), kind="audio")
    assert model_kinds("mlp") == ("image", "signal", "features")
    assert model_kinds("cnn1d") == ("signal",) and model_kinds("torchvision:resnet18") == ("image",)
    assert models_for_kind("features") == ["mlp"]
    assert "torchvision:NAME" in models_for_kind("image") and "cnn1d" in list_models()


def test_callables_are_trusted_with_any_kind() -> None:
    def net(in_channels: int, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Conv1d(in_channels, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))

    model = build_model(net, in_channels=2, num_classes=3, image_size=(1, 12), kind="signal")
    assert model(torch.randn(2, 2, 12)).shape == (2, 3)
