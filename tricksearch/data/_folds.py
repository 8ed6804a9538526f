"""K-fold cross-validation on train + val, for small datasets (``tricksearch search --cv K``).

With a few dozen validation samples, one split's score moves by a whole sample's worth (1/n) at
a time and a real gain hides in that noise. ``cv_fold`` re-splits the pooled train and val
samples into ``folds`` stratified folds (the same for every recipe: deterministic in ``seed``)
and returns fold ``k`` as the val split, the others as train. The test split is never touched.
Standardisation statistics (signals, features) and image mean/std stay those of the original
train split, so every fold sees its inputs on one scale.
"""

from __future__ import annotations

import dataclasses

import torch

from tricksearch.data._splits import DatasetSplits
from tricksearch.errors import ConfigError

__all__ = ["cv_fold", "fold_ids"]


def fold_ids(y: torch.Tensor, folds: int, *, seed: int) -> torch.Tensor:
    """A fold number in ``0..folds-1`` for every sample, stratified by class (each class dealt
    round-robin over the folds after a seeded shuffle)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.empty(len(y), dtype=torch.int64)
    offset = 0
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        ids[members] = (torch.arange(len(members)) + offset) % folds
        offset += len(members)  # the next class starts where this one ended: balanced folds
    return ids


def cv_fold(splits: DatasetSplits, fold: int, folds: int, *, seed: int = 0) -> DatasetSplits:
    """Fold ``fold`` of ``folds`` over train + val (see the module docstring)."""
    if folds < 2:
        raise ConfigError(f"cv: got {folds}, expected an integer >= 2 (the number of folds).")
    if not 0 <= fold < folds:
        raise ConfigError(f"cv fold: got {fold}, expected 0..{folds - 1}.")
    x = torch.cat([splits.x_train, splits.x_val])
    y = torch.cat([splits.y_train, splits.y_val])
    if len(y) < folds:
        raise ConfigError(
            f"cv: got {folds} folds for {len(y)} train + val samples; expected at most "
            f"{len(y)} folds."
        )
    ids = fold_ids(y, folds, seed=seed)
    val, train = ids == fold, ids != fold
    return dataclasses.replace(
        splits,
        name=splits.name,
        x_train=x[train].contiguous(),
        y_train=y[train].contiguous(),
        x_val=x[val].contiguous(),
        y_val=y[val].contiguous(),
        info=splits.info | {"cv": {"fold": fold, "folds": folds, "seed": seed}},
    )
