"""A whole search on Fashion-MNIST with cnn-small in one hour of wall time, all included.

Runs, as a user would, in a fresh process::

    tricksearch search --dataset fashion-mnist --model cnn-small --trials 200 --epochs 10 \\
        --time-budget 3600 --seeds 3 --top-k 2 --out OUT

(``--fidelity auto``, the default, is ``data`` here: 51,000 train images), times the whole
command (Ray's start, tuning, retraining, verdicts, files), and prints from ``results.json``
how many configurations it evaluated, the recommended recipe's and the baseline's test accuracy
per seed, and the paired verdict with its 95 % interval. Needs Debian's
``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``).

    python benchmarks/fashion_mnist_search.py [--budget 3600] [--out runs/fm-hour] [ARGS…]

Arguments after the known ones go to ``tricksearch search`` as they are.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--budget", type=float, default=3600.0, help="--time-budget, seconds")
    p.add_argument("--out", default="runs/fm-hour")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--trials", type=int, default=200)
    args, rest = p.parse_known_args(argv)
    out = Path(args.out)
    if out.exists():
        print(f"--out {out} exists; give a new folder", file=sys.stderr)
        return 2
    command = [
        sys.executable, "-m", "tricksearch", "search",
        "--dataset", "fashion-mnist", "--model", "cnn-small",
        "--trials", str(args.trials), "--epochs", str(args.epochs),
        "--time-budget", f"{args.budget:g}", "--seeds", "3", "--top-k", "2",
        "--out", str(out), *rest,
    ]  # fmt: skip
    print("$ " + " ".join(command[2:]), flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(command)
    wall = time.perf_counter() - t0
    minutes = wall / 60
    print(f"\nwall time, all included: {wall:.0f} s ({minutes:.1f} min), budget {args.budget:g} s")
    if code != 0 or not (out / "results.json").is_file():
        print(f"the search exited with {code}")
        return code or 1
    summary = json.loads((out / "results.json").read_text())["summary"]
    trials = summary.get("search", {}).get("trials", {})
    print(
        f"configurations evaluated: {sum(trials.values())} "
        + "("
        + ", ".join(f"{k} {v}" for k, v in trials.items() if v)
        + ")"
    )
    rec, base = summary["recipe"], summary["baseline"]
    for label, ev in (("recipe", rec), ("baseline", base)):
        accs = ev.get("test_acc") or []
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"{label:<9} test acc per seed {[round(a, 4) for a in accs]}: "
            f"{statistics.fmean(accs):.4f} ± {spread:.4f}"
        )
    test = (summary.get("verdict") or {}).get("test") or {}
    interval = ""
    if test.get("low") is not None and test.get("high") is not None:
        interval = f" (95 % interval {test['low']:+.4f} … {test['high']:+.4f})"
    print(
        f"gain (test): {summary['gain']['test_acc']:+.4f}; verdict: "
        f"{summary['verdict']['summary']}{interval}"
    )
    from tricksearch.recipe import load_recipe

    best = load_recipe(out / "best_recipe.yaml")
    print(f"recipe: {', '.join(best.tricks_on()) or 'no trick'}; lr {best.budget.lr:g}, "
          f"batch {best.budget.batch_size}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
