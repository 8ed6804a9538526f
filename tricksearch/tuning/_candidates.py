"""Choosing what to retrain and the winner: pure functions over plain records.

    Optuna trials --trial_record--> TrialRecord --rank--> pick_candidates (top-k distinct,
        ranked by their estimated full-budget value; the baseline's configuration excluded)
    retrained rows (one per label and seed) --candidate_table--> mean/std per candidate
    candidate table --choose_winner--> the leader: the best mean among the candidates (whether it
        beats the baseline is ``_decide``'s question)

Nothing here imports Ray or Optuna: the selection is tested with hand-made records. How trials
are ordered lives in :func:`rank` alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tricksearch.tuning._result import SearchFailed
from tricksearch.tuning._study import ERROR_ATTR, ERROR_FILE_ATTR, outcome

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from tricksearch.recipe import Recipe

__all__ = [
    "TrialRecord",
    "candidate_table",
    "choose_winner",
    "evidence",
    "mean_std",
    "pick_candidates",
    "estimated_final",
    "rank",
    "trial_record",
]


@dataclass(frozen=True)
class TrialRecord:
    """One trial of the study, as plain values.

    ``state``: Optuna's state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING); ``outcome``: what
    the user reads (``_study.outcome``: STOPPED for a trial the time budget cut; left out, the
    state). ``epochs``: the epochs it trained. ``seconds``: its wall time (None while unknown);
    ``train_seconds``: the time spent in its own training and validation. ``error``: for a
    failed trial, its cause in one line (``ValueError: …``); ``error_file``: where the whole
    traceback is (Ray's ``error.txt``).
    """

    number: int
    state: str
    value: float | None
    intermediate_values: Mapping[int, float]
    params: Mapping[str, Any]
    epochs: int
    outcome: str | None = None
    seconds: float | None = None
    train_seconds: float = 0.0
    error: str | None = None
    error_file: str | None = None

    def __post_init__(self) -> None:
        if self.outcome is None:
            object.__setattr__(self, "outcome", self.state)

    @property
    def score(self) -> float:
        """Its value, or for a trial stopped early the value at the last epoch it reported."""
        if self.value is not None:
            return float(self.value)
        return float(self.intermediate_values[max(self.intermediate_values)])


def trial_record(trial: FrozenTrial) -> TrialRecord:
    """The adapter from an Optuna trial (read only: no Optuna import needed)."""
    epochs = trial.user_attrs.get("epochs")
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=trial.value,
        intermediate_values=dict(trial.intermediate_values),
        params=dict(trial.params),
        epochs=int(epochs) if epochs is not None else max(trial.intermediate_values, default=0),
        outcome=outcome(trial),
        seconds=trial.duration.total_seconds() if trial.duration else None,
        train_seconds=float(trial.user_attrs.get("train_seconds", 0.0)),
        error=trial.user_attrs.get(ERROR_ATTR),
        error_file=trial.user_attrs.get(ERROR_FILE_ATTR),
    )


def estimated_final(record: TrialRecord, references: Sequence[TrialRecord], max_t: int) -> float:
    """An estimate of the value ``record`` would reach at the full budget ``max_t``.

    A trial that ran the full budget is its value. A trial stopped at epoch e with value v is
    v plus the median gain from epoch e to the end among the ``references`` (trials that ran the
    full budget and reported epoch e): how much trials of this search still improved after that
    epoch. Without such a reference the estimate is v itself."""
    if record.epochs >= max_t and record.value is not None:
        return float(record.value)
    epoch = max(record.intermediate_values)
    gains = [
        float(r.intermediate_values[max(r.intermediate_values)] - r.intermediate_values[epoch])
        for r in references
        if epoch in r.intermediate_values
    ]
    return record.score + (statistics.median(gains) if gains else 0.0)


def rank(records: Sequence[TrialRecord], mode: str, max_t: int | None = None) -> list[TrialRecord]:
    """The trials that can be candidates, best first by their estimated full-budget value
    (:func:`estimated_final`), so a trial cut at epoch 8 that was heading above the finished ones
    is not passed over for them; on a tie the deeper trial first, then the study's order.
    ``max_t``: the full budget in epochs (default: the deepest trial's). ``mode``: ``"max"`` or
    ``"min"``, the metric's direction."""
    usable = [
        r
        for r in records
        if (r.state == "COMPLETE" and r.value is not None)
        or (r.state == "PRUNED" and r.intermediate_values)
    ]
    if not usable:
        return []
    full = max(r.epochs for r in usable) if max_t is None else max_t
    references = [r for r in usable if r.state == "COMPLETE" and r.epochs >= full]
    sign = 1.0 if mode == "max" else -1.0
    estimate = {r.number: estimated_final(r, references, full) for r in usable}
    return sorted(usable, key=lambda r: (sign * estimate[r.number], r.epochs), reverse=True)


def pick_candidates(
    records: Sequence[TrialRecord],
    mode: str,
    top_k: int,
    *,
    max_t: int | None = None,
    exclude: Sequence[Mapping[str, Any]] = (),
) -> list[TrialRecord]:
    """The ``top_k`` best-ranked distinct configurations (a repeated parameter set counts once;
    ``exclude``: parameter sets that are retrained anyway, such as the baseline's, take no slot).
    All are retrained at the full budget, so a pruned candidate competes on equal terms."""
    chosen: list[TrialRecord] = []
    for r in rank(records, mode, max_t):
        if any(r.params == c.params for c in chosen) or any(r.params == p for p in exclude):
            continue
        chosen.append(r)
        if len(chosen) == top_k:
            break
    return chosen


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value, NaN for none)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def candidate_table(
    recipes: Mapping[str, Recipe], results: Sequence[Mapping[str, Any]], metric: str
) -> list[dict[str, Any]]:
    """One row per label of ``recipes`` (in its order): ``label``, ``recipe``, ``rows`` (its
    retrained results by seed; a failed seed holds ``error``), ``ok`` (no seed failed), and
    ``val_mean``/``val_std`` of ``metric`` over the seeds that did not fail."""
    table: list[dict[str, Any]] = []
    for label, recipe in recipes.items():
        rows = sorted((r for r in results if r["label"] == label), key=lambda r: r["seed"])
        ok = [r for r in rows if "error" not in r]
        val_mean, val_std = mean_std([r[metric] for r in ok])
        table.append(
            {
                "label": label,
                "recipe": recipe,
                "rows": rows,
                "ok": len(ok) == len(rows),
                "val_mean": val_mean,
                "val_std": val_std,
            }
        )
    return table


def choose_winner(table: Sequence[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The candidate with the best mean (the first on a tie) among those no seed failed for;
    the baseline is never chosen. :class:`SearchFailed` when every candidate failed."""
    pool = [c for c in table if c["label"] != "baseline" and c["ok"]]
    if not pool:
        raise SearchFailed("every top candidate failed when retrained; no recipe was written.")
    sign = 1 if mode == "max" else -1
    return max(pool, key=lambda c: sign * c["val_mean"])


def evidence(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """Val and test accuracy of one candidate over the seeds that did not fail (per seed, mean
    and std), and the seeds that failed."""
    ok = [r for r in candidate["rows"] if "error" not in r]
    va, vs = mean_std([r["val_acc"] for r in ok])
    ta, ts = mean_std([r["test_acc"] for r in ok])
    return {
        "val_acc_mean": va,
        "val_acc_std": vs,
        "test_acc_mean": ta,
        "test_acc_std": ts,
        "val_acc": [r["val_acc"] for r in ok],
        "test_acc": [r["test_acc"] for r in ok],
        "failed_seeds": [r["seed"] for r in candidate["rows"] if "error" in r],
    }
