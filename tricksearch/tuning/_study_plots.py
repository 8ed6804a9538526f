"""Optuna's own figures of a study (``optuna.visualization.matplotlib``), for the report, which
must not import optuna itself (``tuning/`` is the only package that does; see ``_study``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

__all__ = ["OPTUNA_PLOTS", "optuna_figure"]

#: The figures :func:`optuna_figure` draws: name -> function of ``optuna.visualization``.
OPTUNA_PLOTS = {
    "parallel_coordinate": "plot_parallel_coordinate",
    "slice": "plot_slice",
}


def optuna_figure(
    kind: str, study: optuna.Study, params: Sequence[str], *, target_name: str
) -> Figure:
    """The matplotlib figure Optuna's ``plot_<kind>`` draws of the COMPLETE trials of ``study``
    over ``params``. Optuna marks these functions experimental: that warning is silenced, as is
    matplotlib's for a parameter with one value. The
    figure belongs to pyplot (Optuna draws with it): the caller closes it."""
    import optuna
    from optuna.visualization import matplotlib as vis

    draw = getattr(vis, OPTUNA_PLOTS[kind])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # a parameter every trial gave the same value: matplotlib widens its axis by itself
        warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
        axes = draw(study, params=list(params), target_name=target_name)
    first = axes.flat[0] if hasattr(axes, "flat") else axes  # plot_slice: one Axes per param
    return first.get_figure()
