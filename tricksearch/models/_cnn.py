"""Two small baselines: an MLP and a three-block CNN that run on 8x8 digits as well as 32x32.

Both end in an ``nn.Linear`` called ``fc`` (also reachable as ``classifier``), which the
class-prior-bias trick initializes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tricksearch.models._layers import (
    ACTIVATIONS,
    COMMON_OPTIONS,
    OptionReader,
    PooledClassifier,
    make_activation,
    read_norm,
)

__all__ = ["MLP", "SmallCNN", "build_cnn_small", "build_mlp", "CNN_OPTIONS", "MLP_OPTIONS"]

MLP_OPTIONS: dict[str, str] = {
    "hidden": "units per hidden layer (default 256)",
    "depth": "number of hidden layers (default 1)",
    **COMMON_OPTIONS,
    "norm": "normalization after each hidden layer: none, batch or group (default none)",
}

CNN_OPTIONS: dict[str, str] = {
    "width": "channels of the first block; the blocks have width, 2*width, 4*width (default 32)",
    **COMMON_OPTIONS,
}


class MLP(nn.Module):
    """Flatten -> ``depth`` x (Linear -> norm -> activation) -> dropout -> Linear."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        hidden: int,
        depth: int,
        activation: str,
        norm: Any,
        dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for i in range(depth):
            layers += [
                nn.Linear(width, hidden),
                norm(hidden, f"hidden{i}", dims=1),
                make_activation(activation),
            ]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` (same module as ``fc``)."""
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for any input ``[B, ...]`` (images ``[B, C, H, W]``,
        signals ``[B, C, L]``, feature vectors ``[B, F]``), flattened."""
        return self.fc(self.dropout(self.features(x)))


def build_mlp(
    in_channels: int, num_classes: int, image_size: tuple[int, int], reader: OptionReader
) -> MLP:
    """Build ``mlp`` from checked options: ``in_channels * H * W`` inputs (``C * L`` for signals
    passed as ``image_size=(1, L)``, ``F`` for feature vectors)."""
    norm = read_norm(reader, "none", ("none", "batch", "group"))
    model = MLP(
        in_channels * image_size[0] * image_size[1],
        num_classes,
        hidden=reader.int("hidden", 256),
        depth=reader.int("depth", 1),
        activation=reader.choice("activation", "relu", tuple(ACTIVATIONS)),
        norm=norm,
        dropout=reader.fraction("dropout", 0.0),
    )
    norm.check()
    return model


class SmallCNN(PooledClassifier):
    """Three conv-norm-activation blocks (width, 2w, 4w), 2x2 max-pool after the first two.

    A pool is skipped when the feature map is already smaller than 2 pixels, so 8x8 inputs
    work; global average pooling makes the head independent of the input size.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        *,
        width: int,
        activation: str,
        norm: Any,
        dropout: float,
    ) -> None:
        super().__init__()
        h, w = image_size
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate((width, 2 * width, 4 * width)):
            layers += [
                nn.Conv2d(prev, ch, 3, padding=1, bias=False),
                norm(ch, f"features.block{i}"),
                make_activation(activation),
            ]
            if i < 2 and h >= 2 and w >= 2:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            prev = ch
        self.features = nn.Sequential(*layers)
        self._make_head(prev, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, C, H, W]``."""
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(self.dropout(x))


def build_cnn_small(
    in_channels: int, num_classes: int, image_size: tuple[int, int], reader: OptionReader
) -> SmallCNN:
    """Build ``cnn-small`` from checked options."""
    norm = read_norm(reader, "batch")
    model = SmallCNN(
        in_channels,
        num_classes,
        image_size,
        width=reader.int("width", 32),
        activation=reader.choice("activation", "relu", tuple(ACTIVATIONS)),
        norm=norm,
        dropout=reader.fraction("dropout", 0.0),
    )
    norm.check()
    return model
