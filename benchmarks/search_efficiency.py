"""How much search each strategy needs, replayed on a table of real learning curves.

``benchmarks/curve_table.py`` trained configurations drawn at random from the default space to the
full budget with 2 seeds, val and test accuracy after every epoch (committed, compressed, in
``benchmarks/tables/``). Here whole searches are replayed against that table: the samplers
(Optuna) and the scheduler (Ray Tune's ASHA, the search's own ``RecordingASHA``) run for real
through the same searcher classes the search uses; only the training is replaced by a lookup —
a suggested configuration reads the curve of its nearest table row (exact for the preset
recipes, which have rows of their own; else the nearest in a normalised encoding: switches and
categories 0/1, numbers scaled to their range, log for the LR), with one of its 2 seeds drawn at
random, so the noise of a real trial is there.

Strategies (``--slots`` trials run at a time, each epoch costs one trial-epoch):

- ``random``: random search, every trial to the full budget (the reference);
- ``random+asha``: random configurations, ASHA stops the poor ones;
- ``ray-optuna+asha``: Ray Tune's stock ``OptunaSearch`` (TPE) + ASHA, as a Ray user writes it:
  it tells Optuna COMPLETE for a trial ASHA stopped, with its early value;
- ``tpe+asha (before)``: tricksearch as it was before issue 11: TPE told the truth (PRUNED with
  the intermediate values), ASHA's grace a quarter of the budget, baseline and bag-of-tricks
  enqueued first and run like any trial (the space as it is now, the LR drawn for the optimizer);
- ``tpe+asha``: tricksearch's search as it is now (``make_sampler``, ``SearchConfig.grace``,
  ``first_points``, the baseline stopped at the first rung, the LR drawn for the optimizer);
- ``tpe+asha no presets``: the same without the preset points (what TPE + ASHA do alone);
- ``tpe+asha warm start``: as ``tpe+asha`` with ``--warm-start`` from one ``tpe+asha`` search
  replayed on the other table (digits → Fashion-MNIST cut, and back);
- ``tpe+asha grace 1``: as ``tpe+asha`` with ASHA's first rung after one epoch.

For each table and strategy, ``--reps`` searches with different seeds. Printed side by side:
the trial-epochs a strategy needed to reach the final best val of full-budget random search with
``--trials`` trials (its median over the repetitions; reached = a trial finished the full budget
with a val at least that), as median and quartiles, and the regret after a fixed budget of
trial-epochs (a third of random's): the best mean test accuracy in the table minus that of the
configuration the search would hand over then (its best full-budget trial by val). The last line
is the ratio of medians ``tpe+asha`` / ``random``: over the tables (their median), and each.

    python benchmarks/search_efficiency.py [--table digits] [--reps 20] [--trials 32] [--slots 2]
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curve_table import NAMED, SETTINGS, TABLES, load_table

CHANCE = 0.1


class Table:
    """The configurations of one table: their curves and a nearest-row lookup."""

    def __init__(self, name: str) -> None:
        rows = load_table(name)
        if not rows:
            raise SystemExit(f"table {name!r} is empty: build it with benchmarks/curve_table.py")
        self.name = name
        self.epochs = SETTINGS[name]["epochs"]
        by_config: dict[int, dict[str, Any]] = {}
        for row in rows:
            entry = by_config.setdefault(
                row["config"], {"params": row["params"], "val": {}, "test": {}, "name": None}
            )
            entry["name"] = row.get("name") or entry["name"]
            if "val" in row and len(row["val"]) == self.epochs:
                entry["val"][row["seed"]] = row["val"]
                entry["test"][row["seed"]] = row["test"]
        # only configurations with both seeds (a table being built may hold one)
        self.configs = {i: c for i, c in by_config.items() if len(c["val"]) != 1}
        self.ids = sorted(self.configs)
        self.random_ids = [i for i in self.ids if i < NAMED]
        self.mean_test = {i: self._mean_final(i, "test") for i in self.ids}
        self.best_test = max(self.mean_test.values())
        self._encode()

    def _mean_final(self, i: int, key: str) -> float:
        curves = self.configs[i][key]
        return statistics.fmean(c[-1] for c in curves.values()) if curves else CHANCE

    def _encode(self) -> None:
        """Numbers (NaN: the trick is off) and category codes (-1: off), one row a config."""
        keys = sorted({k for i in self.ids for k in self.configs[i]["params"]})
        self.num_keys: list[tuple[str, bool, float, float]] = []
        self.cat_keys: list[str] = []
        self.codes: dict[str, dict[str, int]] = {}
        for k in keys:
            values = [
                self.configs[i]["params"][k] for i in self.ids if k in self.configs[i]["params"]
            ]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                lo, hi = min(values), max(values)
                log = lo > 0 and hi / lo > 20
                if log:
                    lo, hi = math.log(lo), math.log(hi)
                self.num_keys.append((k, log, lo, max(hi - lo, 1e-12)))
            else:
                self.cat_keys.append(k)
                self.codes[k] = {str(v): n for n, v in enumerate(sorted({str(v) for v in values}))}
        encoded = [self._vector(self.configs[i]["params"]) for i in self.ids]
        self.num = np.array([e[0] for e in encoded]).reshape(len(self.ids), len(self.num_keys))
        self.cat = np.array([e[1] for e in encoded]).reshape(len(self.ids), len(self.cat_keys))
        self.exact = {
            repr(sorted(self.configs[i]["params"].items())): i for i in self.ids if i >= NAMED
        }

    def _vector(self, params: dict[str, Any]) -> tuple[list[float], list[int]]:
        num = []
        for k, log, lo, width in self.num_keys:
            if k not in params:
                num.append(math.nan)
                continue
            v = float(params[k])
            v = math.log(v) if log and v > 0 else v
            num.append((v - lo) / width)
        cat = [self.codes[k].get(str(params[k]), -2) if k in params else -1 for k in self.cat_keys]
        return num, cat

    def nearest(self, params: dict[str, Any]) -> int:
        """The row of a preset recipe's own point, else the nearest row (each dimension counts
        at most 1: a category or a switch that differs, a trick on in one of the two)."""
        exact = self.exact.get(repr(sorted(params.items())))
        if exact is not None:
            return exact
        num, cat = self._vector(params)
        q_num, q_cat = np.array(num), np.array(cat)
        missing = np.isnan(self.num) != np.isnan(q_num)
        d_num = np.where(missing, 1.0, np.nan_to_num(np.minimum(1.0, np.abs(self.num - q_num))))
        d_cat = (self.cat != q_cat).astype(float)
        return self.ids[int(np.argmin(d_num.sum(axis=1) + d_cat.sum(axis=1)))]

    def curve(self, i: int, seed: int) -> list[float] | None:
        curves = self.configs[i]["val"]
        if not curves:
            return None  # the configuration diverged with both seeds
        return curves[sorted(curves)[seed % len(curves)]]


class _Trial:
    """What ASHA reads of a Ray trial."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def _space(name: str) -> Any:
    from tricksearch.spaces import load_space

    return load_space(str(TABLES / f"{name}.space.yaml"))


def _base(name: str) -> Any:
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._prepare import base_recipe

    s = SETTINGS[name]
    return base_recipe(
        SearchConfig(dataset=s["dataset"], model=s["model"], epochs=s["epochs"], out="/tmp/x")
    )


def _searcher(
    strategy: dict[str, Any],
    space: Any,
    points: list[dict],
    seed: int,
    epochs: int,
    trials: int,
    scheduler: Any,
    prior: list[Any] | None,
) -> Any:
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from tricksearch.tuning._searcher import TruthfulOptunaSearch, make_sampler

    kind = strategy["sampler"]
    if kind == "random":
        sampler: Any = optuna.samplers.RandomSampler(seed=seed)
    elif kind == "stock-tpe":
        sampler = optuna.samplers.TPESampler(seed=seed)
    elif kind == "before-tpe":
        sampler = optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=max(3, min(10, trials // 3)),
            multivariate=True,
            group=True,
            constant_liar=True,
        )
    else:
        sampler = make_sampler("tpe", seed, trials)
    if prior:
        from tricksearch.tuning._warmstart import warm_start_sampler

        sampler = warm_start_sampler(sampler, prior, direction="maximize")
    common = dict(metric="val_acc", mode="max", points_to_evaluate=points or None, sampler=sampler)
    if strategy["searcher"] == "stock":
        return OptunaSearch(space, **common)
    reference = {}
    if strategy.get("points") is True and points and scheduler is not None:
        # as the search does: the baseline (first point) is stopped at the first rung
        reference = {"reference": points[0], "on_reference": scheduler.references.add}
    pruned = scheduler.pruned if scheduler is not None else set()
    return TruthfulOptunaSearch(
        space, max_t=epochs, pruned_by_scheduler=pruned, **reference, **common
    )


def _scheduler(strategy: dict[str, Any], epochs: int) -> Any:
    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._searcher import RecordingASHA

    if not strategy["asha"]:
        return None
    grace = strategy.get("grace")
    if grace is None:
        grace = SearchConfig(epochs=epochs, out="/tmp/x").grace
    scheduler = RecordingASHA(
        time_attr="training_iteration", max_t=epochs, grace_period=grace, reduction_factor=3
    )
    scheduler.set_search_properties("val_acc", "max")
    return scheduler


def replay(
    table: Table,
    strategy: dict[str, Any],
    seed: int,
    *,
    budget: int,
    slots: int,
    trials: int,
    points: list[dict],
    prior: list[Any] | None = None,
    ended: list[tuple[int, int]] | None = None,
    studies: list[Any] | None = None,
) -> list[tuple[int, float, int]]:
    """One search: the full-budget trials it finished, as (trial-epochs spent, val, row);
    ``ended`` gets (row, epochs it ran) of every trial that ended, in order."""
    ended = [] if ended is None else ended
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import Searcher

    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # ASHA draws its bracket with numpy's global generator
    epochs = table.epochs
    scheduler = _scheduler(strategy, epochs)
    searcher = _searcher(
        strategy,
        _space(table.name),
        points if strategy.get("points", True) else [],
        seed,
        epochs,
        trials,
        scheduler,
        prior,
    )
    max_trials = trials if not strategy["asha"] else 20 * trials
    heap: list[tuple[int, int, str]] = []
    running: dict[str, list[Any]] = {}
    spent = created = order = 0
    now = 0
    finished: list[tuple[int, float, int]] = []
    while True:
        while len(running) < slots and created < max_trials and spent < budget:
            tid = f"t{created}"
            config = searcher.suggest(tid)
            if config is None or config == Searcher.FINISHED:
                break
            created += 1
            row = table.nearest(config)
            curve = table.curve(row, int(rng.integers(2)))
            running[tid] = [row, curve, 0, _Trial(tid)]
            if scheduler is not None:
                scheduler.on_trial_add(None, running[tid][3])
            order += 1
            heapq.heappush(heap, (now + 1, order, tid))
        if not heap or spent >= budget:
            break
        now, _, tid = heapq.heappop(heap)
        row, curve, done, trial = running[tid]
        spent += 1
        if curve is None:  # diverged: fails in its first epoch
            searcher.on_trial_complete(tid, None, error=True)
            del running[tid]
            ended.append((row, 1))
            continue
        done += 1
        running[tid][2] = done
        result = {
            "training_iteration": done,
            "val_acc": curve[done - 1],
            "epoch": done,
            "time_total_s": float(done),
        }
        searcher.on_trial_result(tid, result)
        decision = TrialScheduler.CONTINUE
        if scheduler is not None:
            decision = scheduler.on_trial_result(None, trial, result)
        if done >= epochs or decision == TrialScheduler.STOP:
            searcher.on_trial_complete(tid, result)
            if scheduler is not None:
                scheduler.on_trial_complete(None, trial, result)
            del running[tid]
            ended.append((row, done))
            if done >= epochs:
                finished.append((spent, curve[-1], row))
        else:
            order += 1
            heapq.heappush(heap, (now + 1, order, tid))
    if studies is not None:  # the search's Optuna study, e.g. as another search's prior
        studies.append(searcher._ot_study)
    return finished


def prior_from(name: str, slots: int, trials: int, seed: int = 7) -> list[Any]:
    """The finished trials (COMPLETE, and PRUNED with values) of one ``tpe+asha`` search
    replayed on table ``name``: what ``--warm-start`` reads from an earlier search's folder."""
    from optuna.trial import TrialState

    table = Table(name)
    studies: list[Any] = []
    replay(
        table, STRATEGIES["tpe+asha"], seed, budget=trials * table.epochs, slots=slots,
        trials=trials, points=_points(name, True), studies=studies,
    )  # fmt: skip
    return [
        t
        for t in studies[0].get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
        or (t.state == TrialState.PRUNED and t.intermediate_values)
    ]


def epochs_to(finished: list[tuple[int, float, int]], target: float) -> float:
    return next((s for s, v, _ in finished if v >= target), math.inf)


def regret_at(table: Table, finished: list[tuple[int, float, int]], budget: int) -> float:
    done = [(v, r) for s, v, r in finished if s <= budget]
    if not done:
        return table.best_test - CHANCE
    return table.best_test - table.mean_test[max(done)[1]]


STRATEGIES: dict[str, dict[str, Any]] = {
    "random": {"sampler": "random", "searcher": "truthful", "asha": False, "points": False},
    "random+asha": {"sampler": "random", "searcher": "truthful", "asha": True, "points": False},
    "ray-optuna+asha": {"sampler": "stock-tpe", "searcher": "stock", "asha": True, "points": False},
    "tpe+asha (before)": {
        "sampler": "before-tpe",
        "searcher": "truthful",
        "asha": True,
        "points": "before",
    },
    "tpe+asha": {"sampler": "tpe", "searcher": "truthful", "asha": True, "points": True},
    "tpe+asha no presets": {
        "sampler": "tpe",
        "searcher": "truthful",
        "asha": True,
        "points": False,
    },
    "tpe+asha warm start": {  # --warm-start: the other table's search as the prior
        "sampler": "tpe",
        "searcher": "truthful",
        "asha": True,
        "points": True,
        "prior": True,
    },
    "tpe+asha grace 1": {
        "sampler": "tpe",
        "searcher": "truthful",
        "asha": True,
        "points": True,
        "grace": 1,
    },
}


def _points(name: str, which: Any) -> list[dict[str, Any]]:
    from tricksearch.spaces import preset_recipe
    from tricksearch.tuning._tune import first_points

    space, base = _space(name), _base(name)
    if which == "before":
        return [space.point(preset_recipe(n, base)) for n in ("baseline", "bag-of-tricks")]
    return first_points(space, base, 32) if which else []


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(np.array(values, dtype=float), [25, 50, 75], method="lower")
    return float(q[0]), float(q[1]), float(q[2])


def _fmt(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:.0f}"


_TABLES: dict[str, Table] = {}


def _replay_job(job: tuple) -> list[tuple[int, float, int]]:
    """One repetition in a worker process (the table loaded once per process)."""
    name, spec, seed, budget, slots, trials, points, prior = job
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    if name not in _TABLES:
        _TABLES[name] = Table(name)
    return replay(
        _TABLES[name],
        spec,
        seed,
        budget=budget,
        slots=slots,
        trials=trials,
        points=points,
        prior=prior,
    )


def run_table(
    name: str,
    reps: int,
    trials: int,
    slots: int,
    strategies: list[str],
    prior: list[Any] | None,
    out: Any,
    pool: Any = None,
) -> dict[str, float]:
    table = Table(name)
    budget = trials * table.epochs
    print(
        f"\n== {name}: {len(table.random_ids)} random configurations + "
        f"{len(table.ids) - len(table.random_ids)} preset rows, 2 seeds each, {table.epochs} "
        f"epochs; {reps} searches per strategy, {slots} at a time, budget {budget} trial-epochs "
        f"(= {trials} full-budget trials); best mean test in the table {table.best_test:.4f}",
        file=out,
        flush=True,
    )
    runs: dict[str, list[list[tuple[int, float, int]]]] = {}
    t0 = time.perf_counter()
    for strat in strategies:
        spec = dict(STRATEGIES[strat])
        points = _points(name, spec.get("points", False))
        use_prior = prior if spec.pop("prior", False) else None
        jobs = [
            (name, spec, 1000 + r, budget, slots, trials, points, use_prior) for r in range(reps)
        ]
        if pool is None:
            runs[strat] = [_replay_job(job) for job in jobs]
        else:
            runs[strat] = pool.map(_replay_job, jobs)
    target = statistics.median(max((v for _, v, _ in f), default=CHANCE) for f in runs["random"])
    fixed = budget // 3
    print(
        f"target: random search's final best val, median of {reps}: {target:.4f}; regret after "
        f"{fixed} trial-epochs (test, vs the table's best); replayed in "
        f"{time.perf_counter() - t0:.0f} s",
        file=out,
    )
    print(
        f"{'strategy':<22} {'trial-epochs to target: median [q1, q3]':>42} {'reached':>8} "
        f"{'regret@' + str(fixed):>12} {'ratio':>6}",
        file=out,
    )
    medians: dict[str, float] = {}
    for strat, found in runs.items():
        needed = [epochs_to(f, target) for f in found]
        q1, med, q3 = _quartiles(needed)
        medians[strat] = med
        reached = sum(not math.isinf(x) for x in needed)
        regret = statistics.median(regret_at(table, f, fixed) for f in found)
        ratio = med / medians["random"] if not math.isinf(med) else math.inf
        print(
            f"{strat:<22} {_fmt(med):>24} [{_fmt(q1)}, {_fmt(q3)}]{'':>8} "
            f"{reached:>4}/{len(found):<3} {regret:>12.4f} {ratio:>6.2f}",
            file=out,
        )
    return medians


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--table", action="append", choices=sorted(SETTINGS))
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--jobs", type=int, default=2, help="processes replaying in parallel")
    args = p.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("ray").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    tables = args.table or [n for n in SETTINGS if load_table(n)]
    strategies = args.strategies.split(",")
    warm = "tpe+asha warm start"
    others = {n: [m for m in SETTINGS if m != n and load_table(m)] for n in tables}
    ratios = []
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(args.jobs) if args.jobs > 1 else _nothing()
    with pool:
        for name in tables:
            prior = None
            if warm in strategies and others[name]:
                source = others[name][0]
                prior = prior_from(source, args.slots, args.trials)
                print(f"\n{warm}: the prior is one tpe+asha search on {source} "
                      f"({len(prior)} finished trials)")  # fmt: skip
            medians = run_table(
                name,
                args.reps,
                args.trials,
                args.slots,
                [s for s in strategies if s != warm or prior],
                prior,
                sys.stdout,
                pool if args.jobs > 1 else None,
            )
            if "tpe+asha" in medians:
                ratios.append((name, medians["tpe+asha"] / medians["random"]))
    if ratios:
        each = ", ".join(f"{name} {r:.2f}" for name, r in ratios)
        overall = statistics.median(r for _, r in ratios)
        print(f"ratio tpe+asha/random trial-epochs: {overall:.2f} ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
