"""One trick of a space: its switch and, per parameter, a fixed value or a range."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tricksearch.compat import teacher_missing
from tricksearch.spaces._errors import refuse, refuse_type, validate
from tricksearch.spaces._ranges import resolve_param, value_to_file
from tricksearch.tricks._base import Param, TrickSpec, registered_tricks

__all__ = ["SWITCH_MODES", "TrickEntry", "make_entry"]

#: The switch modes of a trick in a space.
SWITCH_MODES: tuple[str, ...] = ("search", "on", "off")


@dataclass(frozen=True)
class TrickEntry:
    """One trick of a space: its switch and, per parameter, a fixed value or a SearchSpec.

    Build it with :func:`make_entry`, which validates; ``params`` names every parameter of the
    trick.
    """

    name: str
    family: str
    group: str | None
    switch: str = "search"
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The space-file form: ``{switch: ..., param: value-or-range}``."""
        out: dict[str, Any] = {"switch": self.switch}
        for name, value in self.params.items():
            out[name] = value_to_file(value)
        return out


def make_entry(
    name: str,
    raw: Mapping[str, Any] | bool | str | None = None,
    where: str | None = None,
    *,
    base: TrickEntry | None = None,
) -> TrickEntry:
    """Validate the space-file form of one trick into a :class:`TrickEntry`.

    ``raw`` is ``None``/``{}`` (the trick's declared default ranges), a switch word (``on``,
    ``off``, ``search``, or YAML's booleans), or a mapping ``{switch: ..., param: value-or-range}``.
    Parameters not named keep their value in ``base`` (an entry this one overrides), else the
    trick's declared ``search`` range, else its default as a fixed value.
    """
    where = where or f"tricks.{name}"
    spec = _spec(name, where)
    raw = _check_form(spec, raw, where)
    switch = base.switch if base is not None else "search"
    if "switch" in raw:
        switch = _check_switch(raw["switch"], f"{where}.switch")
    params = {p.name: _param_entry(p, raw, base, where) for p in spec.params}
    if switch != "off" and teacher_missing(spec, params.get("teacher")):
        refuse(
            f"{where}.teacher",
            f"got null; trick {name!r} needs a teacher: a checkpoint path "
            "(*.pt) or a model name (e.g. resnet-cifar), e.g. "
            f"`tricks: {{{name}: {{teacher: resnet-cifar}}}}`, or switch it off.",
        )
    return TrickEntry(name=name, family=spec.family, group=spec.group, switch=switch, params=params)


def _spec(name: str, where: str) -> TrickSpec:
    tricks = registered_tricks()
    spec = tricks.get(name) if isinstance(name, str) else None
    if spec is None:
        refuse(where, f"unknown trick {name!r}; known tricks: {', '.join(tricks)}")
    return spec


def _check_form(spec: TrickSpec, raw: Any, where: str) -> Mapping[str, Any]:
    """``raw`` as a mapping of ``switch`` and the trick's parameters (no other key)."""
    if raw is None:
        raw = {}
    if isinstance(raw, (bool, str)):
        raw = {"switch": raw}
    if not isinstance(raw, Mapping):
        refuse_type(
            where,
            f"got {raw!r}, expected a mapping of `switch` and parameters "
            f"({', '.join(p.name for p in spec.params) or 'none'}), or on/off/search.",
        )
    allowed = ["switch", *(p.name for p in spec.params)]
    for key in raw:
        if key not in allowed:
            refuse(
                f"{where}.{key}",
                f"unknown parameter of trick {spec.name!r}; allowed: " + ", ".join(allowed),
            )
    return raw


def _check_switch(raw: Any, where: str) -> str:
    # YAML 1.1 reads the bare words on/off as booleans.
    if raw is True:
        return "on"
    if raw is False:
        return "off"
    if isinstance(raw, str) and raw in SWITCH_MODES:
        return raw
    refuse(where, f"got {raw!r}, expected one of on, off, search.")


def _param_entry(p: Param, raw: Mapping[str, Any], base: TrickEntry | None, where: str) -> Any:
    """The entry of parameter ``p``: as written, else as in ``base``, else the declared range,
    else the declared default."""
    if p.name in raw:
        return resolve_param(p, raw[p.name], f"{where}.{p.name}")
    if base is not None and p.name in base.params:
        return base.params[p.name]
    if p.search is not None:
        return resolve_param(p, p.search, f"{where}.{p.name} (declared range)")
    return validate(p, p.default, f"{where}.{p.name} (declared default)")
