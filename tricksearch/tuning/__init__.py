"""The search machinery: Ray Tune schedules, Optuna samples, ASHA stops early. The only package
that imports ray and optuna (lazily: importing it is cheap until a search runs).

The Python entry points are :func:`tricksearch.search` and :func:`tricksearch.resume`
(``tricksearch/search_api.py``); the CLI's ``search`` command is ``tuning/cli.py``.
"""

from __future__ import annotations

from typing import Any

from tricksearch.tuning._config import METRICS, SAMPLERS, SearchConfig

__all__ = ["METRICS", "SAMPLERS", "SearchConfig", "SearchResult"]


def __getattr__(name: str) -> Any:
    if name == "SearchResult":
        from tricksearch.tuning._runner import SearchResult

        return SearchResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
