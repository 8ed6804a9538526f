"""The exceptions tricksearch raises for bad input.

Every error a user can cause derives from :class:`TricksearchError`; the CLI prints its message
(one line, no traceback) and exits with status 2. Bad values are also ``ValueError`` and wrong
types also ``TypeError``, so code that catches the builtins keeps working.
"""

from __future__ import annotations

__all__ = ["ConfigError", "ConfigTypeError", "DataError", "TricksearchError"]


class TricksearchError(Exception):
    """Base class of every error caused by the user's input (recipe, space, dataset, CLI)."""

    #: Exit status of the CLI when this error ends a command.
    exit_code: int = 2


class ConfigError(TricksearchError, ValueError):
    """A value is out of range, unknown, or clashes with another value."""


class ConfigTypeError(TricksearchError, TypeError):
    """A value has the wrong type."""


class DataError(TricksearchError, ValueError):
    """A dataset is missing, unreadable or malformed."""
