"""Build the learning-curve table that ``benchmarks/search_efficiency.py`` replays searches on.

Configurations are drawn at random from the default space, fitted to the data and the model as a
search fits it (``tricksearch.tuning._prepare.prepare``: model, device, data kind, pre-flight),
and each is trained to the full budget with 2 seeds exactly as a trial trains it
(``space.to_recipe`` → ``engine.fit``), recording val and test accuracy after every epoch and
the seconds each epoch took. One JSON line per (configuration, seed); the file is appended to and
rows already there are skipped, so the table can be built in parts (Ctrl-C is safe: at most the
training in progress is lost) and extended later with ``--configs``.

    python benchmarks/curve_table.py --table digits --configs 300
    python benchmarks/curve_table.py --table fashion1k --configs 160 [--part 0/2]
    python benchmarks/curve_table.py --table digits --pack   # → benchmarks/tables/digits.jsonl.gz

Tables (``--table``):

- ``digits``: scikit-learn's digits (train 1,150 / val 270 / test 359 images after the
  search's split), cnn-small, 12 epochs, batch 128, lr 0.05 (the search's defaults);
- ``fashion1k``: Fashion-MNIST (Debian's dataset-fashion-mnist) cut to a stratified 1,000 train
  / 500 val / 500 test images, cnn-small, 4 epochs, batch 128 — far smaller than the issue's
  5k × 8 epochs: a random configuration of the default space took 50–100 s to train at 2,000 ×
  6 epochs on one of the 2 cores, and the table had to be built within one working session
  (extend it with a larger ``subset`` on a faster machine).

Test accuracy per epoch is measured on the same network the engine evaluates on val (the EMA copy
when ``ema`` is on): the engine's ``evaluate`` is wrapped for this script only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables"

#: name -> dataset, model, epochs, batch size, subset sizes (None: the search's split as is)
SETTINGS: dict[str, dict[str, Any]] = {
    "digits": {"dataset": "digits", "model": "cnn-small", "epochs": 12, "subset": None},
    "fashion1k": {
        "dataset": "fashion-mnist",
        "model": "cnn-small",
        "epochs": 4,
        "subset": (1000, 500, 500),
    },
}
SEEDS = (0, 1)


def table_path(name: str, packed: bool = False) -> Path:
    return TABLES / (f"{name}.jsonl.gz" if packed else f"{name}.jsonl")


def load_table(name: str) -> list[dict[str, Any]]:
    """The rows of a table: the packed file (committed) and the working file (being built)."""
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    packed, working = table_path(name, True), table_path(name)
    if packed.is_file():
        with gzip.open(packed, "rt") as fh:
            for line in fh:
                row = json.loads(line)
                rows[(row["config"], row["seed"])] = row
    if working.is_file():
        for line in working.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by Ctrl-C
                row = json.loads(line)
                rows[(row["config"], row["seed"])] = row
    return [rows[k] for k in sorted(rows)]


def _subset(data: Any, sizes: tuple[int, int, int], seed: int = 0) -> Any:
    """A stratified cut of each split (the first n of a seeded per-class interleaving)."""
    import torch

    def cut(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(y), generator=g)
        ranks = torch.empty_like(order)
        for c in y.unique():
            members = order[y[order] == c]
            ranks[members] = torch.arange(len(members))
        keep = torch.sort(ranks * (int(y.max()) + 1) + y, stable=True).indices[:n]
        keep = keep.sort().values
        return x[keep], y[keep]

    x_tr, y_tr = cut(data.x_train, data.y_train, sizes[0])
    x_va, y_va = cut(data.x_val, data.y_val, sizes[1])
    x_te, y_te = cut(data.x_test, data.y_test, sizes[2])
    return dataclasses.replace(
        data,
        name=f"{data.name}-{sizes[0] // 1000}k",
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_va,
        y_val=y_va,
        x_test=x_te,
        y_test=y_te,
    )


def prepared(name: str) -> Any:
    """The search's preparation for the table's setting: fitted space, base recipe, data."""
    from tricksearch.data import load_dataset
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._prepare import prepare

    s = SETTINGS[name]
    config = SearchConfig(
        dataset=s["dataset"], model=s["model"], epochs=s["epochs"], out="/tmp/curve-table-unused"
    )
    data = None
    if s["subset"] is not None:
        data = _subset(load_dataset(s["dataset"]), s["subset"])
    return prepare(config, data=data)


def configurations(space: Any, n: int, seed: int = 12345) -> list[dict[str, Any]]:
    """The first ``n`` configurations a seeded random sampler draws from ``space``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        space(trial)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


class _TestRecorder:
    """Wraps the engine's ``evaluate``: after each val evaluation, the same net on test."""

    def __init__(self) -> None:
        import importlib

        fit_module = importlib.import_module("tricksearch.engine.fit")  # the module, not fit()
        self.module = fit_module
        self.original = fit_module.evaluate
        self.test: list[float] = []
        fit_module.evaluate = self  # type: ignore[assignment]

    def __call__(self, net: Any, x: Any, y: Any, data: Any, dev: Any, **kw: Any) -> Any:
        out = self.original(net, x, y, data, dev, **kw)
        if x is data.x_val:
            acc, _ = self.original(net, data.x_test, data.y_test, data, dev, **kw)
            self.test.append(float(acc))
        return out


def train_row(prep: Any, index: int, params: dict[str, Any], seed: int) -> dict[str, Any]:
    from tricksearch.engine import fit
    from tricksearch.recipe import Recipe

    recorder = _TestRecorder()
    row: dict[str, Any] = {"config": index, "seed": seed, "params": params}
    t0 = time.perf_counter()
    try:
        raw = prep.base.to_dict()
        raw["budget"] = {**raw["budget"], "seed": seed}
        base = Recipe.from_dict(raw)
        recipe = prep.space.to_recipe(base, params)
        result = fit(recipe, model=prep.model_factory, data=prep.data, device="cpu")
        row["val"] = [round(m.val_acc, 5) for m in result.history]
        row["test"] = [round(t, 5) for t in recorder.test]
        row["seconds"] = [round(m.epoch_seconds, 3) for m in result.history]
    except Exception as exc:  # a diverged configuration is a result too (val stays at chance)
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        recorder.module.evaluate = recorder.original  # type: ignore[assignment]
    row["wall"] = round(time.perf_counter() - t0, 2)
    return row


#: Table rows of the preset recipes (the points a search may enqueue) start at this index.
NAMED = 10_000


def named_points(prep: Any) -> dict[int, tuple[str, dict[str, Any]]]:
    """index -> (preset name, point) for every preset recipe the fitted space can express."""
    from tricksearch.spaces import PRESET_RECIPES, preset_recipe

    out: dict[int, tuple[str, dict[str, Any]]] = {}
    for k, name in enumerate(PRESET_RECIPES):
        with contextlib.suppress(Exception):  # a preset this model/space cannot take
            out[NAMED + k] = (name, prep.space.point(preset_recipe(name, prep.base)))
    return out


def build(name: str, n: int, part: tuple[int, int], points_only: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    prep = prepared(name)
    TABLES.mkdir(parents=True, exist_ok=True)
    (TABLES / f"{name}.space.yaml").write_text(prep.space.dumps())
    configs = dict(enumerate(configurations(prep.space, n)))
    named = named_points(prep)
    configs.update({i: point for i, (_, point) in named.items()})
    done = {(r["config"], r["seed"]) for r in load_table(name)}
    indices = sorted(named) if points_only else [i for i in range(n) if i % part[1] == part[0]]
    todo = [(i, s) for i in indices for s in SEEDS if (i, s) not in done]
    print(f"{name}: {len(configs)} configurations, {len(todo)} trainings to run", flush=True)
    t0 = time.perf_counter()
    with table_path(name).open("a") as fh:
        for k, (i, s) in enumerate(todo, 1):
            row = train_row(prep, i, configs[i], s)
            if i in named:
                row["name"] = named[i][0]
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            best = max(row.get("val", [math.nan]))
            rate = (time.perf_counter() - t0) / k
            print(
                f"[{k}/{len(todo)}] config {i} seed {s}: best val {best:.4f} "
                f"({row['wall']:.1f} s; ~{rate * (len(todo) - k) / 60:.0f} min left)",
                flush=True,
            )


def pack(name: str) -> None:
    rows = load_table(name)
    with gzip.open(table_path(name, True), "wt", compresslevel=9) as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
    working = table_path(name)
    if working.exists():
        working.unlink()
    size = os.path.getsize(table_path(name, True))
    print(f"packed {len(rows)} rows into {table_path(name, True)} ({size / 1024:.0f} KiB)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table", choices=sorted(SETTINGS), required=True)
    p.add_argument("--configs", type=int, default=300)
    p.add_argument("--part", default="0/1", help="i/n: run every n-th configuration from i")
    p.add_argument("--pack", action="store_true", help="compress the table for committing")
    p.add_argument("--points", action="store_true", help="train the preset recipes' rows only")
    args = p.parse_args(argv)
    if args.pack:
        pack(args.table)
        return 0
    i, n = (int(v) for v in args.part.split("/"))
    try:
        build(args.table, args.configs, (i, n), points_only=args.points)
    except KeyboardInterrupt:
        print("interrupted; run again to go on", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
