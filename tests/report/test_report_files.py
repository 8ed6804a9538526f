"""write_report on a synthetic run folder: a real Optuna study in SQLite, recipe, results."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report import write_report
from tricksearch.tuning._study import STOPPED_ATTR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _provenance() -> dict:
    return {
        "created": "2025-01-01T00:00:00+00:00",
        "dataset": {"name": "digits", "val_fraction": 0.15, "test_fraction": 0.2, "split_seed": 0},
        "model": "cnn-small",
        "budget": {"epochs": 6},
        "search": {
            "space": "default",
            "sampler": "tpe",
            "seed": 0,
            "metric": "val_acc",
            "trials_requested": 30,
            "trials": {"complete": 18, "pruned": 9, "fail": 3},
            "trial_epochs": 120,
            "full_budget_epochs": 180,
            "chosen_from": "trial 7",
            "candidates_from": "complete",
            "seconds": 12.5,
        },
        "seeds": [0, 1, 2],
        "recipe": {
            "val_acc_mean": 0.95,
            "val_acc_std": 0.004,
            "test_acc_mean": 0.94,
            "test_acc_std": 0.006,
            "val_acc": [0.946, 0.95, 0.954],
            "test_acc": [0.934, 0.94, 0.946],
            "failed_seeds": [],
        },
        "baseline": {
            "val_acc_mean": 0.92,
            "val_acc_std": 0.005,
            "test_acc_mean": 0.915,
            "test_acc_std": 0.007,
            "val_acc": [0.915, 0.92, 0.925],
            "test_acc": [0.908, 0.915, 0.922],
            "failed_seeds": [],
        },
        "gain": {"val_acc": 0.03, "test_acc": 0.025},
        "versions": {"python": "3.11", "torch": "2.x", "optuna": "5.0.0"},
    }


def make_run(
    run_dir: Path, *, n_trials: int = 30, complete_only: int | None = None, cut: int = 0
) -> Path:
    """A run folder as a search leaves it: study.db, search.json, results.json, best_recipe.

    ``cut``: the last ``cut`` trials were cut by the time budget (PRUNED after 3 epochs, marked).
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=f"sqlite:///{run_dir / 'study.db'}", study_name="tricksearch", direction="maximize"
    )
    rng = random.Random(0)
    dists = {
        "budget.lr": FloatDistribution(1e-3, 1.0, log=True),
        "loss.label_smoothing": CategoricalDistribution([False, True]),
        "loss.label_smoothing.epsilon": FloatDistribution(0.0, 0.3),
        "schedule.decay": CategoricalDistribution(["constant", "cosine", "step"]),
        "schedule.cosine.min_lr_factor": FloatDistribution(0.0, 0.1),
        "mixing.mixup": CategoricalDistribution([False, True]),
        "mixing.mixup.alpha": FloatDistribution(0.1, 1.0),
    }
    epochs = 6
    for i in range(n_trials):
        params = {
            "budget.lr": 10 ** rng.uniform(-3, 0),
            "loss.label_smoothing": rng.random() < 0.5,
            "schedule.decay": rng.choice(["constant", "cosine", "step"]),
            "mixing.mixup": rng.random() < 0.5,
        }
        if params["loss.label_smoothing"]:
            params["loss.label_smoothing.epsilon"] = rng.uniform(0.0, 0.3)
        if params["schedule.decay"] == "cosine":
            params["schedule.cosine.min_lr_factor"] = rng.uniform(0.0, 0.1)
        if params["mixing.mixup"]:
            params["mixing.mixup.alpha"] = rng.uniform(0.1, 1.0)
        # The value depends on label smoothing and on the decay; lr and mixup are noise.
        value = (
            0.85
            + 0.05 * params["loss.label_smoothing"]
            + 0.03 * (params["schedule.decay"] == "cosine")
            + rng.uniform(0, 0.01)
        )
        if complete_only is not None:
            state = TrialState.COMPLETE if i < complete_only else TrialState.PRUNED
        else:
            state = (
                TrialState.FAIL
                if i % 10 == 9
                else TrialState.PRUNED
                if i % 3 == 1
                else TrialState.COMPLETE
            )
        n_ep = epochs if state == TrialState.COMPLETE else (2 if state == TrialState.PRUNED else 1)
        attrs: dict = {}
        if i >= n_trials - cut:
            state, n_ep, attrs = TrialState.PRUNED, 3, {STOPPED_ATTR: True}
        inter = {e: value - 0.02 * (epochs - e) for e in range(1, n_ep + 1)}
        study.add_trial(
            create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                value=value if state == TrialState.COMPLETE else None,
                state=state,
                intermediate_values=inter if state != TrialState.FAIL else {},
                user_attrs={"epochs": n_ep, **attrs},
            )
        )
    (run_dir / "search.json").write_text(
        json.dumps(
            {
                "dataset": "digits",
                "model": "cnn-small",
                "space": "default",
                "trials": n_trials,
                "epochs": epochs,
                "sampler": "tpe",
                "metric": "val_acc",
                "seeds": 3,
                "top_k": 2,
            }
        )
    )
    recipe = Recipe.from_dict(
        {
            "data": {"dataset": "digits"},
            "model": {"name": "cnn-small"},
            "budget": {"epochs": epochs},
            "loss": {"label_smoothing": {"epsilon": 0.1}},
            "schedule": {"cosine": {}},
            "provenance": _provenance(),
        }
    )
    recipe.save(run_dir / "best_recipe.yaml")
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "summary": _provenance(),
                "candidates": [
                    {
                        "label": "trial 7",
                        "val_mean": 0.95,
                        "val_std": 0.004,
                        "ok": True,
                        "tricks": ["cosine", "label_smoothing"],
                        "val": [0.946, 0.95, 0.954],
                    },
                    {
                        "label": "trial 3",
                        "val_mean": 0.94,
                        "val_std": 0.003,
                        "ok": True,
                        "tricks": ["label_smoothing"],
                        "val": [0.937, 0.94, 0.943],
                    },
                    {
                        "label": "baseline",
                        "val_mean": 0.92,
                        "val_std": 0.005,
                        "ok": True,
                        "tricks": [],
                        "val": [0.915, 0.92, 0.925],
                    },
                ],
            }
        )
    )
    return run_dir


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


def test_report_writes_markdown_and_valid_pngs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
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


def test_report_cost_counts_trial_epochs(tmp_path: Path) -> None:
    import optuna

    run = make_run(tmp_path / "run")
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    spent = sum(t.user_attrs["epochs"] for t in study.trials)
    full = len(study.trials) * 6
    text = write_report(run).read_text()
    assert f"{spent} trial-epochs" in text and str(full) in text
    assert f"{100 * (1 - spent / full):.0f} %" in text


def test_report_tells_trials_cut_by_the_time_budget_from_asha_pruning(tmp_path: Path) -> None:
    import optuna

    run = make_run(tmp_path / "run", cut=4)
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


def test_report_without_ablation_says_how_to_run_it(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "ablation.png").write_bytes(b"stale")
    text = write_report(run).read_text()
    assert "tricksearch ablate --recipe" in text
    assert not (run / "ablation.png").exists()  # stale figure removed


def test_report_with_one_complete_trial_rates_the_pruned_ones_at_their_epoch(
    tmp_path: Path,
) -> None:
    run = make_run(tmp_path / "run", n_trials=6, complete_only=1)  # 5 PRUNED after 2 epochs
    text = write_report(run).read_text()
    assert "at epoch 2 of the 6 trials that reached it: only 1 ran the full budget" in text
    _assert_png(run / "importance.png")


def test_report_with_too_few_trials_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", n_trials=1)
    text = write_report(run).read_text()
    assert "Importance not computed" in text and "at least 2 rated trials" in text
    assert not (run / "importance.png").exists()
    _assert_png(run / "history.png")


def test_report_with_only_a_study(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
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


def test_report_flags_an_ablation_of_another_recipe(tmp_path: Path) -> None:
    from tricksearch.recipe import load_recipe

    run = make_run(tmp_path / "run")
    _ablation_json(run)
    data = json.loads((run / "ablation.json").read_text())
    data["recipe"] = load_recipe(run / "best_recipe.yaml").without_provenance().to_dict()
    (run / "ablation.json").write_text(json.dumps(data))
    assert "different recipe" not in write_report(run).read_text()
    data["recipe"] = Recipe().to_dict()
    (run / "ablation.json").write_text(json.dumps(data))
    assert "different recipe" in write_report(run).read_text()
