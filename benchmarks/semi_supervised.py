"""Semi-supervised tricks against supervised-only training on the same labels, paired over seeds.

Keeps a stratified fraction of the training labels (``data.labeled_fraction``; the other training
images become the unlabelled pool, their labels are never read), then trains, for every seed,

- ``supervised``: the base recipe (flip + crop, cosine decay) on the labelled images only,
- each semi-supervised method: the same recipe plus that trick (``semi`` section),

and prints test accuracy per method (mean ± sd over the seeds) and the paired gain over
``supervised`` with its 95 % t interval and the verdict, per label fraction. The test split is the
full official one; validation is cut to ``--val-limit`` images (it only feeds the per-epoch log).

    python benchmarks/semi_supervised.py [--dataset fashion-mnist] [--fractions 0.01 0.05]
        [--methods fixmatch self_training] [--seeds 3] [--steps 600] [--threads 2]

The number of epochs is chosen so every training makes about ``--steps`` optimizer steps on the
labelled batches (an epoch is one pass over the labelled images). Several minutes per fraction on
2 CPU cores with the defaults. Nothing here is a test: the numbers are for the record (README).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time

import torch

from tricksearch.data import load_dataset
from tricksearch.engine import fit
from tricksearch.errors import DataError
from tricksearch.recipe import Recipe
from tricksearch.tuning._verdict import paired_verdict

#: The semi-supervised trick of each method, with the parameters it is benchmarked at.
METHODS: dict[str, dict[str, dict]] = {
    "fixmatch": {"fixmatch": {"threshold": 0.95, "lambda_u": 1.0, "mu": 3}},
    "self_training": {"self_training": {"threshold": 0.95, "rounds": 5, "weight": 2.0}},
    "co_training": {"co_training": {"threshold": 0.9, "weight": 1.0}},
    "tri_training": {"tri_training": {"threshold": 0.0, "weight": 1.0}},
}


def recipe_for(
    dataset: str, fraction: float, epochs: int, batch: int, seed: int, semi: dict | None
) -> Recipe:
    raw: dict = {
        "data": {"dataset": dataset, "labeled_fraction": fraction},
        "model": {"name": "cnn-small"},
        "budget": {"epochs": epochs, "batch_size": batch, "lr": 0.05, "seed": seed},
        "augment": {"hflip": {}, "random_crop": {"padding": 2}},
        "schedule": {"cosine": {}},
        "optimizer": {"weight_decay": {"value": 5e-4}},
    }
    if semi:
        raw["semi"] = semi
    return Recipe.from_dict(raw)


def run_fraction(args: argparse.Namespace, fraction: float) -> None:
    try:
        data = load_dataset(args.dataset, labeled_fraction=fraction)
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.val_limit and len(data.y_val) > args.val_limit:
        data = dataclasses.replace(
            data, x_val=data.x_val[: args.val_limit], y_val=data.y_val[: args.val_limit]
        )
    labelled = len(data.y_train)
    epochs = max(1, math.ceil(args.steps / math.ceil(labelled / args.batch)))
    print(
        f"\n== {args.dataset}, {fraction:.0%} of the labels: {labelled} labelled, "
        f"{data.unlabeled_count} unlabelled, test {len(data.y_test)}; {epochs} epochs of "
        f"batch {args.batch} (~{args.steps} steps), seeds {list(range(args.seeds))}",
        flush=True,
    )
    scores: dict[str, list[float]] = {}
    for method in ["supervised", *args.methods]:
        semi = None if method == "supervised" else METHODS[method]
        scores[method] = []
        for seed in range(args.seeds):
            recipe = recipe_for(args.dataset, fraction, epochs, args.batch, seed, semi)
            t0 = time.perf_counter()
            result = fit(recipe, data=data, evaluate_test=True)
            scores[method].append(float(result.test_acc))
            print(
                f"  {method:<14} seed {seed}: test {result.test_acc:.4f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    print(f"\n  {'method':<14} {'test acc (mean ± sd)':<22} paired gain over supervised")
    base = scores["supervised"]
    for method, values in scores.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        line = f"  {method:<14} {statistics.fmean(values):.4f} ± {sd:.4f}       "
        if method != "supervised":
            v = paired_verdict(values, base)
            line += f"{v.interval_text()}: {v.verdict}"
        print(line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05])
    p.add_argument("--methods", nargs="+", default=["fixmatch", "self_training"], choices=METHODS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per training")
    p.add_argument("--batch", type=int, default=64, help="labelled batch size")
    p.add_argument("--val-limit", type=int, default=1000, help="validation images (0: all)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for fraction in args.fractions:
        run_fraction(args, fraction)


if __name__ == "__main__":
    main()
