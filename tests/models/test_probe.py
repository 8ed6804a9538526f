"""Probing a model: which builder options it takes, and which GroupNorm group counts divide every
layer whatever the other options (built, not trained; probes are plain dicts)."""

from __future__ import annotations

import pytest
from torch import nn

from tricksearch.models import build_model, probe_model

SIZES = {"in_channels": 1, "num_classes": 10, "image_size": (8, 8)}
VARIANTS = [{"variant": "d"}, {"variant": "b"}, {"variant": "c"}]
GROUP_NORM = [{"norm": "group", "norm_groups": 32}]  # 32 divides no ResNet-C stem: probed with 1


def _probe(model, probes, base_options=None) -> dict:
    return probe_model(model, **SIZES, base_options=base_options or {}, probes=probes)


def test_group_counts_divide_every_variant_of_resnet_cifar() -> None:
    probes = {"dropout": [{"dropout": 0.1}], "norm": GROUP_NORM, "variant": VARIANTS}
    got = _probe("resnet-cifar", probes)
    assert got == {"model_options": ("dropout", "norm", "variant"), "norm_groups": (1, 2, 4, 8)}
    for variant in ("a", "b", "c", "d"):
        options = {"norm": "group", "norm_groups": 8, "variant": variant}
        build_model("resnet-cifar", **SIZES, options=options)
    # without the variants to try, only the widths of variant A count (16 divides them)
    assert _probe("resnet-cifar", {"norm": GROUP_NORM})["norm_groups"] == (1, 2, 4, 8, 16)


def test_an_option_the_model_lacks_is_not_taken() -> None:
    got = _probe("cnn-small", {"variant": VARIANTS, "dropout": [{"dropout": 0.1}], "bogus": [{}]})
    assert got == {"model_options": ("dropout", "bogus"), "norm_groups": None}
    assert _probe("cnn-small", {"dropout": []})["model_options"] == ()  # nothing to try


def test_a_callable_without_options_takes_none() -> None:
    def plain(in_channels: int, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64 * in_channels, num_classes))

    got = _probe(plain, {"norm": GROUP_NORM, "variant": VARIANTS})
    assert got == {"model_options": (), "norm_groups": None}


def test_a_callable_with_group_norm_is_probed_too() -> None:
    def net(in_channels: int, num_classes: int, norm: str = "batch", norm_groups: int = 1):
        layer = nn.GroupNorm(norm_groups, 12) if norm == "group" else nn.BatchNorm2d(12)
        return nn.Sequential(nn.Conv2d(in_channels, 12, 3), layer, nn.Flatten(), nn.LazyLinear(2))

    got = _probe(net, {"norm": GROUP_NORM})
    assert got == {"model_options": ("norm",), "norm_groups": (1, 2, 3, 4, 6, 12)}


def test_base_options_go_into_every_build() -> None:
    with pytest.raises(Exception, match="width"):
        build_model("cnn-small", **SIZES, options={"width": 0})
    # a base the model refuses: nothing builds, so nothing is taken
    got = _probe("cnn-small", {"dropout": [{"dropout": 0.1}]}, base_options={"width": 0})
    assert got["model_options"] == ()
