"""CIFAR-style ResNet (He et al. 2016) with the ResNet-B/C/D tweaks of He et al. 2019.

Three stages of ``n`` blocks at widths ``w, 2w, 4w`` (bottleneck blocks: inner widths ``w, 2w,
4w``, outputs four times that), strides 1, 2, 2, a 3x3 stem without pooling, global average
pooling and a linear classifier ``fc``. Depth is ``6n + 2`` for basic blocks (8, 14, 20, 32, 44,
56, 110) and ``9n + 2`` for bottleneck blocks (11, 20, 29, 47, 56, 110, 164), as in the paper.

``variant`` follows "Bag of Tricks for Image Classification with Convolutional Neural Networks"
(He et al., CVPR 2019, section 4.1). As in the paper (Table 5) and in GluonCV/timm's
``resnet*_v1b/c/d``, the variants are cumulative:

- ``a``: the original network. Bottleneck blocks downsample with the stride on their first
  1x1 conv; shortcuts that change shape are a 1x1 conv with stride 2 (He 2016's option B).
- ``b``: bottleneck blocks put the stride on the 3x3 conv instead, so the 1x1 conv no longer
  ignores three quarters of its input. Basic blocks already stride their first 3x3 conv:
  for them ``b`` is the same as ``a``.
- ``c``: ``b`` + the stem conv is replaced by three 3x3 convs (``w/2``, ``w/2``, ``w``
  channels; stride 1, the CIFAR stem has no stride). Applies to both block types.
- ``d``: ``c`` + a downsampling shortcut becomes ``AvgPool2d(2)`` then a 1x1 conv with stride
  1, so it averages all inputs rather than skipping three quarters. Both block types.

Every block exposes ``last_bn``, the last norm layer of its residual branch (zero-gamma sets
its weight to 0 so the block starts as the identity); ``last_bn`` is a property, not a second
registration, so ``state_dict`` keys are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tricksearch.errors import ConfigError
from tricksearch.models._layers import (
    ACTIVATIONS,
    COMMON_OPTIONS,
    NormFactory,
    OptionReader,
    PooledClassifier,
    make_activation,
    read_norm,
)

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet", "RESNET_OPTIONS", "build_resnet_cifar"]

VARIANTS = ("a", "b", "c", "d")
BLOCKS = ("basic", "bottleneck")

RESNET_OPTIONS: dict[str, str] = {
    "width": "channels of the first stage (default 16)",
    "depth": "6n+2 for basic blocks (8, 14, 20, 32, 44, 56, 110; default 20), "
    "9n+2 for bottleneck blocks (11, 20, 29, 47, ...; default 29)",
    "block": "basic or bottleneck (default basic)",
    "variant": "ResNet-a/b/c/d of He et al. 2019, cumulative (default a)",
    **COMMON_OPTIONS,
}


def _shortcut(
    in_ch: int, out_ch: int, stride: int, variant: str, norm: NormFactory, where: str
) -> nn.Module | None:
    """The projection shortcut when the block changes shape, else None (identity)."""
    if stride == 1 and in_ch == out_ch:
        return None
    layers: list[nn.Module] = []
    if variant == "d" and stride != 1:
        layers.append(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False))
        stride = 1
    layers += [
        nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
        norm(out_ch, f"{where}.downsample"),
    ]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """3x3 conv -> norm -> act -> 3x3 conv -> norm, plus the shortcut, then act."""

    expansion = 1

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        *,
        variant: str,
        norm: NormFactory,
        activation: str,
        where: str,
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(width, f"{where}.bn1")
        self.conv2 = nn.Conv2d(width, out_ch, 3, padding=1, bias=False)
        self.bn2 = norm(out_ch, f"{where}.bn2")
        self.act = make_activation(activation)
        self.downsample = _shortcut(in_ch, out_ch, stride, variant, norm, where)

    @property
    def last_bn(self) -> nn.Module:
        """The last norm layer of the residual branch (``bn2``)."""
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        """``act(branch(x) + shortcut(x))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels); the stride sits on the 1x1 (``a``) or the 3x3 (b/c/d)."""

    expansion = 4

    def __init__(
        self,
        in_ch: int,
        width: int,
        stride: int,
        *,
        variant: str,
        norm: NormFactory,
        activation: str,
        where: str,
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        s1, s2 = (stride, 1) if variant == "a" else (1, stride)
        self.conv1 = nn.Conv2d(in_ch, width, 1, stride=s1, bias=False)
        self.bn1 = norm(width, f"{where}.bn1")
        self.conv2 = nn.Conv2d(width, width, 3, stride=s2, padding=1, bias=False)
        self.bn2 = norm(width, f"{where}.bn2")
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = norm(out_ch, f"{where}.bn3")
        self.act = make_activation(activation)
        self.downsample = _shortcut(in_ch, out_ch, stride, variant, norm, where)

    @property
    def last_bn(self) -> nn.Module:
        """The last norm layer of the residual branch (``bn3``)."""
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        """``act(branch(x) + shortcut(x))``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(out + identity)


class CifarResNet(PooledClassifier):
    """stem -> layer1..layer3 -> global average pool -> dropout -> ``fc``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        width: int,
        blocks_per_stage: int,
        block: str,
        variant: str,
        norm: NormFactory,
        activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        block_cls = Bottleneck if block == "bottleneck" else BasicBlock
        if variant in ("c", "d"):
            mid = max(width // 2, 1)
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, mid, 3, padding=1, bias=False),
                norm(mid, "stem.1"),
                make_activation(activation),
                nn.Conv2d(mid, mid, 3, padding=1, bias=False),
                norm(mid, "stem.4"),
                make_activation(activation),
                nn.Conv2d(mid, width, 3, padding=1, bias=False),
                norm(width, "stem.7"),
                make_activation(activation),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                norm(width, "stem.1"),
                make_activation(activation),
            )
        in_ch = width
        stages = []
        for s, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2))):
            blocks = []
            for i in range(blocks_per_stage):
                blk = block_cls(
                    in_ch,
                    width * mult,
                    stride if i == 0 else 1,
                    variant=variant,
                    norm=norm,
                    activation=activation,
                    where=f"layer{s + 1}.{i}",
                )
                blocks.append(blk)
                in_ch = width * mult * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self._make_head(in_ch, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, num_classes]`` for images ``[B, C, H, W]``."""
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def _valid_depths(block: str, limit: int = 8) -> list[int]:
    step = 9 if block == "bottleneck" else 6
    return [step * n + 2 for n in range(1, limit + 1)]


def build_resnet_cifar(
    in_channels: int, num_classes: int, image_size: tuple[int, int], reader: OptionReader
) -> CifarResNet:
    """Build ``resnet-cifar`` from checked options (``image_size`` is not needed: global pool)."""
    del image_size
    block = reader.choice("block", "basic", BLOCKS)
    step = 9 if block == "bottleneck" else 6
    depth = reader.int("depth", 29 if block == "bottleneck" else 20)
    if depth < step + 2 or (depth - 2) % step:
        raise ConfigError(
            f"{reader.field('depth')}={depth} is not valid for {block} blocks; allowed: "
            f"{step}n+2, e.g. {', '.join(map(str, _valid_depths(block)))}, ..."
        )
    norm = read_norm(reader, "batch")
    options: dict[str, Any] = dict(
        width=reader.int("width", 16),
        blocks_per_stage=(depth - 2) // step,
        block=block,
        variant=reader.choice("variant", "a", VARIANTS),
        norm=norm,
        activation=reader.choice("activation", "relu", tuple(ACTIVATIONS)),
        dropout=reader.fraction("dropout", 0.0),
    )
    model = CifarResNet(in_channels, num_classes, **options)
    norm.check()
    return model
