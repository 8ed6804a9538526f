"""``tricksearch.search`` and ``tricksearch.resume``: run or continue a search from Python.

The machinery lives in ``tricksearch/tuning/`` (the only package that imports ray and optuna);
these two functions only turn Python objects (tensors, a model factory) into a search's settings.
A factory is recorded by its qualified name (``python:MODULE.QUALNAME``) and data given as
tensors as the dataset ``"tensors"``: such a search is resumed from Python, with them given again
(``tuning._prepare.resume_hint`` says how).
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
    ``model``: a registry name or a factory ``f(in_channels=…, num_classes=…)`` (recorded as
    ``python:MODULE.QUALNAME`` in ``search.json`` and the recipes).
    ``settings``: any other :class:`SearchConfig` field (sampler, seed, grace_period, top_k, …;
    ``warm_start="DIR"``: an earlier search's finished trials as the sampler's prior;
    ``fidelity="epochs"|"data"|"auto"``: ASHA's early rungs on a fraction of the train split);
    ``unlabeled`` may also be, with tensors, an array of unlabelled samples shaped like ``x``
    (``labeled_fraction`` hides the labels of the rest of the train split).
    """
    from tricksearch.models import python_model_name
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._prepare import TENSORS
    from tricksearch.tuning._runner import run_search

    data = None
    name = dataset if isinstance(dataset, str) else TENSORS
    pool = settings.pop("unlabeled", None)
    if isinstance(pool, str):
        settings["unlabeled"] = pool
    if not isinstance(dataset, str):
        data = _splits(dataset, settings, pool)
    factory = None if isinstance(model, str) else model
    config = SearchConfig(
        dataset=name,
        model=model if isinstance(model, str) else python_model_name(model),
        space=space,
        trials=trials,
        epochs=epochs,
        out=str(out),
        **settings,
    )
    return run_search(config, data=data, model_factory=factory, quiet=quiet)


#: The search settings that say how data given from Python is split.
_SPLIT_KEYS = ("val_fraction", "test_fraction", "split_seed", "labeled_fraction")


def _splits(
    dataset: DatasetSplits | Arrays, settings: dict[str, Any], unlabeled: Any = None
) -> DatasetSplits:
    """The splits of data given from Python, split as ``settings`` say (fractions, seed, the
    labels kept), with the unlabelled pool ``unlabeled`` (a path form or an array)."""
    from tricksearch.api import resolve_data
    from tricksearch.errors import ConfigTypeError
    from tricksearch.recipe import Recipe

    split = {k: settings[k] for k in _SPLIT_KEYS if k in settings}
    _, data = resolve_data(Recipe.from_dict({"data": split}), dataset, unlabeled)
    if data is None:  # pragma: no cover - resolve_data returns splits for anything but a name
        raise ConfigTypeError("dataset: expected tensors or DatasetSplits, got a name")
    return data


def resume(
    out: str | Path,
    *,
    quiet: bool = False,
    data: DatasetSplits | Arrays | None = None,
    model: Callable[..., nn.Module] | None = None,
    unlabeled: Any = None,
) -> SearchResult:
    """Continue the search saved in ``out``.

    A search run on tensors or with a model factory needs them again: ``data`` (the
    :class:`DatasetSplits` it ran on, or the same tensors, split again as the search split them)
    and ``model`` (the factory). Without them such a search is refused, saying what to give.
    ``unlabeled``: the array of unlabelled samples given to the search with the tensors, if any
    (a path form is in the saved settings).
    """
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._runner import run_search

    config = SearchConfig.load(Path(out))
    config.out = str(out)
    splits = None
    if data is not None:
        settings = {k: getattr(config, k) for k in _SPLIT_KEYS}
        splits = _splits(data, settings, config.unlabeled if unlabeled is None else unlabeled)
    return run_search(config, resume=True, data=splits, model_factory=model, quiet=quiet)
