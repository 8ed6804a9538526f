"""The search machinery: Ray Tune schedules, Optuna samples, ASHA stops early. The only package
that imports ray and optuna (lazily: importing it is cheap until a search runs).

The Python entry points are :func:`tricksearch.search` and :func:`tricksearch.resume`
(``tricksearch/search_api.py``); the CLI's ``search`` command is ``tuning/cli.py``. The search
itself is ``_runner.run_search``, a page of phases over one module per job (see its docstring).
"""

from __future__ import annotations

from tricksearch.tuning._config import METRICS, SAMPLERS, SearchConfig
from tricksearch.tuning._result import SearchResult

__all__ = ["METRICS", "SAMPLERS", "SearchConfig", "SearchResult"]
