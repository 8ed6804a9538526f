"""A user's model factory is recorded by its qualified name (``python:MODULE.QUALNAME``), and a
recipe that names one is refused where nothing can rebuild it, saying how to train it."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from tricksearch.errors import ConfigError
from tricksearch.models import (
    build_model,
    check_model_kind,
    is_python_model,
    model_traits,
    python_model_name,
    python_model_refusal,
)

SIZES = {"in_channels": 1, "num_classes": 3, "image_size": (8, 8)}


def make_net(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


class Net(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_qualified_names() -> None:
    here = __name__
    assert python_model_name(make_net) == f"python:{here}.make_net"
    assert python_model_name(Net) == f"python:{here}.Net"

    def local(in_channels: int, num_classes: int) -> nn.Module:
        return make_net(in_channels, num_classes)

    assert python_model_name(local) == (f"python:{here}.test_qualified_names.<locals>.local")
    # no qualified name of its own: named by its class
    assert python_model_name(functools.partial(make_net)) == "python:functools.partial"
    assert is_python_model("python:x.f") and not is_python_model("cnn-small")
    assert not is_python_model(None)


def test_a_python_name_is_not_built_from_the_registry() -> None:
    with pytest.raises(ConfigError) as info:
        build_model("python:mymodels.make_net", **SIZES)
    text = str(info.value)
    assert "found with a Python model (mymodels.make_net)" in text
    assert "tricksearch.train(recipe, model=make_net)" in text
    assert "\n" not in text
    with pytest.raises(ConfigError, match="Python model"):
        model_traits("python:mymodels.make_net")
    assert "tricksearch.train('r.yaml', model=f)" in python_model_refusal("python:m.f", "'r.yaml'")


def test_check_model_kind_names_the_models_that_fit() -> None:
    check_model_kind("cnn-small", "image")
    check_model_kind(make_net, "signal")  # callables are trusted with any kind
    check_model_kind("cnn-small", None)
    with pytest.raises(ConfigError, match="works on image data, not signal data; models for "):
        check_model_kind("cnn-small", "signal")
