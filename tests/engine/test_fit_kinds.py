"""The data kind reaches every model build, and a recipe carries it: ``cnn-small`` on signals is
refused clearly; a recipe made for signals refuses images; a run on signals writes
``kind: signal``. And the recipe's torch thread count makes its numbers reproducible."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import tricksearch
from tricksearch.data import dataset_from_tensors
from tricksearch.engine import fit, make_model
from tricksearch.errors import ConfigError, DataError
from tricksearch.models import probe_model
from tricksearch.recipe import Recipe, load_recipe


def make_net(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def _signals(n: int = 120, length: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, length, generator=g) + 2.0 * y[:, None, None].float()
    return x, y


@pytest.fixture(scope="module")
def signals():
    return dataset_from_tensors(*_signals())


def test_make_model_refuses_an_image_model_on_signals(signals) -> None:
    with pytest.raises(ConfigError, match="'cnn-small' works on image data, not signal data"):
        make_model(Recipe(), signals)
    assert make_model(Recipe.from_dict({"model": {"name": "cnn1d"}}), signals) is not None


def test_probe_refuses_an_image_model_on_signals(signals) -> None:
    with pytest.raises(ConfigError, match="not signal data"):
        probe_model(
            "cnn-small",
            in_channels=signals.channels,
            num_classes=signals.num_classes,
            image_size=signals.image_size,
            base_options={},
            probes={},
            kind=signals.kind,
        )


def test_train_on_signals_with_an_image_model_is_one_clear_error() -> None:
    with pytest.raises(ConfigError) as info:
        tricksearch.train(dataset=_signals(), model="cnn-small", epochs=1, device="cpu")
    assert "model 'cnn-small' works on image data, not signal data" in str(info.value)
    assert "cnn1d" in str(info.value)


def test_fit_refuses_a_recipe_made_for_other_data(signals, digits) -> None:
    recipe = Recipe.from_dict({"data": {"kind": "signal"}, "budget": {"epochs": 1}})
    with pytest.raises(DataError, match="the recipe was made for signal data"):
        fit(recipe, data=digits, device="cpu")


def test_a_run_on_signals_records_its_kind(tmp_path) -> None:
    metrics = tricksearch.train(
        {"budget": {"epochs": 1, "batch_size": 32}},
        dataset=_signals(),
        model="cnn1d",
        device="cpu",
        out=tmp_path / "run",
    )
    assert metrics["val_acc"] > 0
    recipe = load_recipe(tmp_path / "run" / "recipe.yaml")
    assert recipe.data.kind == "signal"
    assert "kind: signal" in (tmp_path / "run" / "recipe.yaml").read_text()


def test_a_factory_is_recorded_by_its_name(tmp_path) -> None:
    tricksearch.train({"budget": {"epochs": 1}}, model=make_net, device="cpu", out=tmp_path / "run")
    recipe = load_recipe(tmp_path / "run" / "recipe.yaml")
    assert recipe.model.name == f"python:{__name__}.make_net"
    assert not (tmp_path / "run" / "model.pt").exists()
    # the recipe names a factory: without it, one clear error before any data is read
    with pytest.raises(ConfigError, match=r"tricksearch.train\(recipe, model=make_net\)"):
        tricksearch.train(recipe)
    again = tricksearch.train(recipe, model=make_net, device="cpu")
    assert again["val_acc"] > 0


def test_threads_are_set_for_the_run_and_restored(short_recipe) -> None:
    before = torch.get_num_threads()
    seen: list[int] = []
    recipe = short_recipe.with_changes(runtime={"threads": 1})
    metrics = tricksearch.train(
        recipe, device="cpu", epochs=1, on_epoch=lambda m: seen.append(torch.get_num_threads())
    )
    assert seen == [1] and metrics["threads"] == 1
    assert torch.get_num_threads() == before
    tricksearch.train(
        recipe,
        threads=2,
        device="cpu",
        epochs=1,
        on_epoch=lambda m: seen.append(torch.get_num_threads()),
    )
    assert seen == [1, 2] and torch.get_num_threads() == before


def test_training_from_a_recipe_with_threads_is_reproduced_in_a_fresh_process(tmp_path) -> None:
    """The same recipe (threads: 1) trained here and by `tricksearch train --recipe` in a fresh
    process with torch's default thread count and no OMP/MKL variable: identical numbers."""
    recipe = Recipe.from_dict(
        {"budget": {"epochs": 2, "batch_size": 64, "lr": 0.05}, "runtime": {"threads": 1}}
    )
    path = recipe.save(tmp_path / "recipe.yaml")
    here = tricksearch.train(recipe, device="cpu")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMP_", "MKL_", "OPENBLAS_", "TORCH_NUM"))
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tricksearch",
            "train",
            "--recipe",
            str(path),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "with 1 torch thread(s)" in proc.stdout
    there = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert there["threads"] == 1
    assert there["val_acc"] == here["val_acc"] and there["test_acc"] == here["test_acc"]
    assert [h["train_loss"] for h in there["history"]] == [h["train_loss"] for h in here["history"]]
