"""End to end (slow): a search from Python with a user's model factory on 1-D signals given as
tensors. Everything it writes names the model honestly (``python:MODULE.QUALNAME``), says the
data are signals, records the trials' thread count, and the baseline trial is the user's budget
exactly; it resumes from Python with the factory, and the recipe trains again from Python with
the search's seed-0 numbers."""

from __future__ import annotations

import json
import sys

import pytest
import ray.cloudpickle
import torch
from torch import nn

import tricksearch
from tricksearch.recipe import load_recipe

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers can't import tests


def make_net(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes)
    )


def _signals(n: int = 240, length: int = 24):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    t = torch.arange(length, dtype=torch.float32)
    freq = torch.tensor([1.0, 2.0, 4.0])[y]
    x = torch.sin(2 * torch.pi * freq[:, None] * t / length)[:, None] + 0.5 * torch.randn(
        n, 1, length, generator=g
    )
    return 10.0 * x + 3.0, y


def test_a_python_search_on_signals_is_named_honestly_and_resumes_from_python(tmp_path) -> None:
    data = _signals()
    run = tmp_path / "run"
    result = tricksearch.search(
        data,
        make_net,
        space="minimal",
        trials=3,
        epochs=2,
        batch_size=50,
        lr=0.03,
        seeds=1,
        top_k=1,
        out=run,
        quiet=True,
    )
    name = f"python:{__name__}.make_net"
    assert json.loads((run / "search.json").read_text())["model"] == name
    best = load_recipe(run / "best_recipe.yaml")
    assert best.model.name == name and result.best.model.name == name
    assert best.data.kind == "signal" and best.runtime.threads == 1
    assert "kind: signal" in (run / "best_recipe.yaml").read_text()

    import optuna

    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    first = study.trials[0].params  # the enqueued baseline: the user's lr exactly
    assert first["budget.lr"] == 0.03

    # resumed from Python with the factory (the search had finished: its result comes back)
    again = tricksearch.resume(run, data=data, model=make_net, quiet=True)
    assert again.best.model.name == name

    # trained again from Python: the seed-0 numbers of the search's retraining
    prov = best.provenance
    seeds = prov.get("seeds") or [0]
    metrics = tricksearch.train(best, dataset=data, model=make_net, seed=seeds[0], device="cpu")
    assert metrics["val_acc"] == pytest.approx(prov["recipe"]["val_acc"][0], abs=1e-9)
