"""``tricksearch.search`` / ``tricksearch.resume`` turn Python objects into a search's settings:
a factory is recorded by its qualified name, tensors as the dataset ``"tensors"`` (the search
itself is replaced here: what reaches it is checked, nothing is tuned)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import tricksearch
from tricksearch.data import DatasetSplits
from tricksearch.tuning import _runner


def make_net(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


@pytest.fixture
def calls(monkeypatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def fake(config, **kwargs):
        seen.append({"config": config, **kwargs})
        return "result"

    monkeypatch.setattr(_runner, "run_search", fake)
    return seen


def _signals(n: int = 60):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 16, generator=g), torch.arange(n) % 2


def test_search_records_a_factory_by_its_name(calls, tmp_path) -> None:
    x, y = _signals()
    assert tricksearch.search((x, y), make_net, out=tmp_path / "run", val_fraction=0.2) == "result"
    call = calls[0]
    assert call["config"].model == f"python:{__name__}.make_net"
    assert call["config"].dataset == "tensors"
    assert call["model_factory"] is make_net
    data = call["data"]
    assert isinstance(data, DatasetSplits) and data.kind == "signal"
    assert len(data.y_val) == 12  # split as the settings say


def test_search_by_name_passes_names(calls, tmp_path) -> None:
    tricksearch.search("digits", "cnn-small", out=tmp_path / "run")
    call = calls[0]
    assert call["config"].model == "cnn-small" and call["config"].dataset == "digits"
    assert call["data"] is None and call["model_factory"] is None


def test_resume_takes_the_factory_and_the_same_tensors(calls, tmp_path) -> None:
    from tricksearch.tuning import SearchConfig

    run = tmp_path / "run"
    run.mkdir()
    SearchConfig(
        dataset="tensors", model=f"python:{__name__}.make_net", val_fraction=0.2, out=str(run)
    ).save(run / "search.json")
    x, y = _signals()
    tricksearch.resume(run, data=(x, y), model=make_net)
    call = calls[0]
    assert call["resume"] is True and call["model_factory"] is make_net
    assert len(call["data"].y_val) == 12  # split again with the search's own fractions


def test_search_and_resume_split_tensors_with_the_pool_and_the_labels_kept(calls, tmp_path) -> None:
    x, y = _signals(200)
    pool = torch.randn(9, 1, 16)
    tricksearch.search((x, y), make_net, out=tmp_path / "run", labeled_fraction=0.5, unlabeled=pool)
    config, data = calls[0]["config"], calls[0]["data"]
    assert config.labeled_fraction == 0.5 and config.unlabeled is None  # an array is not a path
    assert data.unlabeled_count == 9 + len(data.y_train)  # half of train's labels hidden
    (tmp_path / "run").mkdir()
    config.save(tmp_path / "run" / "search.json")
    tricksearch.resume(tmp_path / "run", data=(x, y), model=make_net, unlabeled=pool)
    again = calls[1]["data"]
    assert torch.equal(again.x_unlabeled, data.x_unlabeled)
    assert torch.equal(again.y_train, data.y_train)
