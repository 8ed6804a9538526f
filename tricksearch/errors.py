"""The exceptions tricksearch raises for bad input.

Every error a user can cause derives from :class:`TricksearchError`; the CLI prints its message
(one line, no traceback) and exits with status 2. Bad values are also ``ValueError`` and wrong
types also ``TypeError``, so code that catches the builtins keeps working.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "ConfigTypeError",
    "DataError",
    "TricksearchError",
    "read_text_file",
]


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


def read_text_file(path: Path, what: str, expected: str) -> str:
    """The text of the file ``path`` (UTF-8), or a :class:`ConfigError` in one line naming
    ``what`` (``"recipe"``), the file and ``expected`` (``"a YAML or JSON recipe"``) when it
    cannot be read or is not text (a binary file given by mistake)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what}: {str(path)!r} is not a text file (byte {exc.object[exc.start]:#04x} at "
            f"position {exc.start} is not UTF-8); expected {expected}."
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{what}: cannot read {str(path)!r} ({exc.strerror or exc}); expected {expected}."
        ) from None
