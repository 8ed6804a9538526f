"""Why trials failed, in a few lines: pure functions over plain values (no Ray, no Optuna).

    an exception --cause_line--> "ValueError: first line of its message"
    failed trials' (cause, error file) --group_failures--> [FailureGroup(cause, count, file)]
    TrialRecords --failure_groups / failure_lines--> the groups / "failed 3 × ValueError: …"

The cause is the exception's own type name and the first line of its message; the whole
traceback stays in Ray's ``error.txt`` of the trial, whose path is shown beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

__all__ = [
    "UNKNOWN_CAUSE",
    "Failure",
    "FailureGroup",
    "cause_line",
    "failure_groups",
    "failure_lines",
    "format_group",
    "group_failures",
]

#: The cause shown for a failed trial whose error was not recorded (an older study, or an error
#: Ray could not hand back).
UNKNOWN_CAUSE = "unknown cause (no error recorded)"


class Failure(NamedTuple):
    """One failed trial: its cause in one line and the file with the whole traceback."""

    cause: str
    error_file: str | None = None


class FailureGroup(NamedTuple):
    """Failed trials that share a cause: how many, and the traceback file of one of them."""

    cause: str
    count: int
    error_file: str | None


class _Record(Protocol):
    """What :func:`failure_groups` reads of a trial (``tuning._candidates.TrialRecord``)."""

    @property
    def outcome(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_file(self) -> str | None: ...


def cause_line(exc: BaseException) -> str:
    """``"ValueError: first line of the message"`` (the type name alone for an empty message)."""
    lines = str(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0].strip()}" if lines else name


def group_failures(failures: Iterable[Failure]) -> list[FailureGroup]:
    """The failures grouped by cause, most common first (ties: the cause seen first); each group
    keeps the first traceback file given for it."""
    counts: dict[str, int] = {}
    files: dict[str, str | None] = {}
    for cause, error_file in failures:
        cause = cause or UNKNOWN_CAUSE
        counts[cause] = counts.get(cause, 0) + 1
        if files.get(cause) is None:
            files[cause] = error_file or None
    order = {cause: i for i, cause in enumerate(counts)}
    ranked = sorted(counts, key=lambda c: (-counts[c], order[c]))
    return [FailureGroup(c, counts[c], files[c]) for c in ranked]


def failure_groups(records: Sequence[_Record]) -> list[FailureGroup]:
    """The failed trials of ``records`` (outcome FAIL; a trial the time budget cut is STOPPED,
    not failed) grouped by cause, most common first."""
    return group_failures(
        Failure(r.error or UNKNOWN_CAUSE, r.error_file) for r in records if r.outcome == "FAIL"
    )


def format_group(group: FailureGroup) -> str:
    """``"3 × ValueError: expected 4D input (see /…/error.txt)"``."""
    where = f" (see {group.error_file})" if group.error_file else ""
    return f"{group.count} × {group.cause}{where}"


def failure_lines(records: Sequence[_Record]) -> list[str]:
    """One line per cause of the failed trials, most common first:
    ``"failed 3 × ValueError: expected 4D input (see /…/error.txt)"``; empty when none failed."""
    return [f"failed {format_group(g)}" for g in failure_groups(records)]
