"""write_report on a synthetic run folder (``search_run`` / ``make_run`` in tests/conftest.py): a
real Optuna study in SQLite, recipe, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report import write_report
from tricksearch.tuning._study import ERROR_ATTR, ERROR_FILE_ATTR, STOPPED_ATTR

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


def _decided(study) -> list:
    """The trials ASHA decided on: COMPLETE or PRUNED, not cut by the time budget."""
    return [
        t
        for t in study.trials
        if t.state.name in ("COMPLETE", "PRUNED") and not t.user_attrs.get(STOPPED_ATTR)
    ]


def test_report_cost_counts_trial_epochs(search_run: Path) -> None:
    import optuna

    run = search_run
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    spent = sum(t.user_attrs["epochs"] for t in study.trials)
    decided = _decided(study)
    own = sum(t.user_attrs["epochs"] for t in decided)
    full = len(decided) * 6
    failed = sum(t.state.name == "FAIL" for t in study.trials)
    assert failed and len(decided) == len(study.trials) - failed  # conftest: 3 of 30 failed
    text = write_report(run).read_text()
    assert f"**{spent} trial-epochs** for {len(study.trials)} trials" in text
    assert f"the {len(decided)} trials ASHA decided on took {own}" in text
    assert f"they would have taken {full} (not counted: {failed} failed)" in text
    assert f"ASHA saved **{100 * (1 - own / full):.0f} %**" in text


def test_report_tells_trials_cut_by_the_time_budget_from_asha_pruning(make_run) -> None:
    import optuna

    run = make_run(cut=4)
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    decided = _decided(study)
    pruned = sum(t.state.name == "PRUNED" for t in decided)
    own = sum(t.user_attrs["epochs"] for t in decided)
    full = len(decided) * 6
    failed = sum(t.state.name == "FAIL" for t in study.trials)
    text = write_report(run).read_text()
    assert f"{pruned} pruned by ASHA" in text and "4 stopped by the time budget" in text
    assert (
        f"they would have taken {full} (not counted: {failed} failed and 4 cut by the time "
        "budget)" in text
    )
    assert f"ASHA saved **{100 * (1 - own / full):.0f} %**" in text
    _assert_png(run / "history.png")


def _add_failed_trials(run: Path, causes: list[tuple[str, str | None]]) -> None:
    """Failed trials with a recorded cause and traceback file, as the searcher stores them; and
    one FAIL the time budget cut before its first epoch (STOPPED, not a failure)."""
    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    for cause, error_file in causes:
        attrs = {ERROR_ATTR: cause, "epochs": 0}
        if error_file:
            attrs[ERROR_FILE_ATTR] = error_file
        study.add_trial(create_trial(state=TrialState.FAIL, user_attrs=attrs))
    study.add_trial(
        create_trial(state=TrialState.FAIL, user_attrs={STOPPED_ATTR: True, "epochs": 0})
    )


def test_report_lists_the_causes_of_failed_trials(search_run: Path) -> None:
    run = search_run
    _add_failed_trials(
        run,
        [
            ("ValueError: planted failure", "/ray/t1/error.txt"),
            ("RuntimeError: out of memory", "/ray/t2/error.txt"),
            ("ValueError: planted failure", "/ray/t3/error.txt"),
            ("ValueError: planted failure", None),
            ("ValueError: planted failure", "/ray/t5/error.txt"),
        ],
    )
    text = write_report(run).read_text()
    section = text.split("## Failed trials", 1)[1].split("\n## ", 1)[0]
    # conftest's 3 failed trials carry no cause; the STOPPED one is not a failure
    assert "8 of 36 trials failed" in section
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines == [
        "- 4 × ValueError: planted failure — traceback: `/ray/t1/error.txt`",
        "- 3 × unknown cause (no error recorded)",
        "- 1 × RuntimeError: out of memory — traceback: `/ray/t2/error.txt`",
    ]


def test_report_without_failed_trials_has_no_failure_section(make_run) -> None:
    run = make_run(n_trials=6, complete_only=3)
    assert "## Failed trials" not in write_report(run).read_text()


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
