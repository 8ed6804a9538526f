"""Model registry: a small CNN, an MLP, a CIFAR-style ResNet with the B/C/D tweaks, any
torchvision classifier (``torchvision:NAME``) and user callables, all through ``build_model``.
"""

from __future__ import annotations

from tricksearch.models._cnn import MLP, SmallCNN
from tricksearch.models._registry import (
    build_model,
    get_classifier,
    list_models,
    model_options,
    model_traits,
)
from tricksearch.models._resnet import BasicBlock, Bottleneck, CifarResNet
from tricksearch.models._torchvision import DropoutLinear

__all__ = [
    "MLP",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "DropoutLinear",
    "SmallCNN",
    "build_model",
    "get_classifier",
    "list_models",
    "model_options",
    "model_traits",
]
