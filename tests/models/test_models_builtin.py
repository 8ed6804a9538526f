"""Built-in models: forward shapes on every input size, options, ResNet variants, handles."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.models import (
    BasicBlock,
    Bottleneck,
    build_model,
    get_classifier,
    list_models,
    model_kinds,
    model_options,
    model_traits,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
BUILTIN = [name for name in list_models() if ":" not in name]
IMAGE_MODELS = [name for name in BUILTIN if "image" in model_kinds(name)]  # cnn1d: signals only


def _build(name: str, shape: tuple[int, int, int] = (3, 32, 32), **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        name, in_channels=shape[0], num_classes=7, image_size=shape[1:], options=options
    )


def _out(model: nn.Module, shape: tuple[int, int, int] = (3, 32, 32)) -> torch.Tensor:
    return model(torch.randn(2, *shape))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_shape_on_every_input_size(name: str, shape: tuple[int, int, int]) -> None:
    model = _build(name, shape)
    assert _out(model, shape).shape == (2, 7)
    assert model.fc is model.classifier is get_classifier(model)
    assert isinstance(model.fc, nn.Linear) and model.fc.out_features == 7


@pytest.mark.parametrize("name", BUILTIN)
def test_registry_entries_are_described(name: str) -> None:
    assert list_models()[name]
    assert set(model_traits(name)) == {"residual", "adaptive_pool"}
    assert "activation" in model_options(name) and "dropout" in model_options(name)


def test_traits() -> None:
    assert model_traits("resnet-cifar") == {"residual": True, "adaptive_pool": True}
    assert model_traits("mlp") == {"residual": False, "adaptive_pool": False}
    assert model_traits("cnn-small")["adaptive_pool"]
    assert model_traits(_build("resnet-cifar"))["residual"]  # a built module is inspected
    assert not model_traits(_build("cnn-small"))["residual"]


def test_unknown_model_and_unknown_option() -> None:
    with pytest.raises(ConfigError, match=r"unknown model 'resnet50'.*resnet-cifar"):
        _build("resnet50")
    with pytest.raises(ConfigError, match=r"no option\(s\) 'blocks'.*allowed: .*depth"):
        _build("resnet-cifar", blocks=3)
    with pytest.raises(ConfigError, match=r"no option\(s\) 'variant'.*allowed:.*width"):
        _build("cnn-small", variant="d")


@pytest.mark.parametrize(
    ("name", "options", "error", "pattern"),
    [
        ("cnn-small", {"activation": "tanh"}, ConfigError, r"activation='tanh'.*relu, gelu"),
        ("cnn-small", {"norm": "layer"}, ConfigError, r"options.norm='layer'.*batch, group"),
        ("cnn-small", {"dropout": 1.0}, ConfigError, r"options.dropout must satisfy 0 <="),
        ("cnn-small", {"width": "16"}, ConfigTypeError, r"options.width must be an int"),
        ("cnn-small", {"width": 0}, ConfigError, r"options.width must be >= 1"),
        ("resnet-cifar", {"depth": 21}, ConfigError, r"depth=21.*6n\+2, e.g. 8, 14, 20"),
        ("resnet-cifar", {"depth": 2}, ConfigError, r"depth=2"),
        ("resnet-cifar", {"depth": 32, "block": "bottleneck"}, ConfigError, r"9n\+2"),
        ("resnet-cifar", {"variant": "e"}, ConfigError, r"variant='e'.*a, b, c, d"),
        ("mlp", {"hidden": -3}, ConfigError, r"options.hidden must be >= 1"),
    ],
)
def test_bad_option_values_name_the_field(name, options, error, pattern) -> None:
    with pytest.raises(error, match=pattern):
        _build(name, **options)


def test_group_norm_divisibility() -> None:
    with pytest.raises(ConfigError) as err:
        _build("cnn-small", width=12, norm="group", norm_groups=8)
    msg = str(err.value)
    assert "options.norm_groups=8 does not divide the 12 channels" in msg
    assert "features.block0" in msg and "[1, 2, 3, 4, 6, 12]" in msg
    with pytest.raises(ConfigError, match=r"model_tweaks.group_norm.groups=5 does not divide"):
        build_model(
            "resnet-cifar",
            in_channels=3,
            num_classes=10,
            image_size=(32, 32),
            options={"norm": "group", "norm_groups": 5},
            option_fields={"norm_groups": "model_tweaks.group_norm.groups"},
        )
    with pytest.raises(ConfigError, match=r"norm_groups=4 is only used with options.norm='group'"):
        _build("cnn-small", norm_groups=4)


def test_group_norm_and_activation_replace_layers() -> None:
    model = _build("resnet-cifar", norm="group", norm_groups=4, activation="gelu")
    kinds = {type(m) for m in model.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    assert nn.GELU in kinds and nn.ReLU not in kinds
    assert _out(model).shape == (2, 7)
    mlp = _build("mlp", norm="batch", depth=2, hidden=32, dropout=0.5)
    assert any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules())
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in mlp.modules())


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("variant", ["a", "b", "c", "d"])
def test_variants_forward(block: str, variant: str) -> None:
    depth = 11 if block == "bottleneck" else 8
    for shape in ((1, 8, 8), (3, 32, 32)):
        model = _build("resnet-cifar", shape, block=block, variant=variant, depth=depth)
        assert _out(model, shape).shape == (2, 7)
        assert len(_blocks(model)) == 3


def test_variant_details() -> None:
    def convs(m: nn.Module) -> int:
        return sum(isinstance(c, nn.Conv2d) for c in m.modules())

    a = _build("resnet-cifar", block="bottleneck", depth=11, variant="a")
    b = _build("resnet-cifar", block="bottleneck", depth=11, variant="b")
    assert a.layer2[0].conv1.stride == (2, 2) and a.layer2[0].conv2.stride == (1, 1)
    assert b.layer2[0].conv1.stride == (1, 1) and b.layer2[0].conv2.stride == (2, 2)
    assert convs(a.stem) == 1
    for block in ("basic", "bottleneck"):
        c = _build("resnet-cifar", block=block, variant="c")
        d = _build("resnet-cifar", block=block, variant="d")
        assert convs(c.stem) == convs(d.stem) == 3
        assert not any(isinstance(m, nn.AvgPool2d) for m in c.modules())
        for layer in (d.layer2, d.layer3):
            assert isinstance(layer[0].downsample[0], nn.AvgPool2d)
            assert layer[0].downsample[1].stride == (1, 1)
    # for basic blocks, B changes nothing
    pa, pb = (_build("resnet-cifar", variant=v) for v in "ab")
    assert str(pa) == str(pb)


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_every_block_exposes_last_bn(block: str) -> None:
    model = _build("resnet-cifar", block=block, depth=20)
    blocks = _blocks(model)
    assert len(blocks) == (9 if block == "basic" else 6)
    for blk in blocks:
        expected = blk.bn3 if block == "bottleneck" else blk.bn2
        assert blk.last_bn is expected
        nn.init.zeros_(blk.last_bn.weight)  # zero-gamma: each block starts as the identity
    assert not any("last_bn" in k or "classifier" in k for k in model.state_dict())
    assert _out(model).shape == (2, 7)


def test_depth_sets_the_number_of_blocks() -> None:
    assert len(_blocks(_build("resnet-cifar", depth=32))) == 15
    assert len(_blocks(_build("resnet-cifar", depth=29, block="bottleneck"))) == 9


def test_deepcopy_keeps_handles_consistent() -> None:
    model = copy.deepcopy(_build("resnet-cifar", depth=8))
    assert model.layer1[0].last_bn is model.layer1[0].bn2 and model.classifier is model.fc


def test_user_callable() -> None:
    calls = {}

    def tiny(in_channels: int, num_classes: int, hidden: int = 4) -> nn.Module:
        calls.update(in_channels=in_channels, num_classes=num_classes, hidden=hidden)
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.Linear(hidden, num_classes))

    model = build_model(
        tiny, in_channels=2, num_classes=5, image_size=(4, 4), options={"hidden": 9}
    )
    assert calls == {"in_channels": 2, "num_classes": 5, "hidden": 9}
    assert model(torch.randn(3, 2, 4, 4)).shape == (3, 5)
    assert get_classifier(model).out_features == 5

    class Net(nn.Module):
        def __init__(self, **kwargs) -> None:
            super().__init__()
            self.kwargs = kwargs

    net = build_model(Net, in_channels=1, num_classes=3, image_size=8)
    assert net.kwargs == {"in_channels": 1, "num_classes": 3, "image_size": (8, 8)}

    with pytest.raises(ConfigError, match=r"does not accept option 'depth'; allowed: hidden"):
        build_model(tiny, in_channels=1, num_classes=2, image_size=(4, 4), options={"depth": 2})
    with pytest.raises(TypeError, match=r"must return a torch\.nn\.Module, got str"):
        build_model(lambda in_channels: "x", in_channels=1, num_classes=2, image_size=(4, 4))


def test_sizes_are_checked() -> None:
    with pytest.raises(ConfigError, match="num_classes must be >= 1"):
        build_model("mlp", in_channels=1, num_classes=0, image_size=(8, 8))
    with pytest.raises(ConfigTypeError, match="image_size"):
        build_model("mlp", in_channels=1, num_classes=2, image_size=(8, 8, 8))
    with pytest.raises(ConfigTypeError, match="model must be a name"):
        build_model(3, in_channels=1, num_classes=2, image_size=(8, 8))  # type: ignore[arg-type]
