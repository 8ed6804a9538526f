"""Declarations shared by every trick: parameters, their validation, their default search range.

A trick is declared once, with a :class:`TrickSpec`: its name, the recipe section (family) it lives
in, its parameters (:class:`Param`), and its contracts (produces soft targets, needs a teacher, …).
The recipe validates against these declarations, ``tricksearch tricks`` prints them, and the
search turns their ``search`` ranges into Optuna spaces. The maths of each trick lives in its
family module (``tricks/loss.py``, ``tricks/schedule.py``, …) as plain functions.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from tricksearch.errors import ConfigError, ConfigTypeError

__all__ = [
    "DATA_KINDS",
    "FAMILIES",
    "BoundedParam",
    "Param",
    "SearchSpec",
    "TrickSpec",
    "get_trick",
    "register",
    "registered_tricks",
    "tricks_in_family",
]

#: Recipe sections that hold tricks, in the order they are written and applied.
FAMILIES: tuple[str, ...] = (
    "schedule",
    "loss",
    "mixing",
    "augment",
    "optimizer",
    "model_tweaks",
    "procedure",
    "semi",
)

#: Kinds of input data: images (uint8, N x C x H x W), 1-D signals (float, N x C x L) and
#: feature vectors (float, N x F). Each trick declares the kinds it works on (``data_kinds``).
DATA_KINDS: tuple[str, ...] = ("image", "signal", "features")

ParamKind = Literal["float", "int", "bool", "choice", "str", "float_list"]


@dataclass(frozen=True)
class SearchSpec:
    """The default search range of one parameter.

    Either a numeric range (``low``..``high``, optionally ``log`` or with a ``step``) or a list of
    ``choices``. A user's space file may narrow, widen or fix it.
    """

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            if len(self.choices) == 0:
                raise ValueError("a search choice list must not be empty")
            return
        if self.low is None or self.high is None:
            raise ValueError("a search range needs `low` and `high`, or `choices`")
        if self.low > self.high:
            raise ValueError(
                f"`low <= high` must hold, but got (low={self.low}, high={self.high})."
            )
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, but got low={self.low}.")

    def as_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _fmt(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


@dataclass(frozen=True)
class Param:
    """One parameter of a trick.

    ``low``/``high``/``choices`` are what a recipe may hold (validation); ``search`` is the range
    the default search space explores, usually narrower.
    """

    name: str
    kind: ParamKind
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    search: SearchSpec | None = None
    nullable: bool = False

    def allowed(self) -> str:
        """Human-readable description of what the recipe may hold."""
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(_fmt(c) for c in (self.choices or ()))
        elif self.kind == "str":
            text = "a string"
        else:
            noun = {
                "int": "an integer",
                "float": "a number",
                "float_list": "a list of numbers",
            }[self.kind]
            if self.low is not None and self.high is not None:
                text = f"{noun} in [{_fmt(self.low)}, {_fmt(self.high)}]"
            elif self.low is not None:
                text = f"{noun} >= {_fmt(self.low)}"
            elif self.high is not None:
                text = f"{noun} <= {_fmt(self.high)}"
            else:
                text = noun
        return text + (" or null" if self.nullable else "")

    def validate(self, value: Any, where: str) -> Any:
        """Return ``value`` normalised to the parameter's type, or raise naming ``where``."""
        if value is None:
            if self.nullable:
                return None
            raise ConfigTypeError(f"{where}: got null, expected {self.allowed()}.")
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigTypeError(f"{where}: got {value!r}, expected {self.allowed()}.")
            return value
        if kind == "str":
            if not isinstance(value, str):
                raise ConfigTypeError(f"{where}: got {value!r}, expected {self.allowed()}.")
            return value
        if kind == "choice":
            choices = self.choices or ()
            if not any(
                value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices
            ):
                raise ConfigError(f"{where}: got {value!r}, expected {self.allowed()}.")
            return value
        if kind == "float_list":
            if not isinstance(value, (list, tuple)) or not value:
                raise ConfigTypeError(f"{where}: got {value!r}, expected {self.allowed()}.")
            return [self._number(v, f"{where}[{i}]", float) for i, v in enumerate(value)]
        return self._number(value, where, int if kind == "int" else float)

    def _number(self, value: Any, where: str, typ: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"{where}: got {value!r}, expected {self.allowed()}.")
        if typ is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ConfigTypeError(f"{where}: got {value!r}, expected {self.allowed()}.")
                value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where}: got {value!r}, expected {self.allowed()}.")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise ConfigError(f"{where}: got {value!r}, expected {self.allowed()}.")
        return value


@dataclass(frozen=True)
class BoundedParam(Param):
    """A :class:`Param` whose ``low`` and/or ``high`` bound may be exclusive.

    ``label_smoothing.epsilon`` must stay below 1 and Beta parameters above 0; :class:`Param`
    only knows closed bounds.
    """

    low_open: bool = False
    high_open: bool = False

    def allowed(self) -> str:
        if self.kind not in ("int", "float") or not (self.low_open or self.high_open):
            return super().allowed()
        noun = "an integer" if self.kind == "int" else "a number"
        lo, hi = self.low, self.high
        if lo is not None and hi is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            text = f"{noun} in {left}{lo}, {hi}{right}"
        elif lo is not None:
            text = f"{noun} {'>' if self.low_open else '>='} {lo}"
        else:
            text = f"{noun} {'<' if self.high_open else '<='} {hi}"
        return text + (" or null" if self.nullable else "")

    def _number(self, value: Any, where: str, typ: type) -> Any:
        value = super()._number(value, where, typ)
        if (self.low_open and self.low is not None and value <= self.low) or (
            self.high_open and self.high is not None and value >= self.high
        ):
            raise ConfigError(f"{where}: got {value!r}, expected {self.allowed()}.")
        return value


@dataclass(frozen=True)
class TrickSpec:
    """The declaration of one trick.

    Contracts (checked when a recipe is built):
    - ``group``: at most one trick of a group is on (e.g. one optimizer, one LR decay); when
      ``required_default`` names a member, that member is used when the recipe names none.
    - ``soft_targets``: the trick turns targets into probability vectors; the loss follows.
    - ``needs_teacher``: a teacher model (checkpoint or model name) must be available.
    - ``needs_adaptive_pool``: the model must accept several input sizes.
    - ``needs_residual``: the trick acts on residual blocks (zero-γ, ResNet variants).
    - ``model_option``: the model builder option the trick sets (``"variant"`` for the ResNet
      variants); a search leaves the trick out for a model that has no such option.
    - ``data_kinds``: the kinds of input the trick works on (``DATA_KINDS``: ``"image"`` for
      ``(N, C, H, W)`` uint8 images, ``"signal"`` for float ``(N, C, L)``, ``"features"`` for float
      ``(N, F)``); a search leaves it out for other data, with a note.
    - ``min_image_side``: the smallest image height/width the trick works on (crops, cutout).
    - ``needs_unlabeled``: the trick trains on an unlabelled pool (``DatasetSplits.x_unlabeled``);
      training without one is refused, a search leaves it out with a note.
    - ``lr_scale``: for a member of an exclusive group, the factor on the searched LR range when
      the search chooses it among members of another scale (Adam-like optimizers train at about
      1/50 of SGD's LR: the space's LR range is SGD's, ``spaces/_plan.py``).
    """

    name: str
    family: str
    summary: str
    params: tuple[Param, ...] = ()
    paper: str = ""
    group: str | None = None
    required_default: bool = False
    soft_targets: bool = False
    needs_teacher: bool = False
    needs_adaptive_pool: bool = False
    needs_residual: bool = False
    model_option: str | None = None
    data_kinds: frozenset[str] = frozenset(("image", "signal", "features"))
    min_image_side: int = 1
    needs_unlabeled: bool = False
    lr_scale: float = 1.0
    searchable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(
                f"trick {self.name!r}: family {self.family!r} is not one of {FAMILIES}"
            )
        if not self.data_kinds or not set(self.data_kinds) <= set(DATA_KINDS):
            raise ValueError(
                f"trick {self.name!r}: data_kinds {sorted(self.data_kinds)} must be a non-empty "
                f"subset of {DATA_KINDS}"
            )

    def works_on(self, kind: str, image_size: tuple[int, ...] | None = None) -> str | None:
        """None when the trick can run on data of ``kind`` (and ``image_size`` for images), else
        the reason it cannot, for a search's ``note:`` line."""
        if kind not in self.data_kinds:
            return f"works on {' or '.join(sorted(self.data_kinds))} data, not {kind}"
        if kind == "image" and image_size and min(image_size) < self.min_image_side:
            return (
                f"needs images of at least {self.min_image_side}x{self.min_image_side} pixels, "
                f"got {'x'.join(map(str, image_size))}"
            )
        return None

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ConfigError(
            f"trick {self.name!r} has no parameter {name!r}; its parameters are: "
            + (", ".join(p.name for p in self.params) or "(none)")
        )

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def validate(self, params: Any, where: str) -> dict[str, Any]:
        """Validate the parameters of this trick as written in a recipe; fill defaults."""
        if params is None or params is True:
            params = {}
        if not isinstance(params, dict):
            raise ConfigTypeError(
                f"{where}: got {params!r}, expected a mapping of parameters "
                f"({', '.join(p.name for p in self.params) or 'none'}) or {{}}."
            )
        known = {p.name for p in self.params}
        for key in params:
            if key not in known:
                raise ConfigError(
                    f"{where}.{key}: unknown parameter of trick {self.name!r}; allowed: "
                    + (", ".join(sorted(known)) or "(none)")
                )
        out: dict[str, Any] = {}
        for p in self.params:
            value = params.get(p.name, p.default)
            out[p.name] = p.validate(value, f"{where}.{p.name}")
        return out


_REGISTRY: dict[str, TrickSpec] = {}


def register(spec: TrickSpec) -> TrickSpec:
    """Add a trick to the registry (module import time). Names are unique across families."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise ValueError(f"trick {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    """Import every family module (each registers its tricks when imported) before the registry
    is read. Importing ``tricks._base`` alone imports no family, hence no torch."""
    for family in FAMILIES:
        importlib.import_module(f"tricksearch.tricks.{family}")


def registered_tricks() -> dict[str, TrickSpec]:
    """Every registered trick, by name, in family order."""
    _ensure_loaded()
    order = {f: i for i, f in enumerate(FAMILIES)}
    return dict(sorted(_REGISTRY.items(), key=lambda kv: (order[kv[1].family], kv[0])))


def tricks_in_family(family: str) -> dict[str, TrickSpec]:
    """The registered tricks of one recipe section, by name."""
    return {n: s for n, s in registered_tricks().items() if s.family == family}


def get_trick(name: str) -> TrickSpec:
    """The spec of a trick; an unknown name fails with the list of known ones."""
    tricks = registered_tricks()
    if name not in tricks:
        raise ConfigError(f"unknown trick {name!r}; known tricks: {', '.join(tricks)}")
    return tricks[name]
