"""write_report on a synthetic run folder (``search_run`` / ``make_run`` in tests/conftest.py): a
real Optuna study in SQLite, recipe, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report import write_report
from tricksearch.tuning._study import STOPPED_ATTR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _ablation_json(run_dir: Path) -> None:
    rows = [
        {
            "label": "recipe",
            "kind": "recipe",
            "trick": None,
            "mean": 0.95,
            "std": 0.004,
            "versus": "baseline",
            "delta": 0.03,
            "pooled_std": 0.0045,
            "within_noise": False,
            "val_acc": [0.946, 0.95, 0.954],
        },
        {
            "label": "baseline",
            "kind": "baseline",
            "trick": None,
            "mean": 0.92,
            "std": 0.005,
            "versus": None,
            "delta": None,
            "pooled_std": None,
            "within_noise": None,
            "val_acc": [0.915, 0.92, 0.925],
        },
        {
            "label": "− cosine → constant",
            "kind": "minus",
            "trick": "cosine",
            "mean": 0.93,
            "std": 0.004,
            "versus": "recipe",
            "delta": -0.02,
            "pooled_std": 0.004,
            "within_noise": False,
            "val_acc": [0.926, 0.93, 0.934],
        },
        {
            "label": "+ cosine",
            "kind": "plus",
            "trick": "cosine",
            "mean": 0.921,
            "std": 0.004,
            "versus": "baseline",
            "delta": 0.001,
            "pooled_std": 0.0045,
            "within_noise": True,
            "val_acc": [0.917, 0.921, 0.925],
        },
    ]
    (run_dir / "ablation.json").write_text(
        json.dumps(
            {
                "metric": "val_acc",
                "seeds": [0, 1, 2],
                "noise_rule": "within noise: |Δ| ≤ pooled",
                "rows": rows,
            }
        )
    )


def _assert_png(path: Path) -> None:
    import matplotlib.image

    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5_000, (path, len(data))
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_report_writes_markdown_and_valid_pngs(search_run: Path) -> None:
    run = search_run
    _ablation_json(run)
    path = write_report(run)
    assert path == run / "report.md"
    text = path.read_text()
    for name in ("history.png", "importance.png", "ablation.png", "recipe_vs_baseline.png"):
        _assert_png(run / name)
        assert f"({name})" in text
    # The evaluator is named, the cost is counted, the dashboard is explained.
    assert "PedAnovaImportanceEvaluator" in text
    assert "ASHA saved" in text
    assert "optuna-dashboard sqlite:///" in text and "tricksearch[dashboard]" in text
    assert "label_smoothing" in text and "cosine → constant" in text
    assert "0.9400 ± 0.0060" in text  # recipe's test accuracy, mean ± std


def test_report_cost_counts_trial_epochs(search_run: Path) -> None:
    import optuna

    run = search_run
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    spent = sum(t.user_attrs["epochs"] for t in study.trials)
    full = len(study.trials) * 6
    text = write_report(run).read_text()
    assert f"{spent} trial-epochs" in text and str(full) in text
    assert f"{100 * (1 - spent / full):.0f} %" in text


def test_report_tells_trials_cut_by_the_time_budget_from_asha_pruning(make_run) -> None:
    import optuna

    run = make_run(cut=4)
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    decided = [t for t in study.trials if not t.user_attrs.get(STOPPED_ATTR)]
    pruned = sum(t.state.name == "PRUNED" for t in decided)
    own = sum(t.user_attrs["epochs"] for t in decided)
    full = len(decided) * 6
    text = write_report(run).read_text()
    assert f"{pruned} pruned by ASHA" in text and "4 stopped by the time budget" in text
    assert f"it would have been {full} for the {len(decided)} trials the time budget" in text
    assert f"ASHA saved **{100 * (1 - own / full):.0f} %**" in text
    _assert_png(run / "history.png")


def test_report_without_ablation_says_how_to_run_it(search_run: Path) -> None:
    run = search_run
    (run / "ablation.png").write_bytes(b"stale")
    text = write_report(run).read_text()
    assert "tricksearch ablate --recipe" in text
    assert not (run / "ablation.png").exists()  # stale figure removed


def test_report_with_one_complete_trial_rates_the_pruned_ones_at_their_epoch(make_run) -> None:
    run = make_run(n_trials=6, complete_only=1)  # 5 PRUNED after 2 epochs
    text = write_report(run).read_text()
    assert "at epoch 2 of the 6 trials that reached it: only 1 ran the full budget" in text
    _assert_png(run / "importance.png")


def test_report_with_too_few_trials_says_so(make_run) -> None:
    run = make_run(n_trials=1)
    text = write_report(run).read_text()
    assert "Importance not computed" in text and "at least 2 rated trials" in text
    assert not (run / "importance.png").exists()
    _assert_png(run / "history.png")


def test_report_with_only_a_study(search_run: Path) -> None:
    run = search_run
    for name in ("search.json", "results.json", "best_recipe.yaml"):
        (run / name).unlink()
    text = write_report(run).read_text()
    assert "## Optimization history" in text and "ASHA saved" in text


def test_missing_run_folder_and_study_raise_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no run folder at") as err:
        write_report(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"study\.db") as err:
        write_report(tmp_path / "empty")
    assert "tricksearch" in str(err.value)


def test_report_flags_an_ablation_of_another_recipe(search_run: Path) -> None:
    from tricksearch.recipe import load_recipe

    run = search_run
    _ablation_json(run)
    data = json.loads((run / "ablation.json").read_text())
    data["recipe"] = load_recipe(run / "best_recipe.yaml").without_provenance().to_dict()
    (run / "ablation.json").write_text(json.dumps(data))
    assert "different recipe" not in write_report(run).read_text()
    data["recipe"] = Recipe().to_dict()
    (run / "ablation.json").write_text(json.dumps(data))
    assert "different recipe" in write_report(run).read_text()
