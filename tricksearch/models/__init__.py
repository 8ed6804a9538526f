"""Model registry: a small CNN, an MLP, a CIFAR-style ResNet with the B/C/D tweaks, a 1-D CNN
for signals (``cnn1d``), any torchvision classifier (``torchvision:NAME``) and user callables,
all through ``build_model``; ``model_kinds`` says which data kinds a model takes.
"""

from __future__ import annotations

from tricksearch.models._cnn import MLP, SmallCNN
from tricksearch.models._cnn1d import Cnn1d
from tricksearch.models._probe import probe_model
from tricksearch.models._registry import (
    PYTHON_PREFIX,
    build_model,
    check_model_kind,
    get_classifier,
    is_python_model,
    list_models,
    model_kinds,
    model_options,
    model_traits,
    models_for_kind,
    python_model_name,
    python_model_refusal,
)
from tricksearch.models._resnet import BasicBlock, Bottleneck, CifarResNet
from tricksearch.models._torchvision import DropoutLinear

__all__ = [
    "MLP",
    "PYTHON_PREFIX",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "Cnn1d",
    "DropoutLinear",
    "SmallCNN",
    "build_model",
    "check_model_kind",
    "get_classifier",
    "is_python_model",
    "list_models",
    "model_kinds",
    "model_options",
    "model_traits",
    "models_for_kind",
    "probe_model",
    "python_model_name",
    "python_model_refusal",
]
