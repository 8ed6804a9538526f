"""CLI commands of the search: ``tricksearch search`` and ``tricksearch spaces``.

Light to import (``tuning/_config.py`` only): Ray and Optuna are imported when a search runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tricksearch._command import (
    Command,
    add_engine_options,
    add_unlabeled_options,
    engine_overrides,
    nonneg_int,
    positive_float,
    positive_int,
    print_table,
)
from tricksearch.tuning._config import METRICS, SAMPLERS, TRACKERS, SearchConfig

__all__ = ["COMMANDS"]


def gpus_value(text: str) -> float | str:
    """``--gpus-per-trial``: ``auto`` or a number >= 0, as ``_packing.parse_gpus`` reads it."""
    from tricksearch.errors import ConfigError
    from tricksearch.tuning._packing import parse_gpus

    try:
        return parse_gpus(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("gpus_per_trial: ")) from None


# --- search ------------------------------------------------------------------------------------
def _add_search(p: argparse.ArgumentParser) -> None:
    d = SearchConfig()
    _add_what(p.add_argument_group("what to search"), d)
    _add_folder(p.add_argument_group("run folder"))
    _add_sampling(p.add_argument_group("sampler and early stopping (ASHA)"), d)
    _add_resources(p.add_argument_group("resources"), d)
    add_engine_options(p.add_argument_group("engine options (recorded in the recipe's runtime)"))
    _add_retraining(p.add_argument_group("retraining of the best configurations"), d)
    _add_tracking(p.add_argument_group("tracking"))


def _add_what(g: argparse._ArgumentGroup, d: SearchConfig) -> None:
    g.add_argument("--dataset", default=d.dataset, help="dataset name (default: %(default)s)")
    g.add_argument("--data-root", help="folder holding the dataset files")
    g.add_argument("--skip-corrupt", action="store_true", help="skip unreadable image files")
    add_unlabeled_options(g)
    g.add_argument("--model", default=d.model, help="model name (default: %(default)s)")
    g.add_argument(
        "--space", default=d.space, help="preset name or space file (default: %(default)s)"
    )
    g.add_argument(
        "--trials",
        type=positive_int,
        default=d.trials,
        help="number of trials (default: %(default)s)",
    )
    g.add_argument(
        "--epochs",
        type=positive_int,
        default=d.epochs,
        help="full training budget per trial (default: %(default)s)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=d.batch_size,
        help="batch size when the space does not search it (default: %(default)s)",
    )
    g.add_argument(
        "--lr",
        type=positive_float,
        default=d.lr,
        help="base LR when the space does not search it (default: %(default)s)",
    )


def _add_folder(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--out", default=None, help="run folder (default: runs/<dataset>)")
    g.add_argument("--resume", metavar="DIR", help="continue the interrupted search in DIR")


def _add_sampling(g: argparse._ArgumentGroup, d: SearchConfig) -> None:
    g.add_argument(
        "--sampler",
        choices=list(SAMPLERS),
        default=d.sampler,
        help="Optuna sampler (default: %(default)s)",
    )
    g.add_argument(
        "--seed",
        type=nonneg_int,
        default=d.seed,
        help="seed of the sampler and of the first retraining seed",
    )
    g.add_argument(
        "--warm-start",
        metavar="DIR",
        help="the --out folder of an earlier search (another dataset or model): its finished "
        "trials, ranked, are a prior of the sampler (not trials of this search) and shorten "
        "TPE's random start",
    )
    g.add_argument(
        "--metric",
        choices=list(METRICS),
        default=d.metric,
        help="metric to optimise (default: %(default)s)",
    )
    g.add_argument(
        "--grace-period",
        type=positive_int,
        default=d.grace_period,
        help="ASHA: epochs before the first cut",
    )
    g.add_argument(
        "--reduction-factor",
        type=positive_int,
        default=d.reduction_factor,
        help="ASHA: keep 1/η of the trials per rung",
    )
    g.add_argument(
        "--fidelity",
        choices=["epochs", "data", "auto"],
        default=d.fidelity,
        help="what ASHA's early rungs save: epochs, or data (the epochs before each rung train "
        "on a stratified 1/η^k of the train split: 1/9, 1/3, then all); auto: data for train "
        "splits over 20,000 samples (default: %(default)s)",
    )


def _add_resources(g: argparse._ArgumentGroup, d: SearchConfig) -> None:
    g.add_argument(
        "--cpus-per-trial",
        type=positive_float,
        default=d.cpus_per_trial,
        help="CPU cores per trial; also its torch threads, rounded down (default: %(default)s)",
    )
    g.add_argument(
        "--gpus-per-trial",
        type=gpus_value,
        default=d.gpus_per_trial,
        help="fractions allowed: 0.5 runs two per GPU; 2 or more: one data-parallel trial "
        "(torch DDP, NCCL) on that many GPUs; auto: a probe measures a trial's memory and "
        "throughput and packs as many per GPU as fit and help (0 without CUDA)",
    )
    g.add_argument(
        "--workers-per-trial",
        type=positive_int,
        default=d.workers_per_trial,
        help="data-parallel replicas of one CPU trial (torch DDP, gloo), each with "
        "--cpus-per-trial CPUs; the batch size is the global batch (default: %(default)s)",
    )
    g.add_argument(
        "--max-concurrent",
        type=positive_int,
        help="at most this many trials at once (default: every free slot)",
    )
    g.add_argument(
        "--time-budget",
        type=positive_float,
        help="end the tuning after this many seconds: running trials are stopped (kept at "
        "their last epoch), no new one starts; the retraining of the winners comes after",
    )
    g.add_argument(
        "--trial-timeout",
        type=positive_float,
        help="stop a trial that runs longer than this many seconds and record it as failed "
        "('timeout after N s'); a resume does not run it again (default: no limit)",
    )
    g.add_argument(
        "--max-retries",
        type=nonneg_int,
        default=d.max_retries,
        help="restart a trial whose worker or node died, from its last epoch's checkpoint, up "
        "to this many times (default: %(default)s); an error in the trial's own code is not "
        "retried",
    )
    g.add_argument("--address", help="join an existing Ray cluster (e.g. ray://host:10001)")
    g.add_argument(
        "--storage",
        help="where Ray writes the trials' checkpoints: a folder every node reaches, or a URI "
        "(s3://bucket/path, gs://…; pyarrow filesystems) (default: the run folder's ray/)",
    )


def _add_retraining(g: argparse._ArgumentGroup, d: SearchConfig) -> None:
    g.add_argument(
        "--top-k",
        type=positive_int,
        default=d.top_k,
        help="configurations retrained at the full budget (default: %(default)s)",
    )
    g.add_argument(
        "--seeds",
        type=_seeds,
        default=d.seeds,
        help="seeds per retrained configuration, paired between the recipes (same init and "
        "data order per seed); 'auto' races seeds for the leader and the baseline until the "
        "verdict is decided, up to --max-seeds (default: %(default)s)",
    )
    g.add_argument(
        "--max-seeds",
        type=positive_int,
        default=d.max_seeds,
        help="the most seeds --seeds auto may use (default: %(default)s)",
    )
    g.add_argument(
        "--tuned-baseline",
        type=nonneg_int,
        default=d.tuned_baseline,
        metavar="N",
        help="trials of a search of lr and batch size without tricks, the tuned baseline the "
        "recipe is also compared with; 0: none (default: max(4, trials / 4))",
    )
    g.add_argument(
        "--cv",
        type=_folds,
        default=d.cv,
        metavar="K",
        help="retrain each configuration with K-fold cross-validation on train + val (the val "
        "score of a seed is the mean over the K folds): for small datasets, where one val "
        "split is too noisy to tell recipes apart (K times the retraining cost)",
    )
    g.add_argument(
        "--no-minimal",
        dest="minimal",
        action="store_false",
        help="hand over the full winner; by default its tricks are dropped one at a time while "
        "the result stays indistinguishable from it (the minimal recipe; the full one is kept "
        "as full_recipe.yaml)",
    )


def _add_tracking(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--track",
        action="append",
        choices=list(TRACKERS),
        metavar="{" + ",".join(TRACKERS) + "}",
        help="log each trial's per-epoch metrics and recipe to TensorBoard (RUN/tb, one run per "
        "trial and per retraining: tensorboard --logdir RUN/tb), MLflow (RUN/mlflow.db; pip "
        "install 'tricksearch[mlflow]') or W&B (offline, RUN/wandb; pip install "
        "'tricksearch[wandb]'); repeat for several",
    )


def _folds(text: str) -> int:
    """``--cv``: an integer >= 2."""
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"got {text}, expected an integer >= 2 (the folds)")
    return value


def _seeds(text: str) -> int | str:
    """``--seeds``: a positive integer or ``auto``."""
    if text == "auto":
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"got {text!r}, expected an integer >= 1 or 'auto'"
        ) from None


def run_search_cmd(args: argparse.Namespace) -> int:
    """``tricksearch search``: a new search, or ``--resume DIR`` to continue one."""
    from tricksearch.tuning._runner import run_search

    if args.resume:
        config = _resumed(args)
        run_search(config, resume=True)
        return 0
    config = SearchConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        skip_corrupt=args.skip_corrupt,
        unlabeled=args.unlabeled,
        labeled_fraction=1.0 if args.labeled_fraction is None else args.labeled_fraction,
        engine=engine_overrides(args) or None,
        model=args.model,
        space=args.space,
        trials=args.trials,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        out=args.out or f"runs/{args.dataset.replace(':', '_').replace('/', '_')}",
        sampler=args.sampler,
        seed=args.seed,
        warm_start=args.warm_start,
        metric=args.metric,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        fidelity=args.fidelity,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        workers_per_trial=args.workers_per_trial,
        max_concurrent=args.max_concurrent,
        time_budget=args.time_budget,
        trial_timeout=args.trial_timeout,
        max_retries=args.max_retries,
        top_k=args.top_k,
        seeds=args.seeds,
        max_seeds=args.max_seeds,
        tuned_baseline=args.tuned_baseline,
        minimal=args.minimal,
        cv=args.cv,
        address=args.address,
        storage=args.storage,
        track=tuple(args.track or ()),
    )
    run_search(config)
    return 0


#: Options a resume applies; every other one is refused (it would be silently ignored).
_RESUME_OPTIONS = ("trials", "trial_timeout", "max_retries", "track")


def _resumed(args: argparse.Namespace) -> SearchConfig:
    """The settings of the search saved in ``--resume DIR``; ``--trials N`` (N at least the
    saved count) runs more trials; any other option is refused: it would be silently ignored."""
    import dataclasses

    from tricksearch.errors import ConfigError

    config = SearchConfig.load(Path(args.resume))
    parser = argparse.ArgumentParser()
    _add_search(parser)
    defaults = vars(parser.parse_args([]))
    given = [
        k for k, v in vars(args).items() if k in defaults and k != "resume" and v != defaults[k]
    ]
    others = [f"--{k.replace('_', '-')}" for k in given if k not in _RESUME_OPTIONS]
    if others:
        raise ConfigError(
            f"resume: {', '.join(others)} cannot change a search being resumed (its settings "
            f"are in {str(Path(args.resume) / 'search.json')!r}); only --trials N (runs more "
            "trials), --trial-timeout, --max-retries and --track apply. Start a new search with "
            "another --out to change them."
        )
    for name in ("trial_timeout", "max_retries", "track"):
        if name in given:
            config = dataclasses.replace(config, **{name: getattr(args, name)})
    if "trials" in given:
        if args.trials < config.trials:
            raise ConfigError(
                f"trials: got {args.trials}, but the search in {args.resume!r} already asked "
                f"for {config.trials}; expected at least {config.trials} to resume it."
            )
        config = dataclasses.replace(config, trials=args.trials)
    return dataclasses.replace(config, out=args.resume)


# --- spaces ------------------------------------------------------------------------------------
def _add_spaces(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="preset name or space file (for `show`)")


def run_spaces(args: argparse.Namespace) -> int:
    """``tricksearch spaces [list]`` or ``tricksearch spaces show NAME``."""
    from tricksearch.errors import ConfigError
    from tricksearch.spaces import list_presets, load_space

    if args.action == "show":
        if not args.name:
            raise ConfigError(
                "spaces show: give a preset name or a space file, e.g. "
                "`tricksearch spaces show default`."
            )
        print(load_space(args.name).describe())
        return 0
    print_table(list(list_presets().items()))
    return 0


COMMANDS: tuple[Command, ...] = (
    Command(
        "search",
        "search the best combination of tricks (Ray Tune + Optuna + ASHA)",
        run_search_cmd,
        _add_search,
    ),
    Command(
        "spaces",
        "list the preset search spaces, or `spaces show NAME` to print one",
        run_spaces,
        _add_spaces,
    ),
)
