"""Reading a finished search's Optuna study: for the report, which must not import optuna itself.

``tuning/`` is the only package that imports ray and optuna (DESIGN.md); the report asks here.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from tricksearch.errors import ConfigError

if TYPE_CHECKING:
    import optuna
    from optuna.importance import BaseImportanceEvaluator
    from optuna.trial import FrozenTrial

__all__ = [
    "ERROR_ATTR",
    "ERROR_FILE_ATTR",
    "REFERENCE_ATTR",
    "STOPPED_ATTR",
    "STUDY_NAME",
    "at_epoch",
    "load_study",
    "outcome",
    "param_importances",
]

#: The study name every search writes (one study per run folder).
STUDY_NAME = "tricksearch"

#: User attribute of a trial the search's end (``--time-budget``) cut short. Optuna holds it as
#: PRUNED with the values it reported, or as FAIL when it reported none (samplers skip FAIL; a
#: PRUNED trial without a value would rank as the worst score). Neither is the configuration's
#: doing, so the user reads "stopped by the time budget", not "pruned by ASHA" or "failed".
STOPPED_ATTR = "stopped_by_time_budget"
#: User attribute of the baseline's trial: a reference for ASHA's first rung, stopped there.
REFERENCE_ATTR = "reference"
#: User attributes of a failed trial: its cause in one line, and the file with the traceback.
ERROR_ATTR = "error"
ERROR_FILE_ATTR = "error_file"


#: The copy of ``study.db`` kept beside it, refreshed after every finished trial.
STUDY_COPY = "study.db.bak"


def backup_study(run_dir: Path) -> Path | None:
    """Copy ``run_dir/study.db`` to ``study.db.bak`` with SQLite's online backup (a consistent
    snapshot even while the search writes; replaced atomically). The copy, or None if the study
    could not be read (the previous copy is then kept)."""
    import sqlite3

    db, copy = run_dir / "study.db", run_dir / STUDY_COPY
    tmp = copy.with_name(copy.name + ".tmp")
    try:
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
        tmp.replace(copy)
    except (sqlite3.Error, OSError):
        tmp.unlink(missing_ok=True)
        return None
    return copy


def restore_hint(run_dir: Path) -> str:
    """How to put the copy back, when there is one (for a damaged or emptied study)."""
    copy = run_dir / STUDY_COPY
    if not copy.is_file() or copy.stat().st_size == 0:
        return "Restore it from a copy, or start the search again with another --out."
    return (
        f"A copy made after its last finished trial is kept: restore it with "
        f"`cp {copy} {run_dir / 'study.db'}` and resume; or start again with another --out."
    )


def outcome(trial: FrozenTrial) -> str:
    """What became of a trial, as the user reads it: COMPLETE, PRUNED (by ASHA), FAIL, STOPPED
    (cut by the time budget, with or without values), OOM (out of GPU memory: Optuna FAIL, so
    samplers skip it, but not a failed configuration) or RUNNING/WAITING."""
    from tricksearch.tuning._packing import OOM_ATTR

    state = trial.state.name
    if state == "FAIL" and OOM_ATTR in trial.user_attrs:  # out of GPU memory: not the config's
        return "OOM"
    if state in ("FAIL", "PRUNED") and trial.user_attrs.get(STOPPED_ATTR):
        return "STOPPED"
    return state


def load_study(run_dir: str | Path) -> optuna.Study:
    """The Optuna study of the run folder ``run_dir``, or a ConfigError saying what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"report: no run folder at {str(run_dir)!r}; expected the --out folder of a "
            "`tricksearch search` (holding study.db, results.json, best_recipe.yaml)."
        )
    db = run_dir / "study.db"
    if not db.is_file():
        raise ConfigError(
            f"report: no study at {str(db)!r}; expected the Optuna SQLite study (study name "
            f"{STUDY_NAME!r}) that `tricksearch search --out {run_dir}` writes."
        )
    import optuna

    url = f"sqlite:///{db.resolve()}"
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=url)
    except KeyError:
        names = optuna.get_all_study_names(storage=url)
        raise ConfigError(
            f"report: {str(db)!r} holds no study named {STUDY_NAME!r} (it holds: "
            f"{', '.join(names) or 'none'}); expected the study a tricksearch search writes."
        ) from None
    except Exception as exc:  # sqlalchemy errors: not a database, locked, newer schema …
        raise ConfigError(
            f"report: cannot open {str(db)!r} as an Optuna study ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]})."
        ) from None


def at_epoch(study: optuna.Study, step: int) -> optuna.Study:
    """An in-memory study holding, as COMPLETE, every COMPLETE or PRUNED trial of ``study`` that
    reported epoch ``step``, with its value at that epoch: importance at one fidelity, so trials
    ASHA pruned count too."""
    import optuna
    from optuna.trial import TrialState, create_trial

    quiet = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        view = optuna.create_study(direction=study.direction)
    finally:
        optuna.logging.set_verbosity(quiet)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        value = t.intermediate_values.get(step)
        if value is None or not math.isfinite(value):
            continue
        view.add_trial(
            create_trial(
                params=t.params,
                distributions=t.distributions,
                value=value,
                state=TrialState.COMPLETE,
            )
        )
    return view


def default_evaluator() -> BaseImportanceEvaluator:
    """Optuna's default importance evaluator, built explicitly so its class can be named:
    PED-ANOVA on Optuna >= 5 (handles conditional parameters), fANOVA before."""
    import optuna

    importance = optuna.importance
    major = int(optuna.__version__.split(".")[0])
    if major >= 5 and hasattr(importance, "PedAnovaImportanceEvaluator"):
        return importance.PedAnovaImportanceEvaluator()
    return importance.FanovaImportanceEvaluator()


def param_importances(study: optuna.Study) -> tuple[dict[str, float], str, list[str]]:
    """(importance per parameter, the evaluator's class name, Optuna's warnings, one line each).

    Raises ``ValueError`` when the evaluator cannot rate the study.
    """
    import optuna

    evaluator = default_evaluator()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            params = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (ValueError, RuntimeError, ImportError) as exc:
            raise ValueError(
                f"{type(evaluator).__name__} could not rate this study: {exc}"
            ) from None
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    return dict(params), type(evaluator).__name__, notes


def evaluator_name() -> str:
    """The class name of the evaluator :func:`param_importances` uses."""
    return type(default_evaluator()).__name__
