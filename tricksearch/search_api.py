"""``tricksearch.search`` and ``tricksearch.resume``: run or continue a search from Python.

The machinery lives in ``tricksearch/tuning/`` (the only package that imports ray and optuna);
these two functions only turn Python objects (tensors, a model factory) into a search's settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from tricksearch.api import Arrays
    from tricksearch.data import DatasetSplits
    from tricksearch.tuning import SearchResult

__all__ = ["resume", "search"]


def search(
    dataset: str | DatasetSplits | Arrays = "digits",
    model: str | Callable[..., nn.Module] = "cnn-small",
    space: str = "default",
    *,
    trials: int = 32,
    epochs: int = 12,
    out: str | Path = "runs/search",
    quiet: bool = False,
    **settings: Any,
) -> SearchResult:
    """Run a search and return a :class:`SearchResult` (``.best`` is the best Recipe).

    ``dataset``: a name, or tensors ``(x, y)`` / ``(x, y, x_test, y_test)``, or DatasetSplits.
    ``model``: a registry name or a factory ``f(in_channels=…, num_classes=…)``.
    ``settings``: any other :class:`SearchConfig` field (sampler, seed, grace_period, top_k, …).
    """
    from tricksearch.api import resolve_data
    from tricksearch.recipe import Recipe
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._runner import run_search

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


def resume(
    out: str | Path,
    *,
    quiet: bool = False,
    data: DatasetSplits | None = None,
    model: Callable[..., nn.Module] | None = None,
) -> SearchResult:
    """Continue the search saved in ``out``.

    A search run on tensors or with a model factory needs them again: ``data`` (the
    :class:`DatasetSplits` it ran on) and ``model`` (the factory).
    """
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._runner import run_search

    config = SearchConfig.load(Path(out))
    config.out = str(out)
    return run_search(config, resume=True, data=data, model_factory=model, quiet=quiet)
