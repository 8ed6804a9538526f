"""Durations as people read them in progress lines: ``1:05``, ``1:02:05``. No dependencies, so
the data readers, the report and the search's progress display all use this one."""

from __future__ import annotations

__all__ = ["fmt_duration"]


def fmt_duration(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` from one; negative durations read ``0:00``."""
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
