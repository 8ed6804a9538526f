"""tricksearch: find the combination of training tricks that works for your dataset.

The public API (imported lazily, so ``import tricksearch`` stays fast):

- :class:`Recipe`, :func:`load_recipe` — the description of one training run;
- :func:`train` — train once from a recipe; :func:`fit` — the engine underneath;
- :func:`build` — the pieces of a training loop (optimizer, LR schedule, loss, transforms), as
  :class:`Components`;
- :func:`search` / :func:`resume` — the Ray Tune + Optuna + ASHA search (needs ray and optuna);
  :class:`SearchConfig` its settings, :class:`SearchResult` what it returns;
- :func:`load_dataset`, :func:`build_model` — the data and model registries;
- :class:`TricksearchError` and its kinds :class:`ConfigError`, :class:`DataError`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Recipe": "tricksearch.recipe",
    "load_recipe": "tricksearch.recipe",
    "train": "tricksearch.api",
    "fit": "tricksearch.engine",
    "build": "tricksearch.components",
    "Components": "tricksearch.components",
    "load_dataset": "tricksearch.data",
    "build_model": "tricksearch.models",
    "search": "tricksearch.search_api",
    "resume": "tricksearch.search_api",
    "SearchConfig": "tricksearch.tuning",
    "SearchResult": "tricksearch.tuning",
    "TricksearchError": "tricksearch.errors",
    "ConfigError": "tricksearch.errors",
    "DataError": "tricksearch.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tricksearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
