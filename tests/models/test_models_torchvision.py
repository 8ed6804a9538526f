"""``torchvision:NAME`` models: adapted to channels and tiny images, with uniform handles."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from tricksearch.errors import ConfigError
from tricksearch.models import DropoutLinear, build_model, get_classifier, model_traits

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def _build(name: str, shape: tuple[int, int, int], **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        f"torchvision:{name}",
        in_channels=shape[0],
        num_classes=6,
        image_size=shape[1:],
        options=options,
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_forward_shape(name: str, shape: tuple[int, int, int]) -> None:
    model = _build(name, shape)
    assert model(torch.randn(2, *shape)).shape == (2, 6)
    assert model.fc is get_classifier(model) and model.fc.out_features == 6


def test_resnet_handles_and_stem() -> None:
    model = _build("resnet18", (1, 8, 8))
    assert model.conv1.in_channels == 1 and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8 and all(b.last_bn is b.bn2 for b in blocks)
    assert model.classifier is model.fc
    assert not any("last_bn" in k or "classifier" in k for k in model.state_dict())
    big = _build("resnet18", (3, 32, 32))
    assert big.conv1.stride == (2, 2) and isinstance(big.maxpool, nn.MaxPool2d)
    forced = _build("resnet18", (3, 32, 32), small_stem=True)
    assert forced.conv1.stride == (1, 1)


def test_torchvision_options() -> None:
    model = _build("resnet18", (3, 32, 32), activation="silu", norm="group", norm_groups=16)
    kinds = {type(m) for m in model.modules()}
    assert nn.SiLU in kinds and nn.ReLU not in kinds and nn.BatchNorm2d not in kinds
    assert all(b.last_bn is b.bn2 and isinstance(b.bn2, nn.GroupNorm)
               for b in model.modules() if isinstance(b, BasicBlock))  # fmt: skip
    drop = _build("mobilenet_v3_small", (3, 32, 32), dropout=0.3)
    assert isinstance(drop.fc, DropoutLinear) and drop.fc.p == 0.3
    assert isinstance(drop.classifier, nn.Sequential)  # torchvision's name is kept
    with pytest.raises(ConfigError, match=r"norm_groups=48 does not divide the 64 channels"):
        _build("resnet18", (3, 32, 32), norm="group", norm_groups=48)
    with pytest.raises(ConfigError, match="small_stem applies to the ResNet family"):
        _build("mobilenet_v3_small", (3, 32, 32), small_stem=True)
    with pytest.raises(ConfigError, match=r"no option\(s\) 'variant'"):
        _build("resnet18", (3, 32, 32), variant="d")


def test_unknown_torchvision_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown torchvision model 'resnet19'.*resnet18"):
        _build("resnet19", (3, 32, 32))
    with pytest.raises(ConfigError, match="unknown torchvision model"):
        model_traits("torchvision:nonet")


def test_too_small_input_is_refused_at_build() -> None:
    with pytest.raises(ConfigError, match=r"does not run on 1x8x8 images"):
        _build("squeezenet1_1", (1, 8, 8))


def test_traits() -> None:
    assert model_traits("torchvision:resnet50") == {"residual": True, "adaptive_pool": True}
    assert model_traits("torchvision:mobilenet_v3_small")["residual"] is False
    assert model_traits("torchvision:vit_b_16")["adaptive_pool"] is False
