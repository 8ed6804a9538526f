"""CLI commands of the search: ``tricksearch search`` and ``tricksearch spaces``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from tricksearch.cli import _nonneg_int, _positive_int, command, number_arg
from tricksearch.tuning._config import METRICS, SAMPLERS, SearchConfig


def _positive_float(field: str) -> Callable[[str], float]:
    return number_arg(field, float, minimum=0, strict=True)


def _nonneg_float(field: str) -> Callable[[str], float]:
    return number_arg(field, float, minimum=0)


def _add_search(p: argparse.ArgumentParser) -> None:
    d = SearchConfig()
    p.add_argument("--dataset", default=d.dataset, help="dataset name (default: %(default)s)")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--skip-corrupt", action="store_true", help="skip unreadable image files")
    p.add_argument("--model", default=d.model, help="model name (default: %(default)s)")
    p.add_argument(
        "--space", default=d.space, help="preset name or space file (default: %(default)s)"
    )
    p.add_argument(
        "--trials",
        type=_positive_int("--trials"),
        default=d.trials,
        help="number of trials (default: %(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=_positive_int("--epochs"),
        default=d.epochs,
        help="full training budget per trial (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int("--batch-size"),
        default=d.batch_size,
        help="batch size when the space does not search it (default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=_positive_float("--lr"),
        default=d.lr,
        help="base LR when the space does not search it (default: %(default)s)",
    )
    p.add_argument("--out", default=None, help="run folder (default: runs/<dataset>)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted search in DIR")
    p.add_argument(
        "--sampler",
        choices=list(SAMPLERS),
        default=d.sampler,
        help="Optuna sampler (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=_nonneg_int("--seed"),
        default=d.seed,
        help="seed of the sampler and of the first retraining seed",
    )
    p.add_argument(
        "--metric",
        choices=list(METRICS),
        default=d.metric,
        help="metric to optimise (default: %(default)s)",
    )
    p.add_argument(
        "--grace-period",
        type=_positive_int("--grace-period"),
        default=d.grace_period,
        help="ASHA: epochs before the first cut",
    )
    p.add_argument(
        "--reduction-factor",
        type=_positive_int("--reduction-factor"),
        default=d.reduction_factor,
        help="ASHA: keep 1/η of the trials per rung",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=_positive_float("--cpus-per-trial"),
        default=d.cpus_per_trial,
        help="CPU cores per trial; also its torch threads, rounded down (default: %(default)s)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=_nonneg_float("--gpus-per-trial"),
        default=d.gpus_per_trial,
        help="fractions allowed: 0.5 runs two per GPU",
    )
    p.add_argument(
        "--max-concurrent",
        type=_positive_int("--max-concurrent"),
        help="at most this many trials at once (default: every free slot)",
    )
    p.add_argument(
        "--time-budget",
        type=_positive_float("--time-budget"),
        help="end the tuning after this many seconds: running trials are stopped (kept at "
        "their last epoch), no new one starts; the retraining of the winners comes after",
    )
    p.add_argument(
        "--top-k",
        type=_positive_int("--top-k"),
        default=d.top_k,
        help="configurations retrained at the full budget (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=_positive_int("--seeds"),
        default=d.seeds,
        help="seeds per retrained configuration (default: %(default)s)",
    )
    p.add_argument("--address", help="join an existing Ray cluster (e.g. ray://host:10001)")


@command("search", "search the best combination of tricks (Ray Tune + Optuna + ASHA)")
def run_search_cmd(args: argparse.Namespace) -> int:
    from tricksearch.tuning._runner import run_search

    if args.resume:
        config = SearchConfig.load(Path(args.resume))
        config.out = args.resume
        run_search(config, resume=True)
        return 0
    config = SearchConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        skip_corrupt=args.skip_corrupt,
        model=args.model,
        space=args.space,
        trials=args.trials,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        out=args.out or f"runs/{args.dataset.replace(':', '_').replace('/', '_')}",
        sampler=args.sampler,
        seed=args.seed,
        metric=args.metric,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        time_budget=args.time_budget,
        top_k=args.top_k,
        seeds=args.seeds,
        address=args.address,
    )
    run_search(config)
    return 0


def _add_spaces(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="preset name or space file (for `show`)")


@command("spaces", "list the preset search spaces, or `spaces show NAME` to print one")
def run_spaces(args: argparse.Namespace) -> int:
    from tricksearch.spaces import list_presets, load_space

    if args.action == "show":
        if not args.name:
            from tricksearch.errors import ConfigError

            raise ConfigError(
                "spaces show: give a preset name or a space file, e.g. "
                "`tricksearch spaces show default`."
            )
        print(load_space(args.name).describe())
        return 0
    presets = list_presets()
    width = max(len(n) for n in presets)
    for name, desc in presets.items():
        print(f"  {name.ljust(width)}  {desc}")
    return 0
