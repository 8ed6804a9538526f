"""``cnn1d``: a small 1-D convolutional net for signals ``[B, C, L]`` of any length.

Three conv-norm-activation blocks (width, 2w, 4w; ``kernel``-wide, same padding), a 2x max-pool
after the first two while the signal is at least 2 samples long, global average pooling over
time and a linear classifier ``fc`` (also ``classifier``), like ``cnn-small`` on images. The
registry passes a signal's length as ``image_size = (1, L)`` (what ``DatasetSplits.image_size``
says for signals).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tricksearch.errors import ConfigError
from tricksearch.models._layers import (
    ACTIVATIONS,
    COMMON_OPTIONS,
    OptionReader,
    PooledClassifier,
    make_activation,
    read_norm,
)

__all__ = ["CNN1D_OPTIONS", "Cnn1d", "build_cnn1d"]

CNN1D_OPTIONS: dict[str, str] = {
    "width": "channels of the first block; the blocks have width, 2*width, 4*width (default 32)",
    "kernel": "kernel size of every convolution, odd (default 5)",
    **COMMON_OPTIONS,
}


class Cnn1d(PooledClassifier):
    """Three Conv1d-norm-activation blocks, max-pool after the first two, global average pool.

    Built for signals of ``in_channels`` channels and ``length`` samples; the global pool makes
    the head independent of the length, so longer signals run through the same model.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        length: int,
        *,
        width: int,
        kernel: int,
        activation: str,
        norm: Any,
        dropout: float,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate((width, 2 * width, 4 * width)):
            layers += [
                nn.Conv1d(prev, ch, kernel, padding=kernel // 2, bias=False),
                norm(ch, f"features.block{i}", dims=1),
                make_activation(activation),
            ]
            if i < 2 and length >= 2:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            prev = ch
        self.features = nn.Sequential(*layers)
        self._make_head(prev, num_classes, dropout, dims=1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for signals ``[B, C, L]``."""
        x = torch.flatten(self.pool(self.features(x)), 1)
        return self.fc(self.dropout(x))


def build_cnn1d(
    in_channels: int, num_classes: int, image_size: tuple[int, int], reader: OptionReader
) -> Cnn1d:
    """Build ``cnn1d`` from checked options; ``image_size`` is ``(1, L)`` for signals."""
    if image_size[0] != 1:
        raise ConfigError(
            f"model 'cnn1d' takes signals [N, C, L] (image_size (1, L)), got image_size "
            f"{tuple(image_size)}: use cnn-small or resnet-cifar for images"
        )
    kernel = reader.int("kernel", 5)
    if kernel % 2 == 0:
        raise ConfigError(f"{reader.field('kernel')} must be odd (same padding), got {kernel}")
    norm = read_norm(reader, "batch")
    model = Cnn1d(
        in_channels,
        num_classes,
        image_size[1],
        width=reader.int("width", 32),
        kernel=kernel,
        activation=reader.choice("activation", "relu", tuple(ACTIVATIONS)),
        norm=norm,
        dropout=reader.fraction("dropout", 0.0),
    )
    norm.check()
    return model
