"""Shared test set-up: quiet Ray, caches under a temp folder, and the fixtures several test
files need: the digits data, a short recipe, the CLI run in-process, a search's run folder."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

#: ``cli("train", "--epochs", "1")`` -> (exit status, stdout, stderr).
RunCli = Callable[..., tuple[int, str, str]]
#: ``make_run(n_trials=30, complete_only=None, cut=0)`` -> the run folder.
MakeRun = Callable[..., Path]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Teachers and other caches go to a per-session temp folder, never to ~/.cache."""
    monkeypatch.setenv("TRICKSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def digits() -> DatasetSplits:
    """scikit-learn's 8×8 digits with the default split (loaded once per process)."""
    from tricksearch.data import load_dataset

    return load_dataset("digits")


@pytest.fixture
def short_recipe() -> Recipe:
    """The baseline on digits for 2 epochs (batch 128, lr 0.05): a real training in a second."""
    from tricksearch.recipe import Recipe

    return Recipe.from_dict({"budget": {"epochs": 2, "batch_size": 128, "lr": 0.05}})


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run ``tricksearch ARGV…`` in this process; return (exit status, stdout, stderr)."""
    from tricksearch.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def make_run(tmp_path: Path) -> MakeRun:
    """Writes a synthetic search run folder at ``tmp_path/run`` (see :func:`_write_run`)."""
    return lambda **variant: _write_run(tmp_path / "run", **variant)


@pytest.fixture
def search_run(make_run: MakeRun) -> Path:
    """A run folder of 30 trials as a search leaves it (study.db, search.json, results.json,
    best_recipe.yaml), without ablation."""
    return make_run()


# --- the synthetic run folder ------------------------------------------------------------------
def _search_provenance() -> dict[str, Any]:
    """The provenance a search writes into best_recipe.yaml and results.json's summary."""
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


def _write_run(
    run_dir: Path, *, n_trials: int = 30, complete_only: int | None = None, cut: int = 0
) -> Path:
    """A run folder as a search leaves it: study.db, search.json, results.json, best_recipe.

    Trial ``i`` is FAILED when ``i % 10 == 9``, PRUNED after 2 epochs when ``i % 3 == 1``, else
    COMPLETE after 6 (``complete_only=k``: the first k COMPLETE, the others PRUNED). ``cut``: the
    last ``cut`` trials were cut by the time budget (PRUNED after 3 epochs, marked).
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from tricksearch.recipe import Recipe
    from tricksearch.tuning._study import STOPPED_ATTR

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
            "provenance": _search_provenance(),
        }
    )
    recipe.save(run_dir / "best_recipe.yaml")
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "summary": _search_provenance(),
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
