"""The flat keys: the one naming scheme of every dimension a search samples.

The same key names a dimension everywhere: Ray config keys, Optuna parameter names, the columns
of ``trials.csv``, the entries of the importance report. Four kinds:

- ``"{family}.{trick}"``: the switch of a trick (``True``/``False``);
- ``"{family}.{group}"``: the chosen member of an exclusive group (for example
  ``"schedule.decay"``), or :data:`NONE` for no member;
- ``"{family}.{trick}.{param}"``: a parameter of a trick;
- ``"budget.lr"``, ``"budget.batch_size"``: the budget dimensions.

Build keys with :func:`switch_key`, :func:`group_key`, :func:`param_key` and :func:`budget_key`;
read one with :func:`parse_key`. No other module builds or splits a flat key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tricksearch.errors import ConfigError
from tricksearch.tricks._base import FAMILIES, registered_tricks

__all__ = [
    "BUDGET",
    "BUDGET_NAMES",
    "NONE",
    "FlatKey",
    "budget_key",
    "exclusive_groups",
    "group_key",
    "is_flat_key",
    "param_key",
    "parse_key",
    "switch_key",
]

#: The first component of a budget key.
BUDGET = "budget"
#: The budget fields a space samples or fixes.
BUDGET_NAMES: tuple[str, ...] = ("lr", "batch_size")
#: The value of an exclusive-group key that means "no member of the group".
NONE = "none"

KeyKind = Literal["switch", "group", "param", "budget"]


@dataclass(frozen=True)
class FlatKey:
    """A flat key, read: its ``kind``, its ``family`` (``"budget"`` for a budget key), its
    ``name`` (the trick, the group, or the budget field) and, for a parameter, ``param``.
    ``str(key)`` builds the key text back."""

    kind: KeyKind
    family: str
    name: str
    param: str | None = None

    def __str__(self) -> str:
        if self.kind == "param":
            return param_key(self.family, self.name, self.param or "")
        return f"{self.family}.{self.name}"


def switch_key(family: str, trick: str) -> str:
    """``"loss.label_smoothing"``: the switch of ``trick``."""
    return f"{family}.{trick}"


def group_key(family: str, group: str) -> str:
    """``"schedule.decay"``: the member choice of an exclusive group."""
    return f"{family}.{group}"


def param_key(family: str, trick: str, param: str) -> str:
    """``"loss.label_smoothing.epsilon"``: one parameter of ``trick``."""
    return f"{family}.{trick}.{param}"


def budget_key(name: str) -> str:
    """``"budget.lr"`` / ``"budget.batch_size"``."""
    return f"{BUDGET}.{name}"


def exclusive_groups() -> dict[tuple[str, str], list[str]]:
    """(family, group) -> the member tricks of that exclusive group, in registry order."""
    out: dict[tuple[str, str], list[str]] = {}
    for name, spec in registered_tricks().items():
        if spec.group is not None:
            out.setdefault((spec.family, spec.group), []).append(name)
    return out


def is_flat_key(key: object) -> bool:
    """True when ``key`` is written in the flat-key scheme (a family's or the budget's prefix),
    whether or not it names a known dimension: what a typo of a key looks like."""
    return isinstance(key, str) and key.startswith((*(f"{f}." for f in FAMILIES), f"{BUDGET}."))


def parse_key(key: str) -> FlatKey:
    """Read a flat key; a key that names no switch, group, parameter or budget field of the
    registry is refused with a :class:`~tricksearch.errors.ConfigError`."""
    family, _, rest = key.partition(".") if isinstance(key, str) else ("", "", "")
    name, _, param = rest.partition(".")
    parsed: FlatKey | None = None
    if family == BUDGET:
        parsed = FlatKey("budget", BUDGET, rest) if rest in BUDGET_NAMES else None
    elif family in FAMILIES and name:
        parsed = _trick_key(family, name, param)
    if parsed is None:
        raise ConfigError(
            f"key: got {key!r}, expected a flat key: family.trick, family.group, "
            f"family.trick.param, {budget_key('lr')} or {budget_key('batch_size')}."
        )
    return parsed


def _trick_key(family: str, name: str, param: str) -> FlatKey | None:
    """The switch, group or parameter key ``family.name[.param]``, or None when unknown."""
    spec = registered_tricks().get(name)
    if spec is not None and spec.family == family:
        if not param:
            return FlatKey("switch", family, name)
        if any(p.name == param for p in spec.params):
            return FlatKey("param", family, name, param)
        return None
    if not param and (family, name) in exclusive_groups():
        return FlatKey("group", family, name)
    return None
