"""The search: Ray Tune schedules, Optuna samples, ASHA stops early. The only package that imports
ray and optuna (lazily: importing it is cheap until a search runs).

``tricksearch.search(...)`` runs a search from Python; this module is callable for that reason
(``tricksearch.search`` is both the package and the function).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from tricksearch.search._config import METRICS, SAMPLERS, SearchConfig

__all__ = ["METRICS", "SAMPLERS", "SearchConfig", "SearchResult", "resume", "search"]


def search(
    dataset: str | Any = "digits",
    model: str | Callable[..., nn.Module] = "cnn-small",
    space: str = "default",
    *,
    trials: int = 32,
    epochs: int = 12,
    out: str | Path = "runs/search",
    quiet: bool = False,
    **settings: Any,
) -> Any:
    """Run a search and return a :class:`SearchResult` (``.best`` is the best Recipe).

    ``dataset``: a name, or tensors ``(x, y)`` / ``(x, y, x_test, y_test)``, or DatasetSplits.
    ``model``: a registry name or a factory ``f(in_channels=…, num_classes=…)``.
    ``settings``: any other :class:`SearchConfig` field (sampler, seed, grace_period, top_k, …).
    """
    from tricksearch.api import resolve_data
    from tricksearch.recipe import Recipe
    from tricksearch.search._runner import run_search

    data = None
    name = dataset if isinstance(dataset, str) else "tensors"
    if not isinstance(dataset, str):
        split = {
            k: settings[k] for k in ("val_fraction", "test_fraction", "split_seed") if k in settings
        }
        _, data = resolve_data(Recipe.from_dict({"data": split}), dataset)
    factory = None if isinstance(model, str) else model
    config = SearchConfig(
        dataset=name,
        model=model if isinstance(model, str) else "cnn-small",
        space=space,
        trials=trials,
        epochs=epochs,
        out=str(out),
        **settings,
    )
    return run_search(config, data=data, model_factory=factory, quiet=quiet)


def resume(out: str | Path, *, quiet: bool = False, **objects: Any) -> Any:
    """Continue the search saved in ``out`` (pass ``data``/``model`` again if they were objects)."""
    from tricksearch.search._runner import run_search

    config = SearchConfig.load(Path(out))
    config.out = str(out)
    return run_search(
        config,
        resume=True,
        data=objects.get("data"),
        model_factory=objects.get("model"),
        quiet=quiet,
    )


def __getattr__(name: str) -> Any:
    if name == "SearchResult":
        from tricksearch.search._runner import SearchResult

        return SearchResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
