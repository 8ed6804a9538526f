"""Validation and dispatch of one recipe section, shared by the builders of the family modules.

A section is ``{trick_name: {param: value}}`` with only the tricks that are on (``false`` reads as
off, as in a recipe file). The builders accept a section already validated by the recipe or a
partial one written by hand: parameters left out get their defaults, exclusive groups are checked,
and the group member marked ``required_default`` is added when the section names none of its group.

Each family module keeps a dispatch table ``BUILDERS``: trick name -> the function that puts that
trick into effect. :func:`dispatch` pairs the tricks that are on with their entries; a trick that
is on but has no entry is an error, never skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks._base import TrickSpec, get_trick, tricks_in_family

__all__ = [
    "check_positive_int",
    "check_positive_number",
    "dispatch",
    "resolve_section",
    "validate_tricks",
]

B = TypeVar("B", bound=Callable[..., object])


def resolve_section(
    section: object, family: str, *, fill_defaults: bool = True
) -> dict[str, dict[str, Any]]:
    """Return ``section`` with every trick's parameters validated and defaults filled.

    Raises :class:`ConfigError` for a trick of another family, an unknown trick, or two tricks of
    one exclusive group; the parameter errors of :meth:`TrickSpec.validate` name the field.
    """
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigTypeError(
            f"{family}: got {section!r}, expected a mapping of trick names to their parameters."
        )
    on = {name: params for name, params in section.items() if params is not False}  # false: off
    specs = {name: _spec_of(name, family) for name in on}
    _check_groups(specs, family)
    out = {name: spec.validate(on[name], f"{family}.{name}") for name, spec in specs.items()}
    for spec in _missing_defaults(specs, family) if fill_defaults else ():
        out[spec.name] = spec.validate({}, f"{family}.{spec.name}")
    return out


def validate_tricks(
    section: object, family: str, listed: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """Validate a section of a family without exclusive groups, as written (no defaults added).

    Names are checked against the registry; an unknown one raises :class:`ConfigError` listing
    ``listed`` (the family's tricks, in the order its builders use). ``false`` is not read as off.
    """
    if not isinstance(section, dict):
        raise ConfigTypeError(f"{family}: got {section!r}, expected a mapping of trick names.")
    specs = tricks_in_family(family)
    for name in section:
        if name not in specs:
            raise ConfigError(
                f"{family}.{name}: unknown {family} trick; allowed: {', '.join(listed)}"
            )
    return {n: specs[n].validate(p, where=f"{family}.{n}") for n, p in section.items()}


def _spec_of(name: object, family: str) -> TrickSpec:
    known = tricks_in_family(family)
    if name in known:
        return known[name]
    if isinstance(name, str):
        try:
            other = get_trick(name).family
        except ConfigError:
            other = None
        if other is not None:
            raise ConfigError(
                f"{family}.{name}: trick {name!r} belongs in section {other!r}, not {family!r}."
            )
    raise ConfigError(
        f"{family}.{name}: unknown trick {name!r}; the {family} tricks are: {', '.join(known)}"
    )


def _check_groups(specs: dict[str, TrickSpec], family: str) -> None:
    seen: dict[str, str] = {}
    for name, spec in specs.items():
        if spec.group is None:
            continue
        if spec.group in seen:
            raise ConfigError(
                f"{family}: tricks {seen[spec.group]!r} and {name!r} clash: they are "
                f"alternatives of the exclusive group {spec.group!r} and at most one may be on."
            )
        seen[spec.group] = name


def _missing_defaults(specs: dict[str, TrickSpec], family: str) -> list[TrickSpec]:
    named = {spec.group for spec in specs.values() if spec.group is not None}
    return [
        spec
        for spec in tricks_in_family(family).values()
        if spec.required_default and spec.group not in named and spec.name not in specs
    ]


def dispatch(
    tricks: Mapping[str, dict[str, Any]], builders: Mapping[str, B], family: str
) -> list[tuple[B, dict[str, Any]]]:
    """``(builder, params)`` of every trick that is on, in the order of ``builders``.

    ``builders`` is a family's dispatch table (trick name -> builder). A trick of ``tricks`` with no
    entry raises :class:`ConfigError` naming it and the tricks that have one.
    """
    for name in tricks:
        if name not in builders:
            raise ConfigError(
                f"{family}.{name}: no builder for trick {name!r}; the {family} builders are: "
                + ", ".join(builders)
            )
    return [(build, tricks[name]) for name, build in builders.items() if name in tricks]


def check_positive_int(value: object, name: str) -> None:
    """Refuse anything but an integer >= 1 (``bool`` included), naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name}: got {value!r}, expected an integer >= 1.")
    if value < 1:
        raise ConfigError(f"{name}: got {value!r}, expected an integer >= 1.")


def check_positive_number(value: object, name: str) -> None:
    """Refuse anything but a finite number > 0, naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigTypeError(f"{name}: got {value!r}, expected a number > 0.")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name}: got {value!r}, expected a number > 0.")
