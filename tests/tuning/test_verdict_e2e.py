"""End to end (slow, real Ray Tune + OptunaSearch + ASHA, real trainings): the verdict on
planted effects, and a user's own model on 1-D signals through the default space.

- a planted harmful recipe (flooding far above any loss the model can reach): the baseline is
  exported and the verdict says so;
- a planted strongly helping trick (AdamW where the baseline's SGD learning rate is far too
  small to train in 3 epochs): better beyond noise, the interval above 0, the minimal recipe
  keeps it;
- a Conv1d + LazyLinear factory on float signals with the `default` space: the pre-flight and the
  data kind leave out what cannot work (each with a note), EMA and the class-prior bias stay, and
  no trial fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import ray.cloudpickle
import torch
from optuna.trial import TrialState
from torch import nn

import tricksearch
from tricksearch.spaces import load_space

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers can't import tests


def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def _study(run: Path):
    import optuna

    return optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")


def test_a_planted_harmful_recipe_leaves_the_baseline_as_the_answer(tmp_path) -> None:
    space = _space(
        tmp_path,
        "include: [flooding]\nbudget: {lr: 0.1, batch_size: 128}\n"
        "tricks:\n  flooding: {switch: on, level: 3.0}\n",
    )
    run = tmp_path / "run"
    result = tricksearch.search(
        "digits",
        "cnn-small",
        space,
        trials=2,
        epochs=3,
        lr=0.1,
        seeds=3,
        top_k=1,
        tuned_baseline=0,
        out=run,
        quiet=True,
    )
    summary = json.loads((run / "results.json").read_text())["summary"]
    verdict = summary["verdict"]
    assert (
        verdict["exported"] == "baseline" and verdict["summary"] == "no trick helped beyond noise"
    )
    assert verdict["test"]["verdict"] in ("worse", "not distinguishable")
    assert verdict["selection"]["verdict"] == "worse" and verdict["selection"]["high"] < 0
    assert result.best.tricks_on() == {} and (run / "best_recipe.yaml").is_file()
    assert summary["leader"]["tricks"] == ["flooding"]
    assert summary["recipe"]["test_acc"] == summary["baseline"]["test_acc"]


def test_a_planted_helping_trick_is_better_beyond_noise(tmp_path, capsys) -> None:
    space = _space(
        tmp_path,
        "include: [adamw]\nbudget: {lr: 0.003, batch_size: 64}\ntricks:\n  adamw: {switch: on}\n",
    )
    run = tmp_path / "run"
    result = tricksearch.search(
        "digits",
        "cnn-small",
        space,
        trials=2,
        epochs=3,
        lr=0.003,
        batch_size=64,
        seeds=3,
        top_k=1,
        tuned_baseline=0,
        out=run,
    )
    summary = result.summary
    test = summary["verdict"]["test"]
    assert summary["verdict"]["summary"] == "better beyond noise"
    assert test["verdict"] == "better beyond noise" and test["low"] > 0 and test["n"] == 3
    assert "adamw" in result.best.tricks_on()
    # the minimal recipe cannot drop the one trick that matters
    assert summary["minimal"]["tricks"] == ["adamw"] and summary["minimal"]["removed"] == []
    out = capsys.readouterr().out
    assert "verdict: better beyond noise" in out and "95 % CI" in out


def make_net(in_channels: int, num_classes: int) -> nn.Module:
    """A user's 1-D CNN with a lazily initialised classifier."""
    return nn.Sequential(
        nn.Conv1d(in_channels, 8, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 5, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(num_classes),
    )


def _signals(n: int = 300, length: int = 32):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 3
    t = torch.arange(length, dtype=torch.float32)
    freq = torch.tensor([1.0, 2.0, 3.0])[y]
    x = torch.sin(2 * torch.pi * freq[:, None] * t / length)[:, None]
    x = x + 0.6 * torch.randn(n, 1, length, generator=g)
    cut = 240
    return 5.0 * x[:cut] + 2.0, y[:cut], 5.0 * x[cut:] + 2.0, y[cut:]


def test_a_user_conv1d_lazy_model_on_signals_wastes_no_trial(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    result = tricksearch.search(
        _signals(),
        make_net,
        "default",
        trials=10,
        epochs=2,
        seeds=2,
        top_k=2,
        tuned_baseline=0,
        minimal=False,
        out=run,
        sampler="random",
        batch_size=32,
    )
    out = capsys.readouterr().out
    failed = [t for t in _study(run).trials if t.state == TrialState.FAIL]
    assert failed == [], [t.user_attrs for t in failed]
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    searched = set(load_space("default").tricks_included())
    assert {"ema", "bias_prior"} <= searched
    image_only = {
        "hflip",
        "random_crop",
        "cutout",
        "random_erasing",
        "cutmix",
        "ricap",
        "autoaugment",
        "randaugment",
        "trivialaugment",
        "augmix",
        "multiscale",
    }
    for trick in image_only & searched:
        assert any(n.startswith(f"note: {trick}") and "left out" in n for n in notes), trick
    for trick in ("ema", "bias_prior"):
        assert not any(n.startswith(f"note: {trick}:") for n in notes), notes
    assert "pre-flight:" in out and " tricks checked in " in out
    assert result.best.data.kind == "signal"
    assert result.summary["search"]["trials"]["fail"] == 0


def test_cv_retrains_every_seed_on_k_folds(tmp_path) -> None:
    space = _space(
        tmp_path,
        "include: [label_smoothing]\nbudget: {lr: 0.1, batch_size: 128}\n"
        "tricks:\n  label_smoothing: {switch: on, epsilon: 0.1}\n",
    )
    result = tricksearch.search(
        "digits",
        "cnn-small",
        space,
        trials=1,
        epochs=2,
        lr=0.1,
        seeds=2,
        top_k=1,
        tuned_baseline=0,
        minimal=False,
        cv=3,
        out=tmp_path / "run",
        quiet=True,
    )
    rows = [r for c in result.candidates for r in c["rows"]]
    assert rows and all(len(r["folds"]) == 3 for r in rows)
    for r in rows:
        assert r["val_acc"] == pytest.approx(sum(f["val_acc"] for f in r["folds"]) / 3)
    assert result.summary["small_data"]["cv"] == 3
    assert json.loads((tmp_path / "run" / "search.json").read_text())["cv"] == 3
