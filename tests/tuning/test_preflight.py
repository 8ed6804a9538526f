"""The pre-flight (before Ray): the baseline and each trick alone trained one step on a tiny copy of
the real data; what raises is left out of the space with a note."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tricksearch.data import DatasetSplits, dataset_from_tensors
from tricksearch.engine import TrainingDiverged, fit
from tricksearch.errors import ConfigError
from tricksearch.spaces import SearchSpace, load_space
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._preflight import (
    EVAL_SAMPLES,
    TRAIN_SAMPLES,
    preflight,
    tiny_splits,
    trick_recipe,
)
from tricksearch.tuning._prepare import Prepared, prepare


def conv1d_net(in_channels: int, num_classes: int) -> nn.Module:
    """A user's 1-D CNN ending in a lazily initialised classifier (issue 9)."""
    return nn.Sequential(
        nn.Conv1d(in_channels, 8, 5), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes)
    )


def _signals(n: int = 300, length: int = 64) -> DatasetSplits:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, length, generator=g) + y[:, None, None].float()
    return dataset_from_tensors(x, y)


def _prepared(tmp_path: Path, data: DatasetSplits | None, factory, space: str = "default"):
    """What ``prepare`` gives before its pre-flight, with the space fitted to the data as the
    search does (the pre-flight itself is what these tests call)."""
    from unittest import mock

    from tricksearch.tuning import _preflight

    config = SearchConfig(
        dataset="digits" if data is None else "tensors", space=space, out=str(tmp_path / "run")
    )
    skipped = mock.Mock(side_effect=lambda space, *a, **k: SimpleNamespace(space=space, line=""))
    with mock.patch.object(_preflight, "preflight", skipped):
        prep = prepare(config, data=data, model_factory=factory)
    d = prep.data
    fitted = prep.space.for_data(d.kind, d.image_size if d.kind == "image" else None)
    return prep, fitted


def _trains(prep: Prepared, space: SearchSpace, name: str) -> None:
    """Train trick ``name`` of ``space`` alone one step, as the pre-flight does (raises if not)."""
    small = tiny_splits(prep.data)
    probe = prep.base.with_changes(
        budget=prep.base.budget.to_dict() | {"epochs": 1, "batch_size": TRAIN_SAMPLES}
    )
    recipe = trick_recipe(probe, space.tricks[name])
    try:
        fit(recipe, model=prep.model_factory, data=small, device=prep.device)
    except TrainingDiverged:
        pass


def test_user_conv1d_with_lazy_linear_on_signals_keeps_ema_and_bias_prior(tmp_path) -> None:
    prep, space = _prepared(tmp_path, _signals(), conv1d_net)
    out = io.StringIO()
    result = preflight(space, prep.base, prep.data, prep.model_factory, prep.device, out=out)
    kept = result.space.tricks_included()
    assert {"ema", "bias_prior"} <= set(kept)  # the lazy classifier is materialised first
    assert result.checked == space.tricks_included()
    for name in kept:  # every trick left in the space trains
        _trains(prep, result.space, name)
    # every trick of the preset that the search cannot switch on is named in a note with a reason
    gone = set(load_space("default").tricks_included()) - set(kept)
    assert gone  # image augmentations, residual-only tweaks, options the model does not take
    for name in gone:
        notes = [n for n in result.space.notes if n.split(":")[0].split(" ")[0] == name]
        assert notes and all("left out" in n and len(n) > len(name) + 12 for n in notes), name
    assert out.getvalue().startswith(f"pre-flight: {len(result.checked)} tricks checked in ")
    assert out.getvalue().rstrip().endswith(", 0 left out")
    assert result.seconds < 30


def test_a_trick_that_raises_is_left_out_with_its_first_line(tmp_path, monkeypatch) -> None:
    from tricksearch.tricks import loss

    def broken(plan, params):
        raise RuntimeError("planted: label smoothing is broken here\nsecond line")

    monkeypatch.setitem(loss.BUILDERS, "label_smoothing", broken)
    prep, space = _prepared(tmp_path, None, None, space="regularization")
    assert "label_smoothing" in space.tricks_included()
    result = preflight(space, prep.base, prep.data, prep.model_factory, prep.device)
    assert result.left_out == {
        "label_smoothing": "RuntimeError: planted: label smoothing is broken here"
    }
    note = "label_smoothing: left out: RuntimeError: planted: label smoothing is broken here"
    assert result.notes == [note]
    assert note in result.space.notes
    assert "label_smoothing" not in result.space.tricks
    assert set(result.space.tricks) == set(space.tricks) - {"label_smoothing"}
    assert result.line.endswith(", 1 left out")
    assert space.tricks["label_smoothing"]  # the space given is not changed


def test_every_group_member_is_checked(tmp_path) -> None:
    from tricksearch.spaces import exclusive_groups

    prep, space = _prepared(tmp_path, None, None)
    result = preflight(space, prep.base, prep.data, prep.model_factory, prep.device)
    members = {m for ms in exclusive_groups().values() for m in ms if m in space.tricks}
    assert members and members <= set(result.checked)
    assert result.left_out == {}  # cnn-small on digits: everything the space kept trains


def test_a_model_that_cannot_train_on_the_data_is_one_clear_error(tmp_path) -> None:
    class Wants4d(nn.Module):
        def __init__(self, in_channels: int, num_classes: int) -> None:
            super().__init__()
            self.fc = nn.LazyLinear(num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.ndim != 4:
                raise ValueError(f"expected 4D input (got {x.ndim}D input)\ntraceback noise")
            return self.fc(x.flatten(1))

    data = _signals()
    base_prep, space = _prepared(tmp_path, data, conv1d_net)
    with pytest.raises(ConfigError) as err:
        preflight(space, base_prep.base, data, Wants4d, "cpu")
    message = str(err.value)
    assert "cannot train on this data" in message and "Wants4d" in message
    assert message.endswith("ValueError: expected 4D input (got 3D input)")
    assert "\n" not in message


def test_distillation_builds_its_teacher_without_caching_it(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TRICKSEARCH_CACHE", str(cache))
    space_file = tmp_path / "space.yaml"
    space_file.write_text("include: [distillation]\ntricks:\n  distillation: {teacher: mlp}\n")
    prep, space = _prepared(tmp_path, None, None, space=str(space_file))
    result = preflight(space, prep.base, prep.data, prep.model_factory, prep.device)
    assert result.checked == ["distillation"] and result.left_out == {}
    assert not cache.exists()  # nothing the real search would find
    assert os.environ["TRICKSEARCH_CACHE"] == str(cache)


def test_a_target_gpu_missing_here_checks_on_the_cpu(tmp_path, monkeypatch) -> None:
    prep, _ = _prepared(tmp_path, None, None)
    space = SearchSpace({"low_precision": {}})  # searches fp16 too: only a GPU runs it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = preflight(space, prep.base, prep.data, None, "cuda")
    assert result.left_out == {} and result.device == "cpu"
    assert result.space == space  # fp16 kept for the GPU trials
    assert "on cpu (no cuda here)" in result.line


def test_tiny_splits_spread_over_each_split() -> None:
    data = _signals(n=400)
    small = tiny_splits(data)
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (
        TRAIN_SAMPLES,
        EVAL_SAMPLES,
        EVAL_SAMPLES,
    )
    assert small.kind == data.kind and small.num_classes == data.num_classes
    assert torch.equal(small.x_train[0], data.x_train[0])
    assert torch.equal(small.x_train[-1], data.x_train[-1])
    sorted_y = torch.sort(data.y_train).values  # a split sorted by class keeps every class
    tiny = tiny_splits(dataclasses.replace(data, y_train=sorted_y))
    assert set(tiny.y_train.tolist()) == set(sorted_y.tolist())
