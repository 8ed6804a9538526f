"""Optuna's parallel-coordinate and slice plots in the report: drawn over the parameters the
importance ranks first, from the trials it rated; skipped below 2 finished trials; no warning, no
open pyplot figure and no style left behind."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tricksearch.report import trick_importance, write_report
from tricksearch.report._optuna_figures import FIGURES, TOP_PARAMS, top_params
from tricksearch.tuning._study import load_study

SECTION = "## Trials across the top parameters"


def _section(text: str) -> str:
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def test_figures_over_the_most_important_parameters(search_run: Path) -> None:
    import matplotlib
    import matplotlib.image
    import matplotlib.pyplot as plt
    import optuna

    study = load_study(search_run)
    imp = trick_importance(study)
    ranked = sorted(imp.by_param, key=lambda k: -imp.by_param[k])[:TOP_PARAMS]
    facecolor = matplotlib.rcParams["axes.facecolor"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = write_report(search_run).read_text()
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert plt.get_fignums() == []  # Optuna's pyplot figures are closed
    assert matplotlib.rcParams["axes.facecolor"] == facecolor  # plot_slice's ggplot style undone
    section = _section(text)
    # The conftest run has 18 COMPLETE trials (< 20): importance and figures at epoch 2, where the
    # 27 COMPLETE or PRUNED trials are compared.
    assert imp.epoch == 2
    assert "from the 27 trials that reached epoch 2" in section
    assert ", ".join(f"`{p}`" for p in ranked) in section
    for name in FIGURES.values():
        assert f"]({name})" in section
        img = matplotlib.image.imread(search_run / name)
        assert img.shape[0] > 300 and img[..., :3].std() > 0.05, name
    slice_img = matplotlib.image.imread(search_run / FIGURES["slice"])
    assert slice_img.shape[1] > 2 * slice_img.shape[0]  # one panel per parameter, side by side


def test_plots_need_two_finished_trials(make_run) -> None:
    run = make_run(n_trials=1)
    for name in FIGURES.values():
        (run / name).write_bytes(b"stale")
    section = _section(write_report(run).read_text())
    assert "need at least 2 trials finished (COMPLETE) with parameters; this study has 1" in (
        section
    )
    for name in FIGURES.values():
        assert not (run / name).exists(), name  # stale figures removed


def test_top_params_without_importance_are_the_most_set(make_run) -> None:
    study = load_study(make_run(n_trials=6))
    imp = trick_importance(study)
    assert top_params(imp, study, k=2) == sorted(imp.by_param, key=lambda k: -imp.by_param[k])[:2]
    imp.by_param = {}
    # Every trial sets lr, label_smoothing, decay and mixup; the conditional ones fewer.
    assert top_params(imp, study) == [
        "budget.lr",
        "loss.label_smoothing",
        "mixing.mixup",
        "schedule.decay",
    ]


@pytest.mark.parametrize("kind", list(FIGURES))
def test_optuna_figure_silences_the_experimental_warning(search_run: Path, kind: str) -> None:
    import matplotlib.pyplot as plt

    from tricksearch.tuning._study_plots import optuna_figure

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        fig = optuna_figure(kind, load_study(search_run), ["budget.lr"], target_name="val_acc")
    assert "val_acc" in {ax.get_ylabel() for ax in fig.axes} | {
        t.get_text() for ax in fig.axes for t in ax.get_xticklabels()
    }
    plt.close(fig)
