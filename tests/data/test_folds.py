"""K-fold splits on train + val (``--cv K``): disjoint, complete, stratified, deterministic."""

from __future__ import annotations

import pytest
import torch

from tricksearch.data import cv_fold, dataset_from_tensors
from tricksearch.errors import ConfigError


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (90, 1, 6, 6), dtype=torch.uint8, generator=gen)
    y = torch.arange(90) % 3
    return dataset_from_tensors(x, y, val_fraction=0.2, test_fraction=0.2)


def _keys(x: torch.Tensor) -> set[bytes]:
    return {bytes(row.flatten().tolist()) for row in x}


def test_folds_cover_train_and_val_once_and_leave_test_alone() -> None:
    data = _data()
    pooled = _keys(torch.cat([data.x_train, data.x_val]))
    vals = [cv_fold(data, k, 5, seed=1) for k in range(5)]
    seen: set[bytes] = set()
    for fold in vals:
        assert not _keys(fold.x_val) & seen  # disjoint val folds
        seen |= _keys(fold.x_val)
        assert _keys(fold.x_train) | _keys(fold.x_val) == pooled
        assert not _keys(fold.x_train) & _keys(fold.x_val)
        assert torch.equal(fold.x_test, data.x_test) and torch.equal(fold.y_test, data.y_test)
        counts = torch.bincount(fold.y_val, minlength=3)
        assert counts.max() - counts.min() <= 1  # stratified
    assert seen == pooled


def test_folds_are_deterministic_and_refuse_bad_counts() -> None:
    data = _data()
    a, b = cv_fold(data, 2, 4, seed=3), cv_fold(data, 2, 4, seed=3)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(cv_fold(data, 2, 4, seed=4).x_val, a.x_val)
    with pytest.raises(ConfigError, match=r"cv: got 1, expected an integer >= 2"):
        cv_fold(data, 0, 1)
    with pytest.raises(ConfigError, match=r"cv fold: got 4, expected 0\.\.3"):
        cv_fold(data, 4, 4)
