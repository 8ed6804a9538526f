"""Tracking (``--track``): the trials and the retrainings in TensorBoard, MLflow or W&B.

Everything is written on the driver, as results arrive, under the run folder:

- ``tensorboard``: event files (tensorboardX, which ``ray[tune]`` installs) in ``RUN/tb/``, one
  run per trial, named by its number in ``trials.csv`` and the tricks it has on
  (``trial-003_mixup+ema``), and one per retraining (``retrain_baseline_seed0``,
  ``retrain_trial-3_seed1``): ``val_acc``, ``val_loss``, ``train_loss`` (and ``lr`` when the
  result has it) per epoch; a retraining's ``val_acc`` per epoch and its final ``val_loss``,
  ``test_acc``, ``test_loss``; the recipe as text. A name already in ``RUN/tb`` (a trial run
  again by a resume) gets ``_2``, ``_3``, … so no curve is drawn over another.
- ``mlflow``: Ray Tune's ``MLflowLoggerCallback``, one MLflow run per trial (its parameters, every
  metric per epoch), in ``RUN/mlflow.db`` (artifacts in ``RUN/mlruns``) unless
  ``MLFLOW_TRACKING_URI`` names another store.
- ``wandb``: Ray Tune's ``WandbLoggerCallback``, offline (``RUN/wandb/offline-run-*``; ``wandb
  sync`` uploads them) unless ``WANDB_MODE`` says otherwise.

Which trackers are allowed and installed is checked by ``SearchConfig`` before Ray starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from tricksearch._numbers import finite_number as _finite

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from tricksearch.tuning._config import SearchConfig
    from tricksearch.tuning._tune import TuneJob

__all__ = [
    "TB_DIR",
    "RetrainWriter",
    "TensorBoardCallback",
    "retrain_hook",
    "retrain_run_name",
    "tracking_callbacks",
    "trial_run_name",
]

#: The folder of the TensorBoard runs in the run folder.
TB_DIR = "tb"
#: The per-epoch metrics of a trial's result written to TensorBoard (those present).
TRIAL_SCALARS = ("val_acc", "val_loss", "train_loss", "lr")
#: A retraining's metrics written once, at its last epoch (its val_acc is the curve).
FINAL_SCALARS = ("val_loss", "test_acc", "test_loss")
#: The experiment (MLflow) and project (W&B) the trials are logged to.
PROJECT = "tricksearch"
#: Longest run name (a folder name): the tricks past it are counted, not named.
MAX_NAME = 120

_log = logging.getLogger(__name__)


# --- names ---------------------------------------------------------------------------------------
def trial_run_name(number: int | str, tricks: Iterable[str]) -> str:
    """``trial-003_mixup+ema``: the trial's number in ``trials.csv`` (or Ray's trial id when the
    number is unknown) and the tricks it has on (``no-tricks`` for none)."""
    head = f"trial-{number:03d}" if isinstance(number, int) else f"trial-{_slug(str(number))}"
    names = [_slug(t) for t in tricks] or ["no-tricks"]
    shown: list[str] = []
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        body = "+".join([*shown, name, *([f"{rest}-more"] if rest else [])])
        if len(head) + 1 + len(body) > MAX_NAME:
            break
        shown.append(name)
    rest = len(names) - len(shown)
    return f"{head}_" + "+".join([*shown, *([f"{rest}-more"] if rest else [])])


def retrain_run_name(label: str, seed: int) -> str:
    """``retrain_trial-3_seed1`` for the retraining of ``label`` (``trial 3``, ``baseline``,
    ``tuned baseline``, ``without ema, mixup``) with ``seed``."""
    return f"retrain_{_slug(label.replace(', ', '+'))}_seed{seed}"


def _slug(text: str) -> str:
    """``text`` as a folder name: spaces as ``-``, anything unusual as ``-``."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", text.strip().replace(" ", "-"))[:MAX_NAME] or "-"


def fresh_dir(root: Path, name: str) -> Path:
    """``root / name``, or ``root / name_2`` (``_3``, …) when it is taken."""
    path, k = root / name, 1
    while path.exists():
        k += 1
        path = root / f"{name}_{k}"
    return path


class TrialNames:
    """The readable name of each Ray trial (:func:`trial_run_name`), the same for every tracker;
    the number is the Optuna trial's (``trials.csv``), read from the searcher."""

    def __init__(self, job: TuneJob, searcher: Any) -> None:
        self._job, self._searcher = job, searcher
        self._names: dict[str, str] = {}
        self.recipes: dict[str, str] = {}

    def __call__(self, trial: Trial) -> str:
        if trial.trial_id not in self._names:
            ot_trial = getattr(self._searcher, "_ot_trials", {}).get(trial.trial_id)
            number = ot_trial.number if ot_trial is not None else trial.trial_id
            tricks, self.recipes[trial.trial_id] = _recipe_of(self._job, trial.config)
            self._names[trial.trial_id] = trial_run_name(number, tricks)
        return self._names[trial.trial_id]


def _recipe_of(job: TuneJob, config: Mapping[str, Any]) -> tuple[list[str], str]:
    """The tricks on and the recipe (YAML) of a trial's flat configuration; none and the
    configuration itself when the space cannot read it (the trial fails and says why)."""
    from tricksearch.recipe import Recipe

    try:
        recipe = job.space.to_recipe(Recipe.from_dict(job.ctx.base), dict(config))
    except Exception:
        return [], "\n".join(f"{k}: {v}" for k, v in sorted(config.items()))
    return list(recipe.tricks_on()), recipe.dumps("yaml")


# --- TensorBoard ---------------------------------------------------------------------------------
def _writer(path: Path) -> Any:
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(path), flush_secs=10)


def _as_text(recipe: str) -> str:
    """The recipe as TensorBoard's text plugin shows it: a markdown code block."""
    return "\n".join("    " + line for line in recipe.splitlines())


class TensorBoardCallback(Callback):
    """One TensorBoard run per trial in ``root``: the trial's metrics after each epoch and its
    recipe as text. A trial restarted by Ray (a lost worker) goes on in the same run."""

    def __init__(self, root: Path, names: TrialNames) -> None:
        self.root, self.names = root, names
        self._writers: dict[str, Any] = {}

    def _open(self, trial: Trial) -> Any:
        if trial.trial_id not in self._writers:
            writer = _writer(fresh_dir(self.root, self.names(trial)))
            writer.add_text("recipe", _as_text(self.names.recipes[trial.trial_id]), 0)
            self._writers[trial.trial_id] = writer
        return self._writers[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        with _logged_os_error():
            self._open(trial)

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ):
        step = result.get("epoch") or result.get("training_iteration")
        if not isinstance(step, int):
            return
        with _logged_os_error():
            writer = self._open(trial)
            for key in TRIAL_SCALARS:
                if _finite(result.get(key)):
                    writer.add_scalar(key, float(result[key]), step)
            writer.flush()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._close(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any):
        self._close(trial.trial_id)

    def on_experiment_end(self, trials: list[Trial], **info: Any):
        for trial_id in list(self._writers):
            self._close(trial_id)

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        if writer is not None:
            with _logged_os_error():
                writer.close()


class RetrainWriter:
    """The retraining hook of ``run_jobs``: each finished training as a TensorBoard run in
    ``root`` (a failed one, which has no curve, is left out)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, result: Mapping[str, Any]) -> None:
        curve = result.get("curve")
        if not curve:
            return
        with _logged_os_error():
            path = fresh_dir(self.root, retrain_run_name(result["label"], result["seed"]))
            writer = _writer(path)
            try:
                for epoch, value in enumerate(curve, start=1):
                    writer.add_scalar("val_acc", float(value), epoch)
                for key in FINAL_SCALARS:
                    if _finite(result.get(key)):
                        writer.add_scalar(key, float(result[key]), len(curve))
                if result.get("recipe"):
                    writer.add_text("recipe", _as_text(_recipe_text(result["recipe"])), 0)
            finally:
                writer.close()


def _recipe_text(recipe: Mapping[str, Any]) -> str:
    from tricksearch.recipe import Recipe

    try:
        return Recipe.from_dict(dict(recipe)).dumps("yaml")
    except Exception:
        return str(dict(recipe))


def retrain_hook(config: SearchConfig) -> Callable[[Mapping[str, Any]], None] | None:
    """What ``run_jobs`` calls with each result: a :class:`RetrainWriter` when ``--track
    tensorboard``, else None."""
    if "tensorboard" not in config.track:
        return None
    return RetrainWriter(Path(config.out).resolve() / TB_DIR)


@contextlib.contextmanager
def _logged_os_error() -> Iterator[None]:
    """A tracker that cannot write (disk full, folder removed) is logged, never fatal."""
    try:
        yield
    except OSError as exc:
        _log.warning("tracking: cannot write (%s)", exc)


# --- the callbacks of a Tuner run ----------------------------------------------------------------
def tracking_callbacks(job: TuneJob, searcher: Any) -> list[Callback]:
    """The Ray Tune callbacks of ``job.config.track`` (none when it is empty)."""
    track = job.config.track
    if not track:
        return []
    names = TrialNames(job, searcher)
    callbacks: list[Callback] = []
    if "tensorboard" in track:
        callbacks.append(TensorBoardCallback(job.run_dir / TB_DIR, names))
    if "mlflow" in track:
        callbacks.append(_mlflow_callback(job.run_dir, names))
    if "wandb" in track:
        callbacks.append(_wandb_callback(job.run_dir, names))
    return callbacks


def _mlflow_callback(run_dir: Path, names: TrialNames) -> Callback:
    """Ray's ``MLflowLoggerCallback`` with the readable run names, in ``RUN/mlflow.db`` (MLflow's
    own local store; its file store is refused by MLflow 3) unless ``MLFLOW_TRACKING_URI`` is
    set."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    own = not os.environ.get("MLFLOW_TRACKING_URI")
    uri = f"sqlite:///{run_dir / 'mlflow.db'}" if own else None

    class NamedMLflow(MLflowLoggerCallback):  # type: ignore[misc]
        def setup(self, *args: Any, **kwargs: Any) -> None:
            for name in ("mlflow", "alembic"):  # its database set-up lines: not on the console
                logging.getLogger(name).setLevel(logging.WARNING)
            if own:  # the artifacts beside the database, not in the current folder
                import mlflow

                client = mlflow.MlflowClient(uri)
                if client.get_experiment_by_name(PROJECT) is None:
                    client.create_experiment(PROJECT, (run_dir / "mlruns").as_uri())
            super().setup(*args, **kwargs)

        def log_trial_start(self, trial: Trial) -> None:
            if trial not in self._trial_runs:
                tags = {**self.tags, "trial_name": str(trial), "run_folder": str(run_dir)}
                run = self.mlflow_util.start_run(tags=tags, run_name=names(trial))
                self._trial_runs[trial] = run.info.run_id
            super().log_trial_start(trial)

    return NamedMLflow(tracking_uri=uri, experiment_name=PROJECT)


def _wandb_callback(run_dir: Path, names: TrialNames) -> Callback:
    """Ray's ``WandbLoggerCallback`` with the readable run names, offline in ``RUN/wandb`` unless
    ``WANDB_MODE`` is set (``online`` needs a W&B login)."""
    from ray.air.integrations.wandb import WandbLoggerCallback

    mode = os.environ.get("WANDB_MODE") or "offline"

    class NamedWandb(WandbLoggerCallback):  # type: ignore[misc]
        def setup(self, *args: Any, **kwargs: Any) -> None:
            saved = os.environ.get("WANDB_MODE")
            os.environ["WANDB_MODE"] = mode  # Ray asks for an API key unless offline
            try:
                super().setup(*args, **kwargs)
            finally:
                if saved is None:
                    del os.environ["WANDB_MODE"]
                else:
                    os.environ["WANDB_MODE"] = saved

        def log_trial_start(self, trial: Trial) -> None:
            self.kwargs = {**self.kwargs, "name": names(trial)}
            super().log_trial_start(trial)

    return NamedWandb(project=PROJECT, group=run_dir.name, mode=mode, dir=str(run_dir))
