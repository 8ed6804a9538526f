"""Learning curves of the retrained configurations: the data read from results.json (mean ± std
per epoch over the seeds, the drawing order, the best recipe) and the figure in the report."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from tricksearch.report import write_report
from tricksearch.report._curves import FIGURE, best_label, learning_curves, seed_curves


def _results(**candidates: list) -> dict:
    """A results.json with one candidate per keyword (label with ``_`` for spaces)."""
    return {
        "summary": {"search": {"chosen_from": "trial 2"}},
        "candidates": [
            {"label": label.replace("_", " "), "curves": curves}
            for label, curves in candidates.items()
        ],
    }


def test_mean_and_sample_std_per_epoch_over_the_seeds() -> None:
    results = _results(baseline=[[0.5, 0.6, 0.7], [0.7, 0.8, 0.9]])
    [curve] = learning_curves(results)
    assert curve.label == "baseline" and curve.role == "baseline" and curve.n_seeds == 2
    assert curve.mean == pytest.approx((0.6, 0.7, 0.8))
    assert curve.std == pytest.approx((math.sqrt(0.02),) * 3)  # sample std (n - 1)


def test_planted_curves_of_the_conftest_run(curves_run: Path, planted_curves: dict) -> None:
    results = json.loads((curves_run / "results.json").read_text())
    curves = {c.label: c for c in learning_curves(results)}
    for label, planted in planted_curves.items():
        by_epoch = list(zip(*planted, strict=True))
        assert curves[label].mean == pytest.approx([statistics.fmean(v) for v in by_epoch])
        assert curves[label].std == pytest.approx([statistics.stdev(v) for v in by_epoch])
        assert curves[label].n_seeds == 3
    assert curves["trial 7"].role == "best"  # search.chosen_from of the conftest run


def test_order_roles_and_the_best_recipe() -> None:
    one = [[0.5, 0.6]]
    results = _results(
        trial_2=one, baseline=one, trial_5=one, minimal=one, tuned_baseline=one, trial_9=one
    )
    curves = learning_curves(results)
    # baseline, tuned baseline, the candidates as listed, the best last (drawn on top)
    assert [c.label for c in curves] == [
        "baseline",
        "tuned baseline",
        "trial 5",
        "minimal",
        "trial 9",
        "trial 2",
    ]
    assert [c.role for c in curves] == [
        "baseline",
        "tuned baseline",
        "candidate",
        "candidate",
        "candidate",
        "best",
    ]
    assert curves[0].std == (0.0, 0.0)  # one seed: no spread
    results["summary"]["verdict"] = {"exported": "minimal"}
    assert best_label(results) == "minimal"
    assert learning_curves(results)[-1].label == "minimal"
    results["summary"]["verdict"] = {"exported": "baseline"}
    last = learning_curves(results)[-1]
    assert (last.label, last.role) == ("baseline", "best")


def test_per_seed_rows_failed_seeds_and_uneven_lengths() -> None:
    # The retraining's per-seed rows: a failed seed has an error and no curve.
    cand = {
        "label": "trial 1",
        "rows": [
            {"seed": 0, "curve": [0.4, 0.6]},
            {"seed": 1, "error": "TrainingDiverged: NaN loss"},
            {"seed": 2, "curve": [0.6, 0.8, 0.9]},
        ],
    }
    assert seed_curves(cand) == [[0.4, 0.6], [0.6, 0.8, 0.9]]
    assert seed_curves({"curves": [[0.5, float("nan")], None, [0.7]]}) == [[0.7]]
    [curve] = learning_curves({"candidates": [cand]})
    assert curve.n_seeds == 2
    assert curve.mean == pytest.approx((0.5, 0.7, 0.9))  # epoch 3: the one seed that reached it
    assert curve.std[2] == 0.0


def test_report_draws_the_learning_curves(curves_run: Path) -> None:
    import matplotlib.image

    text = write_report(curves_run).read_text()
    assert f"![learning curves]({FIGURE})" in text
    section = text.split("## Learning curves", 1)[1].split("\n## ", 1)[0]
    assert "mean over the seeds (3 per configuration)" in section
    img = matplotlib.image.imread(curves_run / FIGURE)
    assert img.shape[:2] == (576, 960)  # 8 × 4.8 inches at 120 dpi
    assert img[..., :3].std() > 0.05  # lines and bands, not a blank canvas


def test_older_run_without_curves_has_no_section_and_no_figure(search_run: Path) -> None:
    (search_run / FIGURE).write_bytes(b"stale")
    text = write_report(search_run).read_text()  # conftest's results.json: no curves
    assert "## Learning curves" not in text
    assert not (search_run / FIGURE).exists()
