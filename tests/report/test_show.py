"""show_recipe and the CLI of the report package (`show`, `report`, `ablate` errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tricksearch.recipe import Recipe
from tricksearch.report import show_recipe

PROVENANCE = {
    "created": "2025-01-01T00:00:00+00:00",
    "search": {
        "space": "default",
        "sampler": "tpe",
        "metric": "val_acc",
        "trials": {"complete": 10, "pruned": 20, "fail": 2},
        "trial_epochs": 150,
        "full_budget_epochs": 480,
        "chosen_from": "trial 12",
    },
    "seeds": [0, 1, 2],
    "recipe": {
        "val_acc_mean": 0.9712,
        "val_acc_std": 0.004,
        "test_acc_mean": 0.9655,
        "test_acc_std": 0.0051,
    },
    "baseline": {
        "val_acc_mean": 0.95,
        "val_acc_std": 0.005,
        "test_acc_mean": 0.9433,
        "test_acc_std": 0.0062,
    },
    "gain": {"val_acc": 0.0212, "test_acc": 0.0222},
    "versions": {"python": "3.11.2", "torch": "2.4.0", "optuna": "5.0.0"},
}


def _recipe(provenance: dict | None = None) -> Recipe:
    return Recipe.from_dict(
        {
            "data": {"dataset": "digits"},
            "model": {"name": "cnn-small"},
            "budget": {"epochs": 15, "batch_size": 64, "lr": 0.02, "seed": 1},
            "schedule": {"warmup": {"epochs": 2}, "cosine": {"min_lr_factor": 0.01}},
            "loss": {"label_smoothing": {"epsilon": 0.1}},
            "mixing": {"mixup": {"alpha": 0.3}},
            "optimizer": {"weight_decay": {"value": 0.0005}},
            "provenance": provenance or {},
        }
    )


def test_show_lists_every_trick_by_family_with_values() -> None:
    recipe = _recipe()
    text = show_recipe(recipe)
    for name in recipe.tricks_on():
        assert name in text
    for family in ("[schedule]", "[loss]", "[mixing]", "[optimizer]"):
        assert family in text
    assert "epsilon=0.1" in text and "alpha=0.3" in text and "min_lr_factor=0.01" in text
    assert "15 epochs, batch 64, lr 0.02, seed 1" in text and "cnn-small" in text
    assert "digits" in text
    assert "optimizer: sgd" in text  # the group left unnamed, and what applies
    assert "evidence: none recorded" in text
    assert text.index("[schedule]") < text.index("[loss]") < text.index("[mixing]")


def test_show_prints_the_evidence() -> None:
    text = show_recipe(_recipe(PROVENANCE))
    assert "0.9712 ± 0.0040" in text and "0.9500 ± 0.0050" in text  # val, recipe and baseline
    assert "0.9655 ± 0.0051" in text and "0.9433 ± 0.0062" in text  # test
    assert "3 seeds (0, 1, 2)" in text
    assert "32 trials: 10 complete, 20 pruned, 2 failed" in text
    assert "stopped" not in text  # said only when the time budget cut trials
    budget_cut = json.loads(json.dumps(PROVENANCE))
    budget_cut["search"]["trials"] |= {"pruned": 17, "stopped": 3}
    text = show_recipe(_recipe(budget_cut))
    assert "32 trials: 10 complete, 17 pruned, 2 failed, 3 stopped by the time budget" in text
    assert "150 trial-epochs of 480" in text
    assert "torch 2.4.0" in text and "optuna 5.0.0" in text
    assert "+0.0222" in text


def test_show_baseline() -> None:
    text = show_recipe(Recipe())
    assert "none (this is the baseline)" in text


def test_cli_show(tmp_path: Path, cli) -> None:
    path = _recipe(PROVENANCE).save(tmp_path / "best_recipe.yaml")
    code, out, _ = cli("show", str(path))
    assert code == 0
    assert str(path) in out and "label_smoothing" in out and "0.9655 ± 0.0051" in out


@pytest.mark.parametrize(
    ("argv", "what"),
    [
        (["show", "{tmp}/nope.yaml"], "{tmp}/nope.yaml"),
        (["ablate", "--recipe", "{tmp}/nope.yaml"], "{tmp}/nope.yaml"),
        (["export", "{tmp}/nope.yaml", "--to", "json"], "{tmp}/nope.yaml"),
        (["report", "{tmp}/no-run"], "{tmp}/no-run"),
        (["report", "{tmp}"], "{tmp}/study.db"),
    ],
)
def test_cli_errors_are_one_line_naming_the_path(
    tmp_path: Path, cli, argv: list[str], what: str
) -> None:
    code, _, err = cli(*(a.format(tmp=tmp_path) for a in argv))
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert what.format(tmp=tmp_path) in err


def test_show_says_the_data_kind_the_threads_and_a_python_model() -> None:
    recipe = Recipe.from_dict(
        {
            "data": {"dataset": "tensors", "kind": "signal"},
            "model": {"name": "python:mymodels.make_net"},
            "runtime": {"threads": 1},
        }
    )
    text = show_recipe(recipe)
    assert "data:   tensors, signal data, val 0.15" in text
    assert "model:  python:mymodels.make_net (a Python model: train it from Python" in text
    assert "seed 0; 1 torch thread(s)" in text
    plain = show_recipe(Recipe())
    assert "image data" not in plain and "thread" not in plain and "Python model" not in plain
