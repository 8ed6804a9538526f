"""``torchvision:NAME``: any torchvision classification model, untrained, adapted to the data.

Built with ``weights=None`` and ``num_classes``. Adaptations:

- input channels: the first ``Conv2d`` is replaced by one with ``in_channels`` inputs;
- small images: ResNet-family models (``resnet*``, ``resnext*``, ``wide_resnet*``) get the CIFAR
  stem (3x3 conv, stride 1, no max-pool) when the image is smaller than 32 pixels on a side, or
  when ``small_stem=True``. Other families keep their stem; as long as the image is at most
  96x96, one forward pass at build time checks that the model runs at that size, and a
  ``ConfigError`` says so if not (e.g. ``alexnet`` or ``inception_v3`` on 8x8 digits);
- ``vit_*`` is built for the (square) image size, ``maxvit_t`` for the image size,
  ``googlenet``/``inception_v3`` without auxiliary heads (plain logits in training mode);
- options ``activation`` (replaces every ``nn.ReLU``; ReLU6/Hardswish/GELU of other families
  stay), ``norm='group'`` (replaces every ``BatchNorm2d``), ``dropout`` (applied to the input of
  the final linear layer).

Uniform handles, as on the built-in models: residual blocks of the ResNet family get
``last_bn`` (``bn2`` of a BasicBlock, ``bn3`` of a Bottleneck); the final ``nn.Linear`` is
reachable as ``fc`` and/or ``classifier`` where torchvision does not already use those names
(``mobilenet_v3``'s ``classifier`` stays its ``nn.Sequential``; use
:func:`tricksearch.models.get_classifier` to find the linear layer of any model). These handles
are plain attributes, not registered sub-modules: ``state_dict`` keys are torchvision's. They go
stale if the model's layers are replaced afterwards.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tricksearch.errors import ConfigError
from tricksearch.models._layers import (
    ACTIVATIONS,
    COMMON_OPTIONS,
    OptionReader,
    make_activation,
    read_norm,
)

__all__ = [
    "TORCHVISION_OPTIONS",
    "DropoutLinear",
    "build_torchvision",
    "torchvision_names",
    "torchvision_traits",
]

TORCHVISION_OPTIONS: dict[str, str] = {
    **COMMON_OPTIONS,
    "activation": f"replace every nn.ReLU by {', '.join(ACTIVATIONS)} (default: keep)",
    "norm": "batch (keep) or group (replace every BatchNorm2d by GroupNorm)",
    "small_stem": "ResNet family only: CIFAR stem (3x3, stride 1, no max-pool); "
    "default: when the image is smaller than 32 pixels",
}

_RESNET_PREFIXES = ("resnet", "resnext", "wide_resnet")
_DRY_RUN_MAX_PIXELS = 96 * 96


class DropoutLinear(nn.Linear):
    """An ``nn.Linear`` that applies dropout to its input (keeps ``isinstance(m, nn.Linear)``)."""

    def __init__(self, linear: nn.Linear, p: float) -> None:
        super().__init__(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        self.weight = linear.weight
        self.bias = linear.bias
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """``linear(dropout(x))``."""
        return super().forward(F.dropout(x, self.p, self.training))

    def extra_repr(self) -> str:
        """Linear's description plus the dropout probability."""
        return f"{super().extra_repr()}, dropout={self.p}"


@functools.lru_cache(maxsize=1)
def torchvision_names() -> tuple[str, ...]:
    """Names of torchvision's classification models (``torchvision.models.list_models``)."""
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


def _check_name(name: str) -> None:
    names = torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"unknown torchvision model {name!r}; {hint}torchvision has {len(names)} "
            f"classification models, e.g. {', '.join(names[:: max(len(names) // 8, 1)])}"
        )


def _is_resnet_family(name: str) -> bool:
    return name.startswith(_RESNET_PREFIXES)


def _builder_kwargs(name: str, image_size: tuple[int, int]) -> dict[str, Any]:
    if name.startswith("vit_") and image_size[0] == image_size[1]:
        return {"image_size": image_size[0]}
    if name == "maxvit_t":
        return {"input_size": image_size}
    if name in ("googlenet", "inception_v3"):
        return {"aux_logits": False, "init_weights": True}
    return {}


def _replace(root: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _final_linear(model: nn.Module, num_classes: int) -> tuple[str, nn.Linear] | None:
    found = None
    for qual, m in model.named_modules():
        if isinstance(m, nn.Linear) and m.out_features == num_classes:
            found = (qual, m)
    return found


def build_torchvision(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    reader: OptionReader,
) -> nn.Module:
    """Build ``torchvision:name`` with ``weights=None``, adapted as the module docstring says."""
    import torchvision.models as tvm

    _check_name(name)
    activation = None  # keep torchvision's
    if reader.has("activation"):
        activation = reader.choice("activation", "relu", tuple(ACTIVATIONS))
    norm = read_norm(reader, "batch")
    dropout = reader.fraction("dropout", 0.0)
    small_stem = reader.bool("small_stem", None)
    if small_stem is not None and not _is_resnet_family(name):
        raise ConfigError(
            f"{reader.field('small_stem')} applies to the ResNet family "
            f"({', '.join(p + '*' for p in _RESNET_PREFIXES)}), not to {name!r}"
        )
    label = f"torchvision:{name}"
    try:
        model = tvm.get_model(
            name, weights=None, num_classes=num_classes, **_builder_kwargs(name, image_size)
        )
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
        raise ConfigError(
            f"model {label!r} cannot be built for {in_channels}x{image_size[0]}x{image_size[1]} "
            f"images: {exc}"
        ) from exc

    if _is_resnet_family(name):
        if small_stem is None:
            small_stem = min(image_size) < 32
        if small_stem:
            model.conv1 = nn.Conv2d(in_channels, model.conv1.out_channels, 3, 1, 1, bias=False)
            nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
            model.maxpool = nn.Identity()
    first = next(((q, m) for q, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None and first[1].in_channels != in_channels:
        qual, conv = first
        if conv.groups != 1:
            raise ConfigError(f"model {label!r}: cannot adapt its grouped first conv {qual!r}")
        new = nn.Conv2d(
            in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            stride=conv.stride,  # type: ignore[arg-type]
            padding=conv.padding,  # type: ignore[arg-type]
            dilation=conv.dilation,  # type: ignore[arg-type]
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        _replace(model, qual, new)

    swaps: list[tuple[str, nn.Module]] = []
    for qual, m in model.named_modules():
        if activation is not None and type(m) is nn.ReLU:
            swaps.append((qual, make_activation(activation)))
        elif norm.kind == "group" and isinstance(m, nn.BatchNorm2d):
            swaps.append((qual, norm(m.num_features, qual)))
    norm.check()
    for qual, new in swaps:
        _replace(model, qual, new)

    final = _final_linear(model, num_classes)
    if dropout > 0:
        if final is None:
            raise ConfigError(
                f"{reader.field('dropout')}: model {label!r} has no final nn.Linear to put "
                "dropout before"
            )
        _replace(model, final[0], DropoutLinear(final[1], dropout))
        final = _final_linear(model, num_classes)

    if _is_resnet_family(name):
        for m in model.modules():
            if isinstance(m, tvm.resnet.Bottleneck):
                object.__setattr__(m, "last_bn", m.bn3)
            elif isinstance(m, tvm.resnet.BasicBlock):
                object.__setattr__(m, "last_bn", m.bn2)
    if final is not None:
        for attr in ("fc", "classifier"):
            if not hasattr(model, attr):
                object.__setattr__(model, attr, final[1])

    if image_size[0] * image_size[1] <= _DRY_RUN_MAX_PIXELS:
        _dry_run(model, label, in_channels, num_classes, image_size)
    return model


def _dry_run(
    model: nn.Module, label: str, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> None:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, in_channels, *image_size))
    except (RuntimeError, ValueError, IndexError, AssertionError) as exc:
        raise ConfigError(
            f"model {label!r} does not run on {in_channels}x{image_size[0]}x{image_size[1]} "
            f"images ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); pick "
            "another model (resnet-cifar, cnn-small, torchvision:resnet18) or a larger "
            "image_size"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"model {label!r} returns {shape}, expected logits (1, {num_classes})")


def torchvision_traits(name: str) -> dict[str, bool]:
    """``residual``: ResNet family (blocks get ``last_bn``). ``adaptive_pool``: accepts any input
    size, which every torchvision classifier does (global or adaptive pooling, sometimes as
    ``x.mean((2, 3))``) except the vision transformers built for one size (``vit_*``,
    ``maxvit_t``)."""
    _check_name(name)
    return {
        "residual": _is_resnet_family(name),
        "adaptive_pool": not name.startswith(("vit_", "maxvit")),
    }
