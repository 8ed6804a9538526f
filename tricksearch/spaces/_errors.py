"""Refusals that carry the field they are about, so that a space file can name its line.

Every validator of a space raises :class:`SpaceError` (a bad value) or :class:`SpaceTypeError`
(a wrong type) with the dotted path of the field (``tricks.mixup.prob.high``); the message starts
with that path. ``spaces/_file.py`` reads ``field`` to prefix the message with the file and line.
They are :class:`~tricksearch.errors.ConfigError` and
:class:`~tricksearch.errors.ConfigTypeError`, so callers catch them as such.
"""

from __future__ import annotations

from typing import Any, NoReturn

from tricksearch.errors import ConfigError, ConfigTypeError, TricksearchError
from tricksearch.tricks._base import Param

__all__ = ["SpaceError", "SpaceTypeError", "refuse", "refuse_type", "validate"]


class _FieldError(TricksearchError):
    """A refusal about the field ``field`` of a space (``message`` starts with it)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.field))


class SpaceError(_FieldError, ConfigError):
    """A bad value in one field of a space."""


class SpaceTypeError(_FieldError, ConfigTypeError):
    """A value of the wrong type in one field of a space."""


def refuse(field: str, problem: str) -> NoReturn:
    """Raise ``"{field}: {problem}"`` as a :class:`SpaceError`."""
    raise SpaceError(f"{field}: {problem}", field)


def refuse_type(field: str, problem: str) -> NoReturn:
    """Raise ``"{field}: {problem}"`` as a :class:`SpaceTypeError`."""
    raise SpaceTypeError(f"{field}: {problem}", field)


def validate(param: Param, value: Any, where: str) -> Any:
    """``param.validate(value, where)``, its refusal carrying the field ``where``."""
    try:
        return param.validate(value, where)
    except ConfigTypeError as exc:
        raise SpaceTypeError(str(exc), where) from None
    except ConfigError as exc:
        raise SpaceError(str(exc), where) from None
