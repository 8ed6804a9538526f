"""The ablation table: rows, fallbacks, noise rule, files — and real trainings on digits (slow)."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report import _ablation as ab
from tricksearch.report import ablate
from tricksearch.report._ablation import pooled_std

THREE = {
    "data": {"dataset": "digits"},
    "model": {"name": "cnn-small"},
    "budget": {"epochs": 2},
    "loss": {"label_smoothing": {"epsilon": 0.1}},
    "schedule": {"cosine": {}},
    "mixing": {"mixup": {"alpha": 0.2}},
}


def test_pooled_std() -> None:
    a, b = [0.9, 0.92, 0.94], [0.8, 0.81, 0.85]
    expect = math.sqrt((statistics.variance(a) + statistics.variance(b)) / 2)
    assert pooled_std(a, b) == pytest.approx(expect)
    assert pooled_std([0.9], [0.8]) is None
    assert pooled_std([0.9, 0.9], [0.8]) == pytest.approx(0.0)


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Replace training by a score: +0.02 per trick on, + seed noise; record every call."""
    calls: list[tuple[str, int]] = []

    def train(recipe: dict, seed: int, data, device) -> dict:
        r = Recipe.from_dict(recipe)
        calls.append((json.dumps(recipe, sort_keys=True), seed))
        if "flooding" in r.tricks_on() and seed == 1:
            return {"seed": seed, "error": "training diverged", "seconds": 0.0}
        score = 0.8 + 0.02 * len(r.tricks_on()) + 0.001 * seed
        if "label_smoothing" in r.tricks_on():
            score += 0.05
        return {"seed": seed, "val_acc": score, "seconds": 0.01}

    monkeypatch.setattr(ab, "_train_job", train)
    monkeypatch.setattr("tricksearch.engine.load_data", lambda recipe: None)
    return calls


def test_progress_lines_carry_elapsed_and_the_estimate(fake_training, monkeypatch) -> None:
    import itertools

    ticks = itertools.count(0)
    monkeypatch.setattr(ab, "_now", lambda: next(ticks) * 10.0)  # each training: 10 s
    lines: list[str] = []
    ablate(Recipe.from_dict(THREE), seeds=3, progress=lines.append)
    assert len(lines) == 24
    assert lines[0].startswith("[1/24] recipe, seed 0: val_acc ")
    assert lines[0].endswith("(0.0s; 0:10 elapsed, ~3:50 left)")  # 10 s each, 23 to go
    assert lines[11].startswith("[12/24] ") and lines[11].endswith("; 2:00 elapsed, ~2:00 left)")
    assert lines[-1].startswith("[24/24] ") and lines[-1].endswith("(0.0s; 4:00 elapsed)")


def test_rows_deltas_and_noise(fake_training) -> None:
    lines: list[str] = []
    res = ablate(Recipe.from_dict(THREE), seeds=3, progress=lines.append)
    labels = [r.label for r in res.rows]
    assert labels == [
        "recipe",
        "baseline",
        "− cosine → constant",
        "+ cosine",
        "− label_smoothing",
        "+ label_smoothing",
        "− mixup",
        "+ mixup",
    ]
    assert res.seeds == [0, 1, 2] and res.trainings == 8 * 3
    assert len(lines) == 24 and lines[0].startswith("[1/24]") and "val_acc" in lines[0]
    rec = res.row("recipe")
    assert rec.mean == pytest.approx(0.8 + 0.06 + 0.05 + 0.001)
    assert rec.std == pytest.approx(0.001)
    assert rec.versus == "baseline" and rec.delta == pytest.approx(0.11)
    minus_ls = res.row("− label_smoothing")
    assert minus_ls.versus == "recipe" and minus_ls.delta == pytest.approx(-0.07)
    assert minus_ls.within_noise is False
    plus_cos = res.row("+ cosine")
    assert plus_cos.versus == "baseline" and plus_cos.delta == pytest.approx(0.02)
    assert res.row("− cosine").fallback == "constant"
    # Every recipe was built from the one given: same data, model, budget.
    for row in res.rows:
        assert row.recipe["budget"]["epochs"] == 2 and row.recipe["model"]["name"] == "cnn-small"


def test_within_noise_when_delta_is_small(monkeypatch: pytest.MonkeyPatch) -> None:
    def train(recipe: dict, seed: int, data, device) -> dict:
        return {"seed": seed, "val_acc": 0.9 + 0.01 * seed, "seconds": 0.0}

    monkeypatch.setattr(ab, "_train_job", train)
    res = ablate(Recipe.from_dict(THREE), seeds=2, data=object())
    assert all(r.within_noise for r in res.rows if r.delta is not None)
    assert "within noise" in res.table()


def test_identical_configurations_are_trained_once(fake_training) -> None:
    one = {**THREE, "schedule": {}, "mixing": {}}
    res = ablate(Recipe.from_dict(one), seeds=2)
    # recipe == "+ label_smoothing", baseline == "− label_smoothing": 2 configs x 2 seeds.
    assert res.trainings == 4 and len(fake_training) == 4
    assert res.row("recipe").val_acc == res.row("+ label_smoothing").val_acc


def test_group_members_fall_back_to_the_group_default(fake_training) -> None:
    raw = {**THREE, "optimizer": {"adamw": {}}, "loss": {}, "mixing": {}}
    res = ablate(Recipe.from_dict(raw), seeds=1)
    labels = [r.label for r in res.rows]
    assert "− adamw → sgd" in labels and "− cosine → constant" in labels
    assert "adamw" not in res.row("− adamw").recipe.get("optimizer", {})
    table = res.table()
    assert "cosine → constant" in table and "falls back to the group's default" in table
    assert "n/a (1 seed)" in table  # one seed: no std, no noise verdict


def test_failed_seeds_are_reported_not_fatal(fake_training) -> None:
    raw = {**THREE, "loss": {"flooding": {"level": 0.05}}}
    res = ablate(Recipe.from_dict(raw), seeds=2)
    row = res.row("+ flooding")
    assert row.seeds == [0] and row.failed == [{"seed": 1, "error": "training diverged"}]
    assert "1/2" in res.table()


def test_table_files_and_rule(fake_training, tmp_path: Path) -> None:
    res = ablate(Recipe.from_dict(THREE), seeds=2)
    text = res.table()
    flat = " ".join(text.split())
    assert "pooled sample standard deviation" in flat and "not a significance test" in flat
    header = next(line for line in text.splitlines() if line.startswith("row"))
    assert "Δ" in header and "noise" in header
    json_path, md_path = res.save(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["seeds"] == [0, 1] and len(data["rows"]) == 8
    assert {"label", "mean", "std", "delta", "within_noise", "val_acc"} <= set(data["rows"][0])
    assert md_path.read_text().startswith("# ablation of")


def test_bad_seeds_refused() -> None:
    with pytest.raises(ConfigError, match="seeds: got 0, expected an integer >= 1"):
        ablate(Recipe(), seeds=0)


@pytest.mark.slow
def test_ablation_on_digits_three_tricks_two_seeds() -> None:
    lines: list[str] = []
    res = ablate(Recipe.from_dict(THREE), seeds=2, progress=lines.append, device="cpu")
    assert len(res.rows) == 8 and res.trainings == 16 and len(lines) == 16
    for trick in ("label_smoothing", "cosine", "mixup"):
        minus = next(r for r in res.rows if r.label.startswith(f"− {trick}"))
        plus = res.row(f"+ {trick}")
        for row in (minus, plus):
            assert len(row.val_acc) == 2 and row.std is not None and row.std >= 0
            assert row.delta is not None and row.pooled_std is not None
            assert 0.0 <= row.mean <= 1.0
    assert res.row("− cosine").label == "− cosine → constant"
    print(res.table())


@pytest.mark.slow
def test_cli_ablate_parallel_with_ray(tmp_path: Path, cli) -> None:
    raw = {**THREE, "schedule": {}, "mixing": {}}
    path = Recipe.from_dict(raw).save(tmp_path / "recipe.yaml")
    code, out, _ = cli("ablate", "--recipe", str(path), "--seeds", "2", "--parallel")
    assert code == 0
    assert "[4/4]" in out and "− label_smoothing" in out and "pooled sample" in out
    data = json.loads((tmp_path / "ablation.json").read_text())
    assert data["source"] == str(path)
    assert all(len(r["val_acc"]) == 2 for r in data["rows"])
    assert (tmp_path / "ablation.md").is_file()
