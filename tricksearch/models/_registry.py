"""The model registry: built-in names, ``torchvision:NAME``, and user callables.

``build_model`` is the one entry point; it checks the sizes, the data kind and the ``options``
(unknown keys are an error listing the allowed ones) before building anything. ``model_traits``
tells the trick library what a model offers (residual blocks with ``last_bn`` for zero-gamma, a
global pool so any input size works) without building it; ``model_kinds`` which data kinds
(image, signal, features) it takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.models._cnn import CNN_OPTIONS, MLP_OPTIONS, build_cnn_small, build_mlp
from tricksearch.models._cnn1d import CNN1D_OPTIONS, build_cnn1d
from tricksearch.models._layers import OptionReader
from tricksearch.models._resnet import RESNET_OPTIONS, build_resnet_cifar
from tricksearch.models._torchvision import (
    TORCHVISION_OPTIONS,
    build_torchvision,
    torchvision_traits,
)

__all__ = [
    "PYTHON_PREFIX",
    "build_model",
    "check_model_kind",
    "is_python_model",
    "get_classifier",
    "list_models",
    "model_kinds",
    "model_options",
    "model_traits",
    "models_for_kind",
    "python_model_name",
    "python_model_refusal",
]

Builder = Callable[[int, int, tuple[int, int], OptionReader], nn.Module]
_TV_PREFIX = "torchvision:"
#: How a recipe names a model built by a user's callable: ``python:MODULE.QUALNAME``. The name
#: is a record, not an address: nothing is imported from it; the callable is given again.
PYTHON_PREFIX = "python:"


def python_model_name(fn: Callable[..., Any]) -> str:
    """The name a recipe records for the model factory ``fn``: ``python:MODULE.QUALNAME``
    (``python:mymodels.make_net``, ``python:__main__.Net``; an object without a qualified name,
    such as a ``functools.partial``, is named by its class)."""
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    module = getattr(target, "__module__", None) or "?"
    return f"{PYTHON_PREFIX}{module}.{target.__qualname__}"


def is_python_model(name: object) -> bool:
    """Whether a recipe's model name records a user's factory (:func:`python_model_name`)."""
    return isinstance(name, str) and name.startswith(PYTHON_PREFIX)


def python_model_refusal(name: str, recipe: str = "recipe") -> str:
    """Why a model named ``python:…`` cannot be built from its name, and how to train it: the
    callable given again from Python (``recipe``: how the user refers to the recipe)."""
    factory = name[len(PYTHON_PREFIX) :]
    short = factory.rsplit(".", 1)[-1]
    return (
        f"model {name!r}: the recipe was found with a Python model ({factory}), which cannot be "
        f"rebuilt from its name; train it from Python with the same callable: "
        f"tricksearch.train({recipe}, model={short})"
    )


@dataclass(frozen=True)
class _Entry:
    description: str
    build: Builder
    options: Mapping[str, str]
    traits: Mapping[str, bool]
    kinds: tuple[str, ...] = ("image",)


_MODELS: dict[str, _Entry] = {
    "mlp": _Entry(
        "multi-layer perceptron: flatten -> hidden layers -> linear (fixed input size); "
        "images, signals or feature vectors",
        build_mlp,
        MLP_OPTIONS,
        {"residual": False, "adaptive_pool": False},
        ("image", "signal", "features"),
    ),
    "cnn-small": _Entry(
        "three conv-norm-act blocks (width, 2w, 4w) with max-pool, global average pool, linear; "
        "runs on 8x8 to 32x32 and larger",
        build_cnn_small,
        CNN_OPTIONS,
        {"residual": False, "adaptive_pool": True},
    ),
    "resnet-cifar": _Entry(
        "CIFAR-style ResNet (He et al. 2016), depth 6n+2 (basic) or 9n+2 (bottleneck), "
        "with the ResNet-B/C/D tweaks of He et al. 2019 (option variant)",
        build_resnet_cifar,
        RESNET_OPTIONS,
        {"residual": True, "adaptive_pool": True},
    ),
    "cnn1d": _Entry(
        "for 1-D signals [N, C, L]: three Conv1d-norm-act blocks (width, 2w, 4w) with max-pool, "
        "global average pool, linear; any length",
        build_cnn1d,
        CNN1D_OPTIONS,
        {"residual": False, "adaptive_pool": True},
        ("signal",),
    ),
}

#: Data kinds every model takes (signals pass their length as ``image_size = (1, L)``).
_KINDS = ("image", "signal", "features")


def list_models() -> dict[str, str]:
    """Every model name (and the ``torchvision:NAME`` form) with a one-line description."""
    out = {k: e.description for k, e in _MODELS.items()}
    out["torchvision:NAME"] = (
        "any torchvision classification model, untrained (weights=None), e.g. "
        "torchvision:resnet18, torchvision:mobilenet_v3_small; first conv adapted to the "
        "channels, CIFAR stem for ResNets on images under 32 pixels"
    )
    return out


def _parse(name: Any) -> tuple[str, str]:
    """``("builtin", key)`` or ``("torchvision", tv_name)``; unknown names raise ConfigError."""
    if not isinstance(name, str):
        raise ConfigTypeError(
            f"model must be a name (str) or a callable returning an nn.Module, got {name!r} "
            f"({type(name).__name__})"
        )
    if is_python_model(name):
        raise ConfigError(python_model_refusal(name))
    if name.lower().startswith(_TV_PREFIX):
        tv = name[len(_TV_PREFIX) :].strip().lower()
        if not tv:
            raise ConfigError(f"model {name!r}: missing NAME after 'torchvision:'")
        return "torchvision", tv
    key = name.strip().lower().replace("_", "-")
    if key not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return "builtin", key


def model_kinds(model: str) -> tuple[str, ...]:
    """The data kinds (``image``, ``signal``, ``features``) model ``model`` is built for.

    ``torchvision:NAME`` models take images only; ``mlp`` flattens any input.
    """
    kind, key = _parse(model)
    return ("image",) if kind == "torchvision" else _MODELS[key].kinds


def models_for_kind(kind: str) -> list[str]:
    """The built-in model names (and ``torchvision:NAME`` for images) that take ``kind`` data."""
    names = [k for k, e in _MODELS.items() if kind in e.kinds]
    return names + (["torchvision:NAME"] if kind == "image" else [])


def _check_kind(label: str, kinds: tuple[str, ...], kind: str | None) -> None:
    """Refuse a model built for other data kinds, naming the models that fit ``kind``."""
    if kind is None or kind in kinds:
        return
    if kind not in _KINDS:
        raise ConfigError(f"kind: got {kind!r}, expected one of {', '.join(_KINDS)}")
    raise ConfigError(
        f"model {label!r} works on {' or '.join(kinds)} data, not {kind} data; models for "
        f"{kind} data: {', '.join(models_for_kind(kind))}, or a callable returning an nn.Module"
    )


def check_model_kind(model: str | Callable[..., nn.Module], kind: str | None) -> None:
    """Refuse a registry model made for other data than ``kind`` (as :func:`build_model` does),
    without building it; callables and ``kind=None`` pass."""
    if isinstance(model, str):
        _check_kind(model, model_kinds(model), kind)


def model_options(model: str) -> dict[str, str]:
    """The options model ``model`` accepts, each with what it does and its default."""
    kind, key = _parse(model)
    return dict(TORCHVISION_OPTIONS if kind == "torchvision" else _MODELS[key].options)


def model_traits(model: str | nn.Module) -> dict[str, bool]:
    """``{"residual": ..., "adaptive_pool": ...}`` of a model name or a built module.

    ``residual``: the model has residual blocks exposing ``last_bn`` (zero-gamma applies).
    ``adaptive_pool``: it pools adaptively, so it accepts any input size. For a name nothing is
    trained or allocated (torchvision models are inspected on the meta device); for a module
    (e.g. one a user callable built) the module itself is inspected.
    """
    if isinstance(model, nn.Module):
        return {
            "residual": any(hasattr(m, "last_bn") for m in model.modules()),
            "adaptive_pool": any(isinstance(m, _ADAPTIVE_POOLS) for m in model.modules()),
        }
    kind, key = _parse(model)
    if kind == "torchvision":
        return dict(torchvision_traits(key))
    return dict(_MODELS[key].traits)


_ADAPTIVE_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)


def get_classifier(model: nn.Module) -> nn.Linear:
    """The final ``nn.Linear`` of ``model``: ``model.fc``, else ``model.classifier``, else the last
    ``nn.Linear`` among its modules."""
    for attr in ("fc", "classifier"):
        m = getattr(model, attr, None)
        if isinstance(m, nn.Linear):
            return m
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    if last is None:
        raise ConfigError(
            f"model {type(model).__name__} has no nn.Linear classifier (tricks that set the "
            "classifier's bias need one)"
        )
    return last


def _positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{field} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ConfigError(f"{field} must be >= 1, got {value!r}")
    return value


def _image_size(value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigTypeError(f"image_size must be (height, width), got {value!r}")
    return _positive_int("image_size[0]", value[0]), _positive_int("image_size[1]", value[1])


def _build_callable(
    fn: Callable[..., Any],
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    options: Mapping[str, Any] | None,
) -> nn.Module:
    label = getattr(fn, "__qualname__", None) or type(fn).__name__
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature (some builtins): pass everything
        params = None
    by_keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)

    def accepts(arg: str) -> bool:
        if params is None:
            return True
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return True
        return arg in params and params[arg].kind in by_keyword

    sizes = {"in_channels": in_channels, "num_classes": num_classes, "image_size": image_size}
    kwargs = {k: v for k, v in sizes.items() if accepts(k)}
    if options is not None and not isinstance(options, Mapping):
        raise ConfigTypeError(f"options must be a dict, got {type(options).__name__}")
    for key, value in (options or {}).items():
        if key in sizes or not accepts(key):
            allowed = sorted(k for k in (params or {}) if accepts(k) and k not in sizes)
            raise ConfigError(
                f"model {label!r} does not accept option {key!r}; allowed: "
                f"{', '.join(allowed) or 'none'}"
            )
        kwargs[key] = value
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigTypeError(
            f"model callable {label!r} must return a torch.nn.Module, got {type(model).__name__}"
        )
    return model


def build_model(
    model: str | Callable[..., nn.Module],
    /,
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] | int,
    options: Mapping[str, Any] | None = None,
    option_fields: Mapping[str, str] | None = None,
    kind: str | None = None,
) -> nn.Module:
    """Build an untrained model for ``in_channels`` x ``image_size`` inputs and ``num_classes``.

    Signals ``[N, C, L]`` come as ``in_channels=C, image_size=(1, L)`` and feature vectors
    ``[N, F]`` as ``in_channels=F, image_size=(1, 1)`` (``DatasetSplits.channels`` and
    ``image_size``). ``kind`` (``"image"``, ``"signal"``, ``"features"``: ``DatasetSplits.kind``)
    refuses a built-in model made for other data, e.g. ``cnn-small`` on signals, with a
    ``ConfigError`` naming the models that fit (:func:`model_kinds`); ``None`` skips that check.
    Callables are trusted with any kind.

    ``model`` is a name from :func:`list_models`, ``torchvision:NAME``, or a callable (a
    function or an ``nn.Module`` class) that is called with whichever of ``in_channels``,
    ``num_classes``, ``image_size`` its signature accepts, plus ``options`` as keyword
    arguments; it must return an ``nn.Module``.

    ``options`` are checked against :func:`model_options`: unknown keys and bad values raise
    ``ConfigError`` naming ``options.<key>``, or the name ``option_fields[key]`` gives (e.g.
    ``{"norm_groups": "model_tweaks.group_norm.groups"}``, so that the message names the
    recipe field the user wrote).

    Built-in models and torchvision models expose ``fc`` (the final ``nn.Linear``; also
    ``classifier`` where the name is free) and, when residual, ``last_bn`` on every block.
    """
    in_channels = _positive_int("in_channels", in_channels)
    num_classes = _positive_int("num_classes", num_classes)
    size = _image_size(image_size)
    if callable(model) and not isinstance(model, str):
        return _build_callable(model, in_channels, num_classes, size, options)
    source, key = _parse(model)
    if source == "torchvision":
        _check_kind(f"torchvision:{key}", ("image",), kind)
        reader = OptionReader(f"torchvision:{key}", options, TORCHVISION_OPTIONS, option_fields)
        return build_torchvision(key, in_channels, num_classes, size, reader)
    entry = _MODELS[key]
    _check_kind(key, entry.kinds, kind)
    reader = OptionReader(key, options, entry.options, option_fields)
    return entry.build(in_channels, num_classes, size, reader)
