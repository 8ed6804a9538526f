"""Tests of the ``model_tweaks`` family: declarations, model options, zero-γ."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import model_tweaks as M
from tricksearch.tricks import tricks_in_family

SPECS = tricks_in_family("model_tweaks")


def test_family_is_complete() -> None:
    assert set(SPECS) == {
        "zero_gamma",
        "dropout",
        "group_norm",
        "activation",
        "resnet_variant",
        "sync_bn",
    }
    assert SPECS["zero_gamma"].needs_residual
    assert SPECS["resnet_variant"].needs_residual


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_defaults_and_search_ranges_validate(name: str) -> None:
    spec = SPECS[name]
    assert spec.validate({}, f"model_tweaks.{name}") == spec.defaults()
    for p in spec.params:
        s = p.search
        assert s is not None
        for v in s.choices if s.choices is not None else (s.low, s.high):
            p.validate(v, "x")


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("dropout", "p", 0.6),
        ("dropout", "p", -0.1),
        ("group_norm", "groups", 4),
        ("group_norm", "groups", 64),
        ("activation", "fn", "relu"),
        ("activation", "fn", "tanh"),
        ("resnet_variant", "variant", "a"),
        ("resnet_variant", "variant", "e"),
    ],
)
def test_out_of_range_is_refused_naming_the_field(name: str, param: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"model_tweaks\.{name}\.{param}: got"):
        M.model_options({name: {param: bad}})


def test_wrong_types_and_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigTypeError, match=r"dropout.p"):
        M.model_options({"dropout": {"p": "0.1"}})
    with pytest.raises(ConfigError, match=r"model_tweaks\.zero_gama: unknown trick.*zero_gamma"):
        M.model_options({"zero_gama": {}})
    with pytest.raises(ConfigError, match="unknown parameter"):
        M.model_options({"zero_gamma": {"on": True}})


def test_off_gives_no_options() -> None:
    assert M.model_options({}) == {}
    model = nn.Linear(2, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    M.init_model({}, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_options_mapping() -> None:
    section = {
        "dropout": {"p": 0.3},
        "group_norm": {"groups": 16},
        "activation": {"fn": "silu"},
        "resnet_variant": {"variant": "c"},
        "zero_gamma": {},
    }
    assert M.model_options(section) == {
        "dropout": 0.3,
        "norm": "group",
        "norm_groups": 16,
        "activation": "silu",
        "variant": "c",
    }
    assert M.model_options({"group_norm": {}}) == {"norm": "group", "norm_groups": 32}
    assert M.model_options({"activation": None}) == {"activation": "gelu"}
    assert M.model_options({"resnet_variant": {}}) == {"variant": "d"}


# ------------------------------------------------------------------------------- zero-γ


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.last_bn = self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(4)
        self.blocks = nn.Sequential(_Block(4), _Block(4))
        self.head_norm = nn.GroupNorm(2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_norm(self.blocks(self.stem_bn(self.stem(x))))


def _randomise_norms(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def test_zero_gamma_zeroes_only_the_last_bn_of_each_block() -> None:
    torch.manual_seed(0)
    net = _Net()
    _randomise_norms(net)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    M.init_model({"zero_gamma": {}}, net)
    after = net.state_dict()
    zeroed = {
        "blocks.0.bn2.weight",
        "blocks.1.bn2.weight",
        "blocks.0.last_bn.weight",
        "blocks.1.last_bn.weight",
    }
    for k, v in after.items():
        if k in zeroed:
            assert torch.count_nonzero(v) == 0, k
        else:
            assert torch.equal(v, before[k]), k
    # each block is now the identity on non-negative inputs (its residual branch outputs β)
    assert net.blocks[0].bn2.weight.abs().sum() == 0


def test_zero_gamma_on_a_torchvision_resnet_with_last_bn() -> None:
    import torchvision  # a required dependency: a missing one must fail, not skip

    net = torchvision.models.resnet18(num_classes=3)
    for m in net.modules():
        if isinstance(m, torchvision.models.resnet.BasicBlock):
            m.last_bn = m.bn2
    M.init_model({"zero_gamma": {}}, net)
    assert all(b.bn2.weight.abs().sum() == 0 for b in net.modules() if hasattr(b, "last_bn"))
    assert net.bn1.weight.abs().sum() > 0
    assert all(
        b.bn1.weight.abs().sum() > 0
        for b in net.modules()
        if isinstance(b, torchvision.models.resnet.BasicBlock)
    )


def test_zero_gamma_without_residual_blocks_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"zero_gamma.*no residual block"):
        M.init_model({"zero_gamma": {}}, nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))


def test_zero_gamma_with_a_non_affine_last_bn_is_refused() -> None:
    block = _Block(2)
    block.bn2 = nn.BatchNorm2d(2, affine=False)
    block.last_bn = block.bn2
    with pytest.raises(ConfigError, match="no affine weight"):
        M.init_model({"zero_gamma": {}}, block)
