"""Optuna's own figures of the study, for the report: the parallel-coordinate and the slice plot
(``optuna.visualization.matplotlib``) over the most important parameters.

The trials are those the importance rated: the COMPLETE ones, or, when too few ran the full budget,
every trial that reached the epoch the importance was read at, with its value there (see
``_importance.choose_fidelity``). Optuna draws with pyplot; each figure is drawn inside
``matplotlib.rc_context`` (``plot_slice`` switches pyplot to its ggplot style) and closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tricksearch.report._importance import ImportanceResult

if TYPE_CHECKING:  # optuna is imported by load_study, when a report is written
    from optuna.study import Study

__all__ = ["FIGURES", "TOP_PARAMS", "optuna_section", "top_params"]

#: How many parameters the figures show, the most important first.
TOP_PARAMS = 4
#: The files the figures are written to, in the run folder.
FIGURES = {"parallel_coordinate": "parallel_coordinate.png", "slice": "slice.png"}
_DPI = 120


def top_params(imp: ImportanceResult, study: Study, k: int = TOP_PARAMS) -> list[str]:
    """The ``k`` parameters with the highest importance; without importance, the ``k`` that the
    most trials of ``study`` set."""
    if imp.by_param:
        ranked = sorted(imp.by_param.items(), key=lambda kv: (-kv[1], kv[0]))
        return [key for key, _ in ranked[:k]]
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        for key in t.params:
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda key: (-counts[key], key))[:k]


def _draw(kind: str, study: Study, params: list[str], target: str, path: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    from tricksearch.tuning._study_plots import optuna_figure

    with matplotlib.rc_context():
        fig = optuna_figure(kind, study, params, target_name=target)
        try:
            if kind == "slice":
                fig.set_size_inches(3.1 * len(params) + 1.6, 4.4)
                for ax in fig.axes[: len(params)]:  # the last axes is the colour bar
                    plt.setp(ax.get_xticklabels(), rotation=25, ha="right")
            else:
                fig.set_size_inches(2.0 * len(params) + 4.0, 5.0)
            fig.savefig(path, format="png", dpi=_DPI, bbox_inches="tight")
        finally:
            plt.close(fig)


def optuna_section(
    study: Study, imp: ImportanceResult, run_dir: Path, written: set[str], metric: str
) -> list[str]:
    """The parallel-coordinate and slice figures over the top parameters, or why not drawn (fewer
    than 2 finished trials)."""
    from tricksearch.tuning._study import at_epoch

    view = study if imp.epoch is None else at_epoch(study, imp.epoch)
    finished = [t for t in view.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    lines = ["## Trials across the top parameters", ""]
    which = "finished (COMPLETE)" if imp.epoch is None else f"reaching epoch {imp.epoch}"
    params = top_params(imp, view)
    if len(finished) < 2 or not params:
        return [
            *lines,
            f"Optuna's parallel-coordinate and slice plots need at least 2 trials {which} "
            f"with parameters; this study has {len(finished)}.",
            "",
        ]
    target = metric if imp.epoch is None else f"{metric} at epoch {imp.epoch}"
    for kind, name in FIGURES.items():
        try:
            _draw(kind, view, params, target, run_dir / name)
        except ValueError as exc:  # Optuna refuses what it cannot draw
            return [*lines, f"Optuna could not draw its {kind} plot: {exc}", ""]
        written.add(name)
    rated = "importance" if imp.by_param else "the number of trials that set them"
    scope = (
        f"the {len(finished)} COMPLETE trials"
        if imp.epoch is None
        else f"the {len(finished)} trials that reached epoch {imp.epoch}, at their value there "
        "(as the importance above)"
    )
    return [
        *lines,
        f"Drawn by Optuna (`optuna.visualization.matplotlib`) from {scope}, over the "
        f"{len(params)} parameters ranked first by {rated}: {', '.join(f'`{p}`' for p in params)}.",
        "",
        f"![parallel coordinates]({FIGURES['parallel_coordinate']})",
        "",
        f"Parallel coordinates: each line is one trial, through its {target} (first axis) and "
        "its value of each parameter; the colour follows the value. A switch reads True/False; a "
        "parameter the trial did not set (its trick off) sits at None.",
        "",
        f"![slice plot]({FIGURES['slice']})",
        "",
        f"Slice plot: one panel per parameter, each dot a trial's {target} against the value it "
        "set (darker dots: later trials); a trial that did not set the parameter is not in its "
        "panel.",
        "",
    ]
