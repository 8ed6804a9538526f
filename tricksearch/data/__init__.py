"""Datasets and the device-resident loader.

``load_dataset(name)`` reads a registered dataset (``list_datasets()``), an ImageFolder tree
(``imagefolder:PATH``) or an ``.npz`` file (``npz:PATH``) and splits it into train / val / test;
``dataset_from_tensors`` does the same for arrays in memory; both take an unlabelled pool
(``unlabeled`` / ``x_unlabeled``) and ``labeled_fraction`` (keep that stratified fraction of the
train labels, the other train samples join the pool). Data comes in three kinds
(``DATA_KINDS``, ``DatasetSplits.kind``): images (``uint8``), 1-D signals ``[N, C, L]`` and feature
vectors ``[N, F]`` (float, standardised on the train split). ``make_loader`` serves batches from
the device (airbench style); ``batch_flip`` / ``batch_crop`` augment whole image batches there;
``to_float`` turns a stored batch into the model's input.
"""

from __future__ import annotations

from tricksearch.data._folds import cv_fold
from tricksearch.data._kinds import DATA_KINDS, reconcile_kind
from tricksearch.data._registry import (
    clear_dataset_cache,
    dataset_from_tensors,
    list_datasets,
    load_dataset,
)
from tricksearch.data._splits import DatasetSplits
from tricksearch.data.loader import (
    DeviceLoader,
    StreamingLoader,
    batch_crop,
    batch_flip,
    epoch_permutation,
    make_loader,
    to_float,
)

__all__ = [
    "DATA_KINDS",
    "DatasetSplits",
    "DeviceLoader",
    "StreamingLoader",
    "batch_crop",
    "batch_flip",
    "clear_dataset_cache",
    "cv_fold",
    "dataset_from_tensors",
    "epoch_permutation",
    "list_datasets",
    "load_dataset",
    "make_loader",
    "reconcile_kind",
    "to_float",
]
