"""Pieces shared by the model builders: option checking, activations, norm layers.

Options arrive from the recipe and the trick library (``model_tweaks``). Every error names the
option's field (``options.<key>`` unless the caller maps the key to the recipe field the user
actually wrote, see ``option_fields`` in :func:`tricksearch.models.build_model`), the value
received and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError

__all__ = [
    "ACTIVATIONS",
    "COMMON_OPTIONS",
    "NORMS",
    "NormFactory",
    "OptionReader",
    "make_activation",
    "read_norm",
]

#: Activation name -> module class (no in-place ops, so they compose with any block).
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "celu": nn.CELU,
}
NORMS = ("batch", "group")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[name]()


class OptionReader:
    """Typed access to a model's ``options`` dict; unknown keys and bad values are errors."""

    def __init__(
        self,
        model: str,
        options: Mapping[str, Any] | None,
        allowed: Mapping[str, str],
        fields: Mapping[str, str] | None = None,
    ) -> None:
        if options is not None and not isinstance(options, Mapping):
            raise ConfigTypeError(
                f"options of model {model!r} must be a dict, got {type(options).__name__}"
            )
        self.model = model
        self.options = dict(options or {})
        self.fields = dict(fields or {})
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"model {model!r} has no option(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(allowed)) or 'none'}"
            )

    def field(self, key: str) -> str:
        """The name errors use for option ``key``."""
        return self.fields.get(key, f"options.{key}")

    def has(self, key: str) -> bool:
        """Whether the caller set ``key`` (to anything but None)."""
        return self.options.get(key) is not None

    def int(self, key: str, default: int, *, minimum: int = 1) -> int:
        """An int option ``>= minimum``."""
        value = self.options.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigTypeError(
                    f"{self.field(key)} must be an int, got {value!r} ({type(value).__name__})"
                )
        if value < minimum:
            raise ConfigError(f"{self.field(key)} must be >= {minimum}, got {value!r}")
        return value

    def fraction(self, key: str, default: float) -> float:
        """A float option in ``[0, 1)``."""
        value = self.options.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(
                f"{self.field(key)} must be a number, got {value!r} ({type(value).__name__})"
            )
        if not (math.isfinite(value) and 0.0 <= value < 1.0):
            raise ConfigError(f"{self.field(key)} must satisfy 0 <= value < 1, got {value!r}")
        return float(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        """A string option among ``choices`` (case-insensitive)."""
        value = self.options.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ConfigTypeError(
                f"{self.field(key)} must be a string, got {value!r} ({type(value).__name__}); "
                f"allowed: {', '.join(choices)}"
            )
        if value.lower() not in choices:
            raise ConfigError(
                f"{self.field(key)}={value!r} is not allowed; allowed: {', '.join(choices)}"
            )
        return value.lower()

    def bool(self, key: str, default: bool | None) -> bool | None:
        """A bool option (None: the builder decides)."""
        value = self.options.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigTypeError(
                f"{self.field(key)} must be true or false, got {value!r} ({type(value).__name__})"
            )
        return value


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class NormFactory:
    """Builds the norm layers of one model and checks GroupNorm's divisibility for all of them.

    Every layer's channel count is recorded; :meth:`check` (called once the model is built)
    raises on the first layer whose channels ``norm_groups`` does not divide, listing the group
    counts that divide every normalized layer of this model.
    """

    def __init__(self, kind: str, groups: int, reader: OptionReader) -> None:
        self.kind = kind
        self.groups = groups
        self.reader = reader
        self.layers: list[tuple[str, int]] = []

    def __call__(self, channels: int, where: str, *, dims: int = 2) -> nn.Module:
        """A norm layer for ``channels`` features at layer ``where`` (``dims``: 1 or 2)."""
        self.layers.append((where, channels))
        if self.kind == "none":
            return nn.Identity()
        if self.kind == "group":
            groups = self.groups if channels % self.groups == 0 else 1  # placeholder; check()
            return nn.GroupNorm(groups, channels)
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)

    def check(self) -> None:
        """Raise ``ConfigError`` if ``norm_groups`` does not divide some layer's channels."""
        if self.kind != "group":
            return
        for where, channels in self.layers:
            if channels % self.groups:
                common = math.gcd(*(c for _, c in self.layers))
                raise ConfigError(
                    f"{self.reader.field('norm_groups')}={self.groups} does not divide the "
                    f"{channels} channels of layer {where!r} of model {self.reader.model!r}; "
                    f"allowed: divisors of every normalized layer's channels "
                    f"{_divisors(common)}"
                )


def read_norm(reader: OptionReader, default: str, kinds: tuple[str, ...] = NORMS) -> NormFactory:
    """The ``norm`` / ``norm_groups`` options as a :class:`NormFactory` (groups default to 8)."""
    kind = reader.choice("norm", default, kinds)
    if reader.has("norm_groups") and kind != "group":
        raise ConfigError(
            f"{reader.field('norm_groups')}={reader.options['norm_groups']!r} is only used with "
            f"{reader.field('norm')}='group', got {reader.field('norm')}={kind!r}"
        )
    return NormFactory(kind, reader.int("norm_groups", 8), reader)


#: Options every built-in model understands, with what they do (``list_models``/errors show them).
COMMON_OPTIONS: dict[str, str] = {
    "activation": f"activation function: {', '.join(ACTIVATIONS)} (default relu)",
    "norm": "normalization layers: batch or group (default batch)",
    "norm_groups": "groups of GroupNorm when norm='group' (default 8; must divide every layer)",
    "dropout": "dropout probability before the classifier, in [0, 1) (default 0)",
}


class PooledClassifier(nn.Module):
    """Base of the built-in conv nets: a global-average-pool head (``pool``, ``dropout``, ``fc``),
    Kaiming-initialised convolutions, and ``classifier`` pointing at ``fc``."""

    def _make_head(self, in_ch: int, num_classes: int, dropout: float, dims: int = 2) -> None:
        """The head after ``in_ch`` feature channels; ``dims``: 2 for images, 1 for signals."""
        self.pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def classifier(self) -> nn.Linear:
        """The final ``nn.Linear`` (same module as ``fc``)."""
        return self.fc
