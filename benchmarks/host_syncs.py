"""Host synchronisations per training step, for every trick alone (issue 13: the target is 0).

On the CPU the step is read by ``tricksearch.engine.sync_audit`` (what would synchronise on
CUDA: device values read on the host, data-dependent shapes, host draws copied over), with the
batched policies on their CUDA code path. On CUDA (``--device cuda``) torch itself counts:
``torch.cuda.set_sync_debug_mode("warn")`` around each step, one warning per sync.

One epoch of 96 digits (batch 32: 3 steps) per trick; semi tricks get a 160-image pool;
``sync_bn`` is skipped on CUDA (it needs 2 or more GPUs). Prints, per trick, the syncs of the
first step and the most of any later step, and where the audit found them (CPU).

    python benchmarks/host_syncs.py [--device cpu|cuda] [--trick NAME ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import warnings
from collections import Counter

import torch

from tricksearch.data import DatasetSplits, load_dataset
from tricksearch.engine import fit
from tricksearch.engine.sync_audit import SyncAudit, audit_fit, steady_syncs
from tricksearch.recipe import Recipe
from tricksearch.tricks import registered_tricks

TRICKS = registered_tricks()


def _recipe(name: str) -> Recipe:
    spec = TRICKS[name]
    params: dict = {"teacher": "cnn-small", "teacher_epochs": 1} if spec.needs_teacher else {}
    if spec.family == "semi":
        params = {"threshold": 0.5}
    if name in ("mixup", "cutmix", "ricap"):
        params = {"prob": 1.0}
    if name == "group_norm":
        params = {"groups": 8}
    model = "resnet-cifar" if spec.needs_residual or spec.model_option else "cnn-small"
    base = Recipe.from_dict(
        {"model": {"name": model}, "budget": {"epochs": 1, "batch_size": 32, "lr": 0.05}}
    )
    return base.with_trick(name, params)


def _data() -> DatasetSplits:
    digits = load_dataset("digits")
    return dataclasses.replace(
        digits,
        x_train=digits.x_train[:96],
        y_train=digits.y_train[:96],
        x_val=digits.x_val[:48],
        y_val=digits.y_val[:48],
        x_unlabeled=digits.x_train[96:256],
        info=dict(digits.info),
    )


def _cpu(name: str, data: DatasetSplits) -> tuple[int, int, str]:
    audits: list[SyncAudit] = []
    init = SyncAudit.__init__

    def keep(self: SyncAudit) -> None:
        init(self)
        audits.append(self)

    SyncAudit.__init__ = keep  # type: ignore[method-assign]
    try:
        steps = audit_fit(_recipe(name), data=data)
    finally:
        SyncAudit.__init__ = init  # type: ignore[method-assign]
    where = ", ".join(f"{k} ×{v}" for k, v in audits[-1].where.most_common(3))
    return sum(steps[0].values()), steady_syncs(steps), where


def _cuda(name: str, data: DatasetSplits) -> tuple[int, int, str]:
    fit_module = importlib.import_module("tricksearch.engine.fit")
    inner, counts = fit_module.training_step, []

    def watched(*args):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                return inner(*args)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            counts.append(Counter({"sync": sum("synchroniz" in str(w.message) for w in caught)}))

    fit_module.training_step = watched
    try:
        fit(_recipe(name), data=data, device="cuda")
    finally:
        fit_module.training_step = inner
    return sum(counts[0].values()), steady_syncs(counts), ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--trick", nargs="*", help="only these tricks (default: all)")
    args = p.parse_args()
    torch.set_num_threads(1)
    data = _data()
    names = args.trick or list(TRICKS)
    print(f"{'trick':<16}{'first':>6}{'later':>6}  where ({args.device})")
    for name in names:
        if args.device == "cuda" and name == "sync_bn":
            print(f"{name:<16}{'-':>6}{'-':>6}  skipped: needs 2+ GPUs")
            continue
        first, later, where = (_cuda if args.device == "cuda" else _cpu)(name, data)
        print(f"{name:<16}{first:>6}{later:>6}  {where}")


if __name__ == "__main__":
    main()
