"""A training stopped after an epoch and resumed from its state gives the numbers of a training
that was never stopped — for every trick (each one alone), with the state going through a file.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tricksearch.data import DatasetSplits
from tricksearch.engine import fit
from tricksearch.engine.state import load_state, save_state
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.tricks import registered_tricks

TRICKS = registered_tricks()


def _recipe(name: str) -> Recipe:
    spec = TRICKS[name]
    params: dict = {"teacher": "cnn-small"} if spec.needs_teacher else {}
    if name == "self_training":
        params = {"threshold": 0.5, "rounds": 2}  # labels at steps 3 and 6 of 9
    if name == "fixmatch":
        params = {"threshold": 0.5, "mu": 2}
    if name in ("co_training", "tri_training"):
        params = {"threshold": 0.5}
    if name == "low_precision":
        params = {"dtype": "bf16"}  # fp16 autocast is refused on the CPU
    if name in ("mixup", "cutmix", "ricap"):
        params = {"prob": 1.0}
    if name == "group_norm":
        params = {"groups": 8}  # resnet-cifar's stem has 16 channels
    model = "resnet-cifar" if spec.needs_residual or spec.model_option else "cnn-small"
    base = Recipe.from_dict(
        {"model": {"name": model}, "budget": {"epochs": 3, "batch_size": 32, "lr": 0.05}}
    )
    return base.with_trick(name, params)


class _Killed(Exception):
    """Stands for the worker dying right after it saved the state of an epoch."""


def _split_run(recipe: Recipe, data: DatasetSplits, tmp_path: Path, stop_after: int):
    """Train until the state of epoch ``stop_after`` is on disk, die, then a new fit from it."""
    path = tmp_path / "state.pt"

    def keep(metrics, state) -> None:
        save_state(state, path)
        if metrics.epoch == stop_after:
            raise _Killed

    with pytest.raises(_Killed):
        fit(recipe, data=data, on_state=keep)
    # Scramble every generator in between: the resumed run must bring its own back.
    torch.manual_seed(12345), random.seed(7), np.random.seed(3)
    return fit(recipe, data=data, resume=load_state(path), evaluate_test=True)


@pytest.mark.parametrize("name", list(TRICKS))
def test_resumed_training_matches_uninterrupted(
    name: str, small, small_with_pool, tmp_path: Path
) -> None:
    recipe = _recipe(name)
    data = small_with_pool if TRICKS[name].needs_unlabeled else small
    whole = fit(recipe, data=data, evaluate_test=True)
    # self-training: stopped after its first pseudo-labels (step 3), so they are in the state
    stop = 2 if name == "self_training" else 1
    resumed = _split_run(recipe, data, tmp_path, stop_after=stop)
    assert [m.epoch for m in resumed.history] == [1, 2, 3]
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert (a.train_loss, a.val_acc, a.val_loss, a.lr) == (
            b.train_loss,
            b.val_acc,
            b.val_loss,
            b.lr,
        )
    assert (whole.val_acc, whole.test_acc) == (resumed.val_acc, resumed.test_acc)
    for (k, v), (_, w) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k


def test_snapshot_ensemble_members_survive(small, tmp_path: Path) -> None:
    """Snapshots taken before the stop are members of the final ensemble after it."""
    recipe = Recipe.from_dict({"budget": {"epochs": 4, "batch_size": 32, "lr": 0.05}}).with_trick(
        "cosine_restarts", {"t0_epochs": 1, "snapshot_ensemble": True}
    )
    whole = fit(recipe, data=small, evaluate_test=True)
    resumed = _split_run(recipe, small, tmp_path, stop_after=3)
    assert (whole.val_acc, whole.val_loss, whole.test_acc) == (
        resumed.val_acc,
        resumed.val_loss,
        resumed.test_acc,
    )


def test_a_state_of_another_model_is_refused(small, short_recipe: Recipe) -> None:
    states = []
    fit(short_recipe, data=small, on_state=lambda m, s: states.append(s))
    assert [s["epoch"] for s in states] == [1, 2]
    other = short_recipe.with_changes(model={"name": "mlp"})
    with pytest.raises(ConfigError, match="does not fit this recipe and model"):
        fit(other, data=small, resume=states[0])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_damaged_state_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "state.pt"
    bad.write_bytes(b"\x80\x04not a torch file")
    with pytest.raises(ConfigError, match=r"training state .*state\.pt.*cannot be read"):
        load_state(bad)
    bad.write_bytes(b"")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_state(bad)


def test_state_survives_weights_only_load_with_user_model(small, short_recipe, tmp_path) -> None:
    """A user's model (a factory) resumes too; the file holds tensors and plain values only."""

    def factory(in_channels: int, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 64, num_classes))

    states = []
    whole = fit(short_recipe, model=factory, data=small, on_state=lambda m, s: states.append(s))
    path = save_state(states[0], tmp_path / "s.pt")
    resumed = fit(short_recipe, model=factory, data=small, resume=load_state(path))
    assert whole.val_acc == resumed.val_acc
    assert [m.train_loss for m in whole.history] == [m.train_loss for m in resumed.history]
