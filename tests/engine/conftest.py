"""Fixtures of the engine tests."""

from __future__ import annotations

import dataclasses

import pytest

from tricksearch.data import DatasetSplits


@pytest.fixture(scope="module")
def small(digits: DatasetSplits) -> DatasetSplits:
    """digits cut to 96 train / 48 val images: three epochs of a trick in a fraction of a second."""
    return dataclasses.replace(
        digits,
        x_train=digits.x_train[:96],
        y_train=digits.y_train[:96],
        x_val=digits.x_val[:48],
        y_val=digits.y_val[:48],
        info=dict(digits.info),
    )


@pytest.fixture(scope="module")
def small_with_pool(small: DatasetSplits, digits: DatasetSplits) -> DatasetSplits:
    """``small`` with 160 other train images as its unlabelled pool (the semi tricks)."""
    return dataclasses.replace(small, x_unlabeled=digits.x_train[96:256], info=dict(small.info))
