"""Reading a warm start's prior (``--warm-start DIR``): the finished trials of an earlier search.

The sampler that uses them, and the rules, are in ``_warmstart.py``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tricksearch.errors import ConfigError

__all__ = ["DIRECTION_ATTR", "check_prior_folder", "load_prior", "outcome", "prior_line"]

#: System attribute of a prior trial: the direction (``"maximize"``/``"minimize"``) of the study
#: it comes from (``load_prior`` sets it; without it the prior has the new study's direction).
DIRECTION_ATTR = "tricksearch:warm_start:direction"

_EXPECTED = "expected the --out folder of an earlier `tricksearch search` (holding study.db)"


def check_prior_folder(value: str | Path) -> Path:
    """``value`` as an existing folder, or a one-line ``ConfigError`` naming ``warm_start``."""
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "a file, not a folder" if path.exists() else "does not exist"
        raise ConfigError(f"warm_start: got {str(value)!r}, which {what}; {_EXPECTED}.")
    return path


def load_prior(run_dir: Path) -> list[FrozenTrial]:
    """The finished trials of the search in ``run_dir``: COMPLETE ones with a finite value and
    PRUNED ones with a finite intermediate value, each marked with its study's direction
    (``DIRECTION_ATTR``). The study file is read from a copy: the earlier search is not touched.
    One-line ``ConfigError`` (naming ``warm_start``) for a missing folder, no ``study.db``, a
    damaged or unreadable file, and a study with no finished trial."""
    from tricksearch.tuning._study import STUDY_NAME

    folder = check_prior_folder(run_dir)
    db = folder / "study.db"
    if not db.is_file():
        raise ConfigError(f"warm_start: {str(run_dir)!r} holds no study.db; {_EXPECTED}.")
    every, directions = _read_study(db, STUDY_NAME)
    if len(directions) != 1:
        raise ConfigError(
            f"warm_start: {str(db)!r} holds a multi-objective study; expected the single-"
            "objective study of an earlier `tricksearch search`."
        )
    direction = "maximize" if directions[0] == StudyDirection.MAXIMIZE else "minimize"
    prior = []
    for t in every:
        if outcome(t) is None:
            continue
        t.system_attrs = {**t.system_attrs, DIRECTION_ATTR: direction}
        prior.append(t)
    if not prior:
        raise ConfigError(
            f"warm_start: {str(run_dir)!r} holds no finished trial ({len(every)} trials, none "
            "COMPLETE or PRUNED with a value); expected a search that finished at least one."
        )
    return prior


def _read_study(db: Path, name: str) -> tuple[list[FrozenTrial], list[StudyDirection]]:
    """The trials and directions of the study ``name`` in the SQLite file ``db``, read from a
    copy (the earlier search's file is neither locked nor written)."""
    from tricksearch.tuning._failures import cause_line

    try:
        with db.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ConfigError(
            f"warm_start: cannot read {str(db)!r} ({exc.strerror or exc}); {_EXPECTED}."
        ) from None
    if head != b"SQLite format 3\x00":
        what = "is empty (0 bytes)" if not head else "is not a SQLite database"
        raise ConfigError(f"warm_start: {str(db)!r} {what}; expected an Optuna study file.")
    with tempfile.TemporaryDirectory(prefix="tricksearch-prior-") as tmp:
        copy_path = Path(tmp) / "study.db"
        storage = None
        try:
            shutil.copyfile(db, copy_path)
            storage = optuna.storages.RDBStorage(f"sqlite:///{copy_path}")
            loaded = optuna.load_study(study_name=name, storage=storage)
            trials, directions = loaded.get_trials(deepcopy=True), list(loaded.directions)
        except Exception as exc:  # sqlalchemy's errors, a missing study: one line
            why = f"no study named {name!r}" if isinstance(exc, KeyError) else cause_line(exc)
            raise ConfigError(
                f"warm_start: {str(db)!r} cannot be read ({why}); expected the Optuna study of "
                "an earlier `tricksearch search`."
            ) from None
        finally:
            if storage is not None:
                with suppress(Exception):
                    storage.engine.dispose()
    return trials, directions


def prior_line(run_dir: str | Path, prior: Sequence[FrozenTrial]) -> str:
    """``warm start: N finished trials of DIR (dataset X, model Y)`` (from its search.json)."""
    dataset = model = "?"
    with suppress(Exception):
        saved = json.loads((Path(run_dir) / "search.json").read_text(encoding="utf-8"))
        dataset, model = str(saved.get("dataset", "?")), str(saved.get("model", "?"))
    where = f"{run_dir} (dataset {dataset}, model {model})"
    return f"warm start: {len(prior)} finished trials of {where}"


def outcome(t: FrozenTrial) -> tuple[int | None, float] | None:
    """A finished trial's (furthest epoch, value): ``(None, value)`` for a COMPLETE one; None for
    a trial with no finite value (running, failed, or PRUNED before its first report)."""
    if t.state == TrialState.COMPLETE and t.values is not None and len(t.values) == 1:
        value = float(t.values[0])
        return (None, value) if math.isfinite(value) else None
    if t.state == TrialState.PRUNED:
        steps = [s for s, v in t.intermediate_values.items() if math.isfinite(v)]
        if steps:
            step = max(steps)
            return step, float(t.intermediate_values[step])
    return None
