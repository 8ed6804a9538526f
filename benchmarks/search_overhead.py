"""Search overhead: the search's wall time against the sum of its trials' own training time.

Runs a real search (Ray Tune + OptunaSearch + ASHA, local Ray) whose trials each train for a
while, then prints, side by side:

- the sum of the trials' own training time (every epoch's training + validation, measured
  inside the trial),
- the capacity the tuning phase used: parallel slots × its wall time (and the same including
  Ray's start-up),

and their ratio, the efficiency. Target: >= 0.85 for trials of >= 10 s.

    python benchmarks/search_overhead.py [--dataset fashion-mnist] [--trials 6] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import optuna

import tricksearch
from tricksearch.errors import DataError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default="cnn-small")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit", type=int, default=6000, help="training images used (0: all)")
    p.add_argument("--out", default=None)
    args = p.parse_args()

    dataset: object = args.dataset
    name = args.dataset
    try:
        data = tricksearch.load_dataset(args.dataset)
    except DataError:
        dataset = name = "digits"
        print("fashion-mnist absent: using digits (trials are then far shorter than 10 s)")
    else:
        if args.limit:
            n = args.limit
            dataset = (data.x_train[:n], data.y_train[:n], data.x_test[:2000], data.y_test[:2000])
            name = f"{args.dataset} ({n} training images)"
    out = Path(args.out or tempfile.mkdtemp(prefix="tricksearch-bench-")) / "run"
    result = tricksearch.search(
        dataset=dataset,
        model=args.model,
        space="minimal",
        trials=args.trials,
        epochs=args.epochs,
        out=out,
        grace_period=args.epochs,  # no early stopping: every trial trains the full budget
        seeds=1,
        top_k=1,
        quiet=True,
    )
    s = result.summary["search"]
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{out / 'study.db'}")
    per_trial = [float(t.user_attrs.get("train_seconds", 0.0)) for t in study.trials]
    train = sum(per_trial)
    slots = s["slots"]
    tune_capacity = slots * s["tune_seconds"]
    with_start = slots * (s["tune_seconds"] + s["ray_start_seconds"])
    print(
        f"{args.trials} trials of {args.model} on {name}, {args.epochs} epochs each, "
        f"{slots} parallel slots; mean trial training time {statistics.fmean(per_trial):.1f} s"
    )
    print(f"{'':<40}{'seconds':>10}")
    print(f"{'sum of trials own training time':<40}{train:>10.1f}")
    print(f"{'slots x tuning wall time':<40}{tune_capacity:>10.1f}")
    print(f"{'slots x (tuning + Ray start) wall time':<40}{with_start:>10.1f}")
    print(f"efficiency (tuning phase): {train / tune_capacity:.2f}  (target >= 0.85)")
    trials = sorted(study.trials, key=lambda t: t.datetime_start)
    gaps = [
        t.duration.total_seconds() - float(t.user_attrs.get("train_seconds", 0.0)) for t in trials
    ]
    first, rest = gaps[:slots], gaps[slots:]
    print(
        f"per-trial overhead: first trial of each slot {statistics.fmean(first):.1f} s "
        "(worker process start: imports, data)"
        + (f", later trials {statistics.fmean(rest):.2f} s (actors reused)" if rest else "")
    )
    print(f"efficiency (with Ray start): {train / with_start:.2f}")
    print(f"run folder: {out}")


if __name__ == "__main__":
    main()
