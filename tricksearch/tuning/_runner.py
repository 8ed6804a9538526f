"""The search, start to finish: validate, Ray Tune + Optuna + ASHA, retrain top-k, export.

    settings -> validated (before Ray starts) -> Tuner(trial, TruthfulOptunaSearch, ASHA)
             -> study closed -> top-k retrained with n seeds (+ the baseline) -> winner by mean val
             -> winner and baseline on test -> best_recipe.yaml, trials.csv, results.json, report

Everything lives under the run folder; ``resume`` continues from it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import logging
import os
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from torch import nn

from tricksearch.data import DatasetSplits
from tricksearch.errors import ConfigError, TricksearchError
from tricksearch.recipe import Recipe, load_recipe
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._study import STUDY_NAME

__all__ = ["SearchFailed", "SearchInterrupted", "SearchResult", "run_search"]

logger = logging.getLogger(__name__)


class SearchFailed(TricksearchError):
    """No usable trial: every trial failed (or the search was stopped before any finished)."""

    exit_code = 1


class SearchInterrupted(TricksearchError):
    """The search was interrupted (Ctrl-C / SIGTERM); it can be resumed."""

    exit_code = 130


@dataclass
class SearchResult:
    """What a finished search returns: the best recipe, where it was written, and the evidence."""

    best: Recipe
    run_dir: Path
    recipe_path: Path
    summary: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)


# --- output plumbing ---------------------------------------------------------------------------
@contextlib.contextmanager
def _ray_output_to(log_path: Path) -> Iterator[IO[str]]:
    """Send everything written to fds 1 and 2 and Ray's Python loggers (Ray's tables, logs, C++
    warnings) to ``log_path``; yield a stream on the original stdout for our own progress lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        real_stdout = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # e.g. captured by pytest / a notebook
        real_stdout = False
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved_out), "w", buffering=1) if real_stdout else sys.stdout
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_loggers = {}
    for name in ("ray", "ray.tune", "ray.train"):
        lg = logging.getLogger(name)
        saved_loggers[name] = (lg.handlers[:], lg.propagate)
        lg.handlers = [file_handler]
        lg.propagate = False
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        for name, (handlers, propagate) in saved_loggers.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate
        file_handler.close()
        if console is not sys.stdout:
            console.close()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so a killed search still closes cleanly and can be resumed."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(stream: IO[str] | None, text: str) -> None:
    if stream is not None:
        stream.write(text + "\n")
        stream.flush()


# --- preparation (no Ray yet) ------------------------------------------------------------------
def _absolute_dataset(name: str) -> str:
    """``imagefolder:rel/path`` -> absolute: Ray workers run in other folders."""
    for prefix in ("imagefolder:", "npz:"):
        if name.startswith(prefix):
            return prefix + str(Path(name[len(prefix) :]).expanduser().resolve())
    return name


def _base_recipe(config: SearchConfig) -> Recipe:
    root = config.data_root
    return Recipe.from_dict(
        {
            "data": {
                "dataset": _absolute_dataset(config.dataset),
                "data_root": None if root is None else str(Path(root).expanduser().resolve()),
                "val_fraction": config.val_fraction,
                "test_fraction": config.test_fraction,
                "split_seed": config.split_seed,
                "skip_corrupt": config.skip_corrupt,
            },
            "model": {"name": config.model},
            "budget": {
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "seed": config.seed,
            },
        }
    )


def _traits(base: Recipe, data: DatasetSplits, factory: Callable[..., nn.Module] | None) -> dict:
    """What the model can take, for ``SearchSpace.for_model``: ``residual``, ``adaptive_pool``,
    ``model_options`` and ``norm_groups`` (see :func:`_model_capabilities`)."""
    from tricksearch.models import model_traits

    if factory is None:
        traits: dict[str, Any] = model_traits(base.model.name)
    else:
        from tricksearch.engine import make_model

        traits = model_traits(make_model(base, data, factory))
    return traits | _model_capabilities(base, data, factory)


#: A value for each model option a model tweak sets, to probe whether the model takes it.
_OPTION_PROBES: dict[str, dict[str, Any]] = {
    "dropout": {"dropout": 0.1},
    "activation": {"activation": "gelu"},
    "norm": {"norm": "group", "norm_groups": 1},
    "variant": {"variant": "d"},
}


def _model_capabilities(
    base: Recipe, data: DatasetSplits, factory: Callable[..., nn.Module] | None
) -> dict[str, Any]:
    """``model_options``: the tweak options the model builds with (torchvision models have no
    ResNet ``variant``, a user's callable may take none); ``norm_groups``: the GroupNorm group
    counts that divide every normalized layer whichever variant a trial picks (variant C's deep
    stem is narrower), or None without GroupNorm. Found by building the model (no training)."""
    import math

    from tricksearch.models import build_model
    from tricksearch.tricks.build import model_options

    def build(extra: dict[str, Any]) -> nn.Module:
        return build_model(
            base.model.name if factory is None else factory,
            in_channels=data.channels,
            num_classes=data.num_classes,
            image_size=data.image_size,
            options=model_options(base) | extra,
        )

    accepted = []
    for option, probe in _OPTION_PROBES.items():
        try:
            build(probe)
        except Exception:  # the model has no such option (a user's callable may raise anything)
            continue
        accepted.append(option)
    groups = None
    if "norm" in accepted:
        channels: list[int] = []
        for variant in (None, "b", "c", "d") if "variant" in accepted else (None,):
            extra = {} if variant is None else {"variant": variant}
            try:
                net = build(_OPTION_PROBES["norm"] | extra)
            except Exception:  # this pairing fails anyway, whatever the group count
                continue
            channels += [m.num_channels for m in net.modules() if isinstance(m, nn.GroupNorm)]
        if channels:
            common = math.gcd(*channels)
            groups = tuple(d for d in range(1, common + 1) if common % d == 0)
    return {"model_options": tuple(accepted), "norm_groups": groups}


def _for_device(space: Any, device: str) -> Any:
    """Drop what cannot run on the trials' device: fp16 autocast is refused on CPU."""
    entry = space.to_dict()["tricks"].get("low_precision")
    if device != "cpu" or not entry or entry.get("switch") == "off":
        return space
    dtype = entry.get("dtype")
    if dtype == "fp16" or (isinstance(dtype, dict) and "fp16" in dtype.get("choices", ())):
        from tricksearch.spaces import space_from_dict

        raw = space.to_dict()
        raw["tricks"]["low_precision"]["dtype"] = "bf16"
        new = space_from_dict(raw, source=f"space {space.name!r}", name=space.name)
        new.notes = [
            *space.notes,
            "low_precision: fp16 is not searched on CPU (only bf16 runs "
            "there); give --gpus-per-trial to search it",
        ]
        return new
    return space


def _finished_trials(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    )


def _check_resources(config: SearchConfig) -> int:
    """Compare the per-trial request with what Ray has; return the number of parallel slots."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    if config.gpus_per_trial > 0 and gpus < config.gpus_per_trial:
        raise ConfigError(
            f"gpus_per_trial: got {config.gpus_per_trial}, but "
            f"{'the cluster' if config.address else 'this machine'} has {gpus:g} GPU(s); "
            "use --gpus-per-trial 0 (Ray would wait forever for a GPU that is not there)."
        )
    if cpus < config.cpus_per_trial:
        raise ConfigError(
            f"cpus_per_trial: got {config.cpus_per_trial}, but only {cpus:g} CPU(s) are available."
        )
    slots = int(cpus // config.cpus_per_trial)
    if config.gpus_per_trial > 0:
        slots = min(slots, int(gpus // config.gpus_per_trial))
    slots = max(1, slots)
    if config.max_concurrent is not None:
        slots = min(slots, config.max_concurrent)
    return slots


# --- the run -----------------------------------------------------------------------------------
def run_search(
    config: SearchConfig,
    *,
    resume: bool = False,
    data: DatasetSplits | None = None,
    model_factory: Callable[..., nn.Module] | None = None,
    quiet: bool = False,
) -> SearchResult:
    """Run (or resume) a search; see the module docstring. Progress goes to stdout unless quiet.

    Ray's own output goes to ``ray.log`` in the run folder.
    """
    import optuna

    from tricksearch.tuning._searcher import make_sampler, open_storage
    from tricksearch.spaces import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_dir = Path(config.out).resolve()
    if not resume and (run_dir / "search.json").exists():
        raise ConfigError(
            f"out: {str(run_dir)!r} already holds a search; continue it with "
            f"`tricksearch search --resume {config.out}` or choose another --out."
        )
    # Paths as absolute ones: trials run in other folders, and a resume may start elsewhere.
    if Path(config.space).expanduser().is_file():
        config.space = str(Path(config.space).expanduser().resolve())
    if config.data_root is not None:
        config.data_root = str(Path(config.data_root).expanduser().resolve())
    config.dataset = _absolute_dataset(config.dataset)
    # Everything that can be wrong with the input is found here, before Ray starts.
    base = _base_recipe(config)
    if data is None:
        from tricksearch.engine import load_data

        data = load_data(base)
        own_data = None
    else:
        own_data = data
    device = "cuda" if config.gpus_per_trial > 0 else "cpu"
    space = load_space(config.space).for_model(_traits(base, data, model_factory))
    space = _for_device(space, device)
    make_sampler(config.sampler, config.seed, config.trials)  # checks extras before Ray starts
    stream: IO[str] | None = None if quiet else sys.stdout
    for note in space.notes:
        _say(stream, f"note: {note}")
    if data.info.get("n_skipped"):
        _say(
            stream,
            f"note: skipped {data.info['n_skipped']} unreadable image file(s), e.g. "
            f"{data.info['skipped_files'][0]}",
        )

    run_dir.mkdir(parents=True, exist_ok=True)
    storage = open_storage(run_dir)
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize" if config.mode == "max" else "minimize",
        load_if_exists=True,
    )
    sampler = make_sampler(config.sampler, config.seed, config.trials, offset=len(study.trials))
    done = len(_finished_trials(study))
    remaining = config.trials - done
    if resume:
        _say(stream, f"resuming {run_dir}: {done} of {config.trials} trials finished")
        stored = _stored_result(run_dir) if remaining <= 0 else None
        if stored is not None:  # nothing was interrupted: say where the result is, redo nothing
            _say(stream, "the search had finished; nothing to resume")
            _say(stream, _closing_lines(stored.best, stored.summary, stored.recipe_path, config))
            return stored

    points = []
    if not resume and done == 0 and len(study.trials) == 0:
        from tricksearch.spaces import preset_recipe

        for name in ("baseline", "bag-of-tricks"):
            point = space.point(preset_recipe(name, base))
            if point not in points:
                points.append(point)
        points = points[: config.trials]

    cache_dir = str(run_dir / "cache")
    from tricksearch.tuning._trainable import TrialContext

    ctx = TrialContext(
        base=base.to_dict(),
        space=space,
        cpus_per_trial=config.cpus_per_trial,
        device=device,
        data=own_data,
        model_factory=model_factory,
        cache_dir=cache_dir,
    )
    t_start = time.monotonic()
    timings: dict[str, float] = {}
    interrupted = False
    with _sigterm_as_interrupt():
        try:
            with (
                _ray_session(config, run_dir, timings) as (slots, console),
                contextlib.ExitStack() as st,
            ):
                out = st.enter_context(open(os.devnull, "w")) if quiet else console
                if not resume:  # Ray is up and has the resources: from here on, resumable
                    config.save(run_dir / "search.json")
                if remaining > 0:
                    _say(
                        out,
                        f"searching {config.trials} trials ({remaining} to run) of space "
                        f"{config.space!r} on {config.dataset} with {config.model}, "
                        f"{config.epochs} epochs each, {slots} at a time; Ray's log: "
                        f"{run_dir / 'ray.log'}",
                    )
                    t_tune = time.monotonic()
                    _tune(
                        config,
                        run_dir,
                        space,
                        sampler,
                        storage,
                        points,
                        ctx,
                        slots,
                        remaining,
                        done,
                        resume,
                        out,
                    )
                    timings["tune_seconds"] = time.monotonic() - t_tune
                study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
                from tricksearch.tuning._searcher import close_running_trials

                close_running_trials(study)
                counts = _outcome_counts(study.trials)
                if counts["stopped"] and config.time_budget:
                    _say(
                        out,
                        f"time budget of {config.time_budget:g} s reached: "
                        f"{sum(counts.values())} of {config.trials} trials ran, "
                        f"{counts['stopped']} of them cut short by it",
                    )
                _write_trials_csv(study, run_dir / "trials.csv")
                timings["slots"] = slots
                timings["seconds"] = time.monotonic() - t_start
                return _finish(config, run_dir, base, space, study, ctx, slots, out, timings)
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        with contextlib.suppress(Exception):
            _write_trials_csv(
                optuna.load_study(study_name=STUDY_NAME, storage=storage), run_dir / "trials.csv"
            )
        raise SearchInterrupted(
            f"search interrupted; finished trials are kept in {run_dir / 'study.db'}. "
            f"Continue with: tricksearch search --resume {config.out}"
        )
    raise AssertionError("unreachable")  # pragma: no cover


def _join_auth_mode() -> None:
    """Joining an existing cluster: Ray 2.60 enables token authentication on clusters it starts,
    but a client given an address only sends the token in token mode. Turn it on when the user has
    not chosen (RAY_AUTH_MODE unset) and a token is at hand — what ``ray.init()`` does by itself
    for a local cluster."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: leave it to the user's RAY_AUTH_MODE
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port``."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"address: got {address!r}, but nothing answers there ({exc}); expected the "
            "host:port printed by `ray start --head` (default port 6379), ray://host:10001 or "
            "auto."
        ) from None


@contextlib.contextmanager
def _ray_session(
    config: SearchConfig, run_dir: Path, timings: dict[str, float]
) -> Iterator[tuple[int, IO[str]]]:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C reaches us; resume handles it
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with _ray_output_to(run_dir / "ray.log") as console:
        started = False
        t0 = time.monotonic()
        if not ray.is_initialized():
            if config.address:
                _check_reachable(config.address)
                _join_auth_mode()
            try:
                ray.init(
                    address=config.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            except (ConnectionError, RuntimeError) as exc:
                if not config.address:
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(
                    f"address: could not join the Ray cluster at {config.address!r} ({first}). "
                    "Check the address (host:port of `ray start --head`, or ray://host:10001); "
                    "a cluster with token authentication also needs its token here "
                    "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and "
                    f"RAY_AUTH_MODE=token. Ray's log: {run_dir / 'ray.log'}"
                ) from None
            started = True
        timings["ray_start_seconds"] = time.monotonic() - t0
        try:
            yield _check_resources(config), console
        finally:
            if started:
                ray.shutdown()


def _tune(
    config: SearchConfig,
    run_dir: Path,
    space: Any,
    sampler: Any,
    storage: Any,
    points: list[dict[str, Any]],
    ctx: Any,
    slots: int,
    remaining: int,
    done: int,
    resume: bool,
    out: IO[str],
) -> None:
    import optuna
    from ray import tune

    from tricksearch.tuning._progress import ProgressCallback
    from tricksearch.tuning._searcher import RecordingASHA, TruthfulOptunaSearch
    from tricksearch.tuning._trainable import run_trial

    scheduler = RecordingASHA(
        time_attr="training_iteration",
        max_t=config.epochs,
        grace_period=config.grace,
        reduction_factor=config.reduction_factor,
    )
    if resume:  # the finished trials' values, so new trials are pruned against them
        finished = _finished_trials(optuna.load_study(study_name=STUDY_NAME, storage=storage))
        scheduler.remember([dict(t.intermediate_values) for t in finished], config.mode)
    searcher = TruthfulOptunaSearch(
        space,
        metric=config.metric,
        mode=config.mode,
        points_to_evaluate=points or None,
        sampler=sampler,
        study_name=STUDY_NAME,
        storage=storage,
        max_t=config.epochs,
        adopt_running=resume,
        pruned_by_scheduler=scheduler.pruned,
    )
    progress = ProgressCallback(
        total=config.trials,
        already_done=done,
        max_t=config.epochs,
        metric=config.metric,
        mode=config.mode,
        stream=out,
        pruned_by_scheduler=scheduler.pruned,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, ctx=ctx),
        {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial},
    )
    session = len(list((run_dir / "ray").glob("tune-*"))) if (run_dir / "ray").exists() else 0
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            metric=config.metric,
            mode=config.mode,
            num_samples=remaining,
            max_concurrent_trials=slots,
            reuse_actors=True,
            time_budget_s=config.time_budget,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{session}",
            storage_path=str(run_dir / "ray"),
            verbose=0,
            callbacks=[progress],
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    tuner.fit()


# --- after the search --------------------------------------------------------------------------
def _trial_epochs(t: Any) -> int:
    epochs = t.user_attrs.get("epochs")
    if epochs is not None:
        return int(epochs)
    return max(t.intermediate_values, default=0)


def _write_trials_csv(study: Any, path: Path) -> None:
    """Every trial, one row: its outcome (Optuna's state, or STOPPED for a trial the time budget
    cut; see ``_study.outcome``), value, epochs, seconds and parameters."""
    from tricksearch.tuning._study import outcome

    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", "epochs", "seconds", *keys])
        for t in trials:
            seconds = t.duration.total_seconds() if t.duration else ""
            w.writerow(
                [
                    t.number,
                    outcome(t),
                    "" if t.value is None else t.value,
                    _trial_epochs(t),
                    seconds,
                    *[t.params.get(k, "") for k in keys],
                ]
            )


def _outcome_counts(trials: list[Any]) -> dict[str, int]:
    """Trials per outcome, keyed as results.json has them: complete, pruned, fail, stopped."""
    from tricksearch.tuning._study import outcome

    found = [outcome(t) for t in trials]
    return {k.lower(): found.count(k) for k in ("COMPLETE", "PRUNED", "FAIL", "STOPPED")}


def _nothing_usable(counts: dict[str, int], n: int, config: SearchConfig, run_dir: Path) -> str:
    """Why no trial can be a candidate, and what to do about it."""
    errors = (
        f"The errors are in {run_dir / 'ray'} (error.txt of each trial) and {run_dir / 'ray.log'}."
    )
    budget = "none set" if config.time_budget is None else f"{config.time_budget:g} s"
    if counts["stopped"] and not counts["fail"]:
        return (
            f"the time budget ({budget}) ran out before any trial finished its "
            f"first epoch ({counts['stopped']} of {n} trials stopped); no recipe was written. "
            "A trial first starts a worker (importing torch, loading the data), which takes "
            "seconds on its own: run the search again with a larger --time-budget and a new --out."
        )
    if counts["stopped"]:
        return (
            f"no trial finished an epoch: {counts['fail']} failed and {counts['stopped']} were "
            f"stopped by the time budget ({budget}) first; no recipe was "
            f"written. {errors}"
        )
    return f"every trial failed ({counts['fail']} failed of {n}); no recipe was written. {errors}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _score(t: Any) -> float:
    if t.value is not None:
        return float(t.value)
    return float(t.intermediate_values[max(t.intermediate_values)])


def _pick_candidates(study: Any, config: SearchConfig) -> list[Any]:
    """The top-k distinct configurations: trials that ran the full budget first (by value), then
    the pruned ones that got furthest (by depth, then their last value). All are retrained at the
    full budget, so a pruned candidate competes on equal terms."""
    from optuna.trial import TrialState

    sign = 1.0 if config.mode == "max" else -1.0
    usable = [
        t
        for t in study.trials
        if (t.state == TrialState.COMPLETE and t.value is not None)
        or (t.state == TrialState.PRUNED and t.intermediate_values)
    ]
    usable.sort(
        key=lambda t: (t.state == TrialState.COMPLETE, _trial_epochs(t), sign * _score(t)),
        reverse=True,
    )
    chosen, seen = [], []
    for t in usable:
        if t.params in seen:
            continue
        seen.append(t.params)
        chosen.append(t)
        if len(chosen) == config.top_k:
            break
    return chosen


def _retrain(
    jobs: list[tuple[str, dict[str, Any], int]], ctx: Any, config: SearchConfig, out: IO[str]
) -> list[dict[str, Any]]:
    from tricksearch.tuning._parallel import map_tasks
    from tricksearch.tuning._trainable import retrain_one

    results: list[dict[str, Any]] = []
    tasks = [(recipe, seed) for _, recipe, seed in jobs]
    for i, res in map_tasks(
        retrain_one,
        tasks,
        num_cpus=config.cpus_per_trial,
        num_gpus=config.gpus_per_trial,
        shared=ctx,
    ):
        label, _, seed = jobs[i]
        if isinstance(res, Exception):  # a candidate that raises is out, not the search
            res = {"seed": seed, "error": str(res).splitlines()[0]}
        res["label"] = label
        results.append(res)
        score = f"val_acc {res['val_acc']:.4f}" if "val_acc" in res else "failed"
        _say(out, f"  retrained {len(results)}/{len(jobs)}: {label} seed {seed}: {score}")
    return results


def _finish(
    config: SearchConfig,
    run_dir: Path,
    base: Recipe,
    space: Any,
    study: Any,
    ctx: Any,
    slots: int,
    out: IO[str],
    timings: dict[str, float],
) -> SearchResult:
    from tricksearch.api import versions

    trials = study.trials
    counts = _outcome_counts(trials)
    candidates = _pick_candidates(study, config)
    if not candidates:
        raise SearchFailed(_nothing_usable(counts, len(trials), config, run_dir))
    seeds = [config.seed + i for i in range(config.seeds)]
    recipes = {f"trial {t.number}": space.to_recipe(base, t.params) for t in candidates}
    recipes["baseline"] = base.baseline()
    _say(
        out,
        f"retraining the top {len(candidates)} trial(s) and the baseline at the full "
        f"budget with seeds {seeds} ...",
    )
    # Identical recipes (a candidate that is the baseline) are trained once and shared.
    unique: dict[str, str] = {}
    alias: dict[str, str] = {}
    for label in ["baseline", *[k for k in recipes if k != "baseline"]]:
        key = recipes[label].dumps("json")
        alias[label] = unique.setdefault(key, label)
    jobs = [(label, recipes[label].to_dict(), s) for label in set(alias.values()) for s in seeds]
    jobs.sort(key=lambda j: (j[0] != "baseline", j[0], j[2]))
    trained = _retrain(jobs, ctx, config, out)
    results = [
        r | {"label": label} for label in recipes for r in trained if r["label"] == alias[label]
    ]

    table: list[dict[str, Any]] = []
    for label, recipe in recipes.items():
        rows = sorted((r for r in results if r["label"] == label), key=lambda r: r["seed"])
        ok = [r for r in rows if "error" not in r]
        val = _mean_std([r[config.metric] for r in ok])
        table.append(
            {
                "label": label,
                "recipe": recipe,
                "rows": rows,
                "ok": len(ok) == len(rows),
                "val_mean": val[0],
                "val_std": val[1],
            }
        )
    pool = [c for c in table if c["label"] != "baseline" and c["ok"]]
    if not pool:
        raise SearchFailed("every top candidate failed when retrained; no recipe was written.")
    sign = 1 if config.mode == "max" else -1
    winner = max(pool, key=lambda c: sign * c["val_mean"])
    baseline = next(c for c in table if c["label"] == "baseline")

    def evidence(c: dict[str, Any]) -> dict[str, Any]:
        ok = [r for r in c["rows"] if "error" not in r]
        va, vs = _mean_std([r["val_acc"] for r in ok])
        ta, ts = _mean_std([r["test_acc"] for r in ok])
        return {
            "val_acc_mean": va,
            "val_acc_std": vs,
            "test_acc_mean": ta,
            "test_acc_std": ts,
            "val_acc": [r["val_acc"] for r in ok],
            "test_acc": [r["test_acc"] for r in ok],
            "failed_seeds": [r["seed"] for r in c["rows"] if "error" in r],
        }

    win_ev, base_ev = evidence(winner), evidence(baseline)
    trial_epochs = sum(_trial_epochs(t) for t in trials)
    summary = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": {
            "name": config.dataset,
            "val_fraction": config.val_fraction,
            "test_fraction": config.test_fraction,
            "split_seed": config.split_seed,
        },
        "model": config.model,
        "budget": {"epochs": config.epochs},
        "search": {
            "space": config.space,
            "sampler": config.sampler,
            "seed": config.seed,
            "metric": config.metric,
            "trials_requested": config.trials,
            "trials": counts,
            "trial_epochs": trial_epochs,
            "full_budget_epochs": len(trials) * config.epochs,
            "chosen_from": winner["label"],
            "candidates": [f"trial {t.number}" for t in candidates],
            "seconds": round(timings["seconds"], 1),
            "ray_start_seconds": round(timings.get("ray_start_seconds", 0.0), 2),
            "tune_seconds": round(timings.get("tune_seconds", 0.0), 2),
            "slots": slots,
            "trial_train_seconds": round(
                sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in trials), 2
            ),
        },
        "seeds": seeds,
        "recipe": win_ev,
        "baseline": base_ev,
        "gain": {
            "val_acc": win_ev["val_acc_mean"] - base_ev["val_acc_mean"],
            "test_acc": win_ev["test_acc_mean"] - base_ev["test_acc_mean"],
        },
        "versions": versions(),
    }
    best: Recipe = winner["recipe"]
    best = best.with_changes(
        budget=best.budget.to_dict() | {"seed": config.seed},
        provenance=json.loads(json.dumps(summary)),
    )
    recipe_path = best.save(run_dir / "best_recipe.yaml")
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "candidates": [
                    {
                        "label": c["label"],
                        "val_mean": c["val_mean"],
                        "val_std": c["val_std"],
                        "ok": c["ok"],
                        "tricks": sorted(c["recipe"].tricks_on()),
                        "val": [r.get(config.metric) for r in c["rows"]],
                    }
                    for c in table
                ],
            },
            indent=2,
        )
        + "\n"
    )
    _write_report(run_dir, out)
    _say(out, _closing_lines(best, summary, recipe_path, config))
    return SearchResult(
        best=best, run_dir=run_dir, recipe_path=recipe_path, summary=summary, candidates=table
    )


def _stored_result(run_dir: Path) -> SearchResult | None:
    """The result a finished search left in ``run_dir`` (best_recipe.yaml, then results.json, are
    its last writes), or None when the search stopped before writing both. ``candidates`` are
    results.json's summaries (label, val mean/std, tricks), not the retrained recipes."""
    recipe_path, results = run_dir / "best_recipe.yaml", run_dir / "results.json"
    if not (recipe_path.is_file() and results.is_file()):
        return None
    try:
        stored = json.loads(results.read_text())
        best = load_recipe(recipe_path)
    except (OSError, ValueError, TricksearchError):  # a damaged file: redo the retraining
        return None
    summary = stored.get("summary") if isinstance(stored, dict) else None
    if not isinstance(summary, dict) or not {"recipe", "baseline", "gain"} <= set(summary):
        return None
    return SearchResult(
        best=best,
        run_dir=run_dir,
        recipe_path=recipe_path,
        summary=summary,
        candidates=stored.get("candidates") or [],
    )


def _write_report(run_dir: Path, out: IO[str]) -> None:
    try:
        from tricksearch.report import write_report
    except ImportError:
        return
    try:
        path = write_report(run_dir)
        _say(out, f"report: {path}")
    except Exception as exc:  # the recipe is already safe on disk; a report bug must not lose it
        logger.exception("report failed")
        _say(
            out,
            f"warning: the report could not be written ({exc}); "
            f"retry with `tricksearch report {run_dir}`",
        )


def _closing_lines(best: Recipe, summary: dict[str, Any], path: Path, config: SearchConfig) -> str:
    r, b = summary["recipe"], summary["baseline"]
    n = len(summary["seeds"])
    tricks = ", ".join(best.tricks_on()) or "none"
    changed = [
        f"{k} {getattr(best.budget, k):g} instead of {getattr(config, k):g}"
        for k in ("lr", "batch_size")
        if getattr(best.budget, k) != getattr(config, k)
    ]
    searched = summary.get("search", {})
    budget = summary.get("budget", {})
    default_budget = f"; {', '.join(changed)}" if changed else ""
    return (
        f"best recipe: {path}\n"
        f"  tricks: {tricks}{default_budget}\n"
        f"  test acc {r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} vs baseline "
        f"{b['test_acc_mean']:.4f} ± {b['test_acc_std']:.4f} ({n} seed{'s' if n > 1 else ''}; "
        f"gain {summary['gain']['test_acc']:+.4f}; {sum(searched.get('trials', {}).values())} "
        f"trials of {budget.get('epochs', '?')} epochs)\n"
        f"  reproduce: tricksearch train --recipe {path}"
    )
