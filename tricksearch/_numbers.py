"""Reading numbers back from results, JSON and Ray's result dicts (no dependencies)."""

from __future__ import annotations

import math

__all__ = ["finite_number"]


def finite_number(value: object) -> bool:
    """True for an int or float (not a bool) that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
