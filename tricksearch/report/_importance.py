"""Per-trick importance from the Optuna study of a search.

Optuna rates each *parameter* (flat key, read with :func:`tricksearch.spaces.parse_key`) of the
study; a trick owns several: its switch ``"{family}.{trick}"`` and its parameters
``"{family}.{trick}.{param}"``. The importance of a trick
is the sum over the keys it owns, normalised so that all entries sum to 1. Two kinds of key belong
to no single trick and keep entries of their own: the choice of an exclusive group
(``"schedule.decay"``: *which* LR decay; entry ``"decay"``) and the budget dimensions
(``"budget.lr"``, ``"budget.batch_size"``).

The evaluator is Optuna's default (:class:`optuna.importance.PedAnovaImportanceEvaluator` in
Optuna 5, which handles conditional parameters and needs neither scipy nor scikit-learn); its
class name is recorded so the report can say what produced the numbers.

Which trials are rated (:func:`choose_fidelity`): PED-ANOVA compares the top 10 % of the trials
with all of them, so it wants about ``MIN_RATED`` trials. With ASHA few trials run the full budget;
when fewer than ``MIN_RATED`` are COMPLETE, the trials are compared at the deepest epoch that at
least ``MIN_RATED`` of them reached (or, failing that, at the epoch most of them reached, when
that is more trials than the COMPLETE ones), on their values at that epoch: the low-fidelity view
ASHA itself prunes on. The epoch used is recorded and the report says it.

What the report shows (:func:`importance_rows`): every entry, with the small ones folded into
one "others" row — but never the learning rate and the batch size (:data:`BUDGET_ENTRIES`), nor
an entry the winning recipe uses (:func:`entries_in_recipe`), which the row marks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tricksearch.errors import ConfigError
from tricksearch.spaces import exclusive_groups, parse_key
from tricksearch.tricks._base import registered_tricks

if TYPE_CHECKING:  # pragma: no cover - optuna is only ever passed in
    import optuna

    from tricksearch.recipe import Recipe

__all__ = [
    "BUDGET_ENTRIES",
    "MIN_RATED",
    "SMALL",
    "ImportanceResult",
    "ImportanceRow",
    "choose_fidelity",
    "entries_in_recipe",
    "entry_label",
    "group_by_trick",
    "importance_rows",
    "trick_importance",
    "trick_of_key",
    "tricks_of_params",
]


def trick_of_key(key: str) -> str:
    """The entry a flat search key counts towards.

    ``"loss.label_smoothing"`` and ``"loss.label_smoothing.epsilon"`` -> ``"label_smoothing"``;
    ``"schedule.decay"`` (an exclusive-group choice) -> ``"decay"``; ``"budget.lr"`` ->
    ``"budget.lr"``; a key that is not a flat key of the registered tricks -> the key itself.
    """
    try:
        parsed = parse_key(key)
    except ConfigError:
        return key
    # A switch, a trick's parameter, and a group choice all count towards the name they hold.
    return key if parsed.kind == "budget" else parsed.name


#: The budget entries, each shown in its own row (never folded into "others"), with its label.
BUDGET_ENTRIES: dict[str, str] = {
    "budget.lr": "learning rate (budget.lr)",
    "budget.batch_size": "batch size (budget.batch_size)",
}


def _group_names() -> set[str]:
    return {group for (_, group) in exclusive_groups()} - set(registered_tricks())


def entry_label(entry: str) -> str:
    """How an importance entry is shown: a group choice is marked ``"decay [group choice]"``,
    a budget entry named in words (``"learning rate (budget.lr)"``)."""
    if entry in BUDGET_ENTRIES:
        return BUDGET_ENTRIES[entry]
    return f"{entry} [group choice]" if entry in _group_names() else entry


def entries_in_recipe(entries: Iterable[str], recipe: Recipe) -> set[str]:
    """The importance entries ``recipe`` uses: the tricks it has on, the exclusive groups whose
    choice it names (``decay`` when ``cosine`` is on; a group left to its default is not named),
    and the budget entries (every recipe has a learning rate and a batch size)."""
    on = recipe.tricks_on()
    tricks = registered_tricks()
    chosen_groups = {tricks[name].group for name in on if tricks[name].group}
    return {
        e
        for e in entries
        if e in on or e in BUDGET_ENTRIES or (e in _group_names() and e in chosen_groups)
    }


def tricks_of_params(params: dict[str, Any]) -> list[str]:
    """The tricks a trial's flat configuration switched on, in registry order.

    A switch key counts when True; a group key names its chosen member (``"none"`` is no trick).
    Members forced on by the space have no switch and are not visible here.
    """
    tricks = registered_tricks()
    on: set[str] = set()
    for key, value in params.items():
        try:
            parsed = parse_key(key)
        except ConfigError:
            continue
        if parsed.kind == "switch" and value is True:
            on.add(parsed.name)
        elif parsed.kind == "group" and isinstance(value, str) and value in tricks:
            on.add(value)
    return [n for n in tricks if n in on]


def group_by_trick(param_importances: dict[str, float]) -> dict[str, float]:
    """Sum parameter importances per trick (see :func:`trick_of_key`), normalised to sum to 1.

    Sorted by importance, largest first. All-zero input gives equal shares (as Optuna does).
    """
    sums: dict[str, float] = {}
    for key, value in param_importances.items():
        if value is None or not math.isfinite(value):
            continue
        entry = trick_of_key(key)
        sums[entry] = sums.get(entry, 0.0) + max(float(value), 0.0)
    if not sums:
        return {}
    total = sum(sums.values())
    if total <= 0:
        return {k: 1.0 / len(sums) for k in sums}
    return dict(sorted(((k, v / total) for k, v in sums.items()), key=lambda kv: -kv[1]))


#: Trials PED-ANOVA should rate at least: its top 10 % then holds two.
MIN_RATED = 20
#: Entries below this importance share one "others" row (except budget and winner entries).
SMALL = 0.005


def choose_fidelity(trials: list[optuna.trial.FrozenTrial]) -> tuple[int | None, int]:
    """(epoch to compare the trials at, or None for their final values; how many trials that
    rates), from the trials of a study (see the module docstring)."""
    complete = sum(
        t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
        for t in trials
    )
    if complete >= MIN_RATED:
        return None, complete
    reached: dict[int, int] = {}
    for t in trials:
        if t.state.name in ("COMPLETE", "PRUNED"):
            for step, value in t.intermediate_values.items():
                if value is not None and math.isfinite(value):
                    reached[step] = reached.get(step, 0) + 1
    enough = [step for step, n in reached.items() if n >= MIN_RATED]
    if enough:
        step = max(enough)
    elif reached:
        step = max(reached, key=lambda s: (reached[s], s))  # the most trials, then the deepest
    else:
        return None, complete
    return (step, reached[step]) if reached[step] > complete else (None, complete)


@dataclass
class ImportanceResult:
    """Importance per trick (sums to 1), per parameter, and what produced it.

    ``epoch`` is the epoch whose values were compared (None: the final values of COMPLETE
    trials) and ``n_rated`` how many trials that was. ``reason`` is set, and the mappings empty,
    when importance could not be computed.
    """

    by_trick: dict[str, float] = field(default_factory=dict)
    by_param: dict[str, float] = field(default_factory=dict)
    evaluator: str = ""
    n_complete: int = 0
    n_rated: int = 0
    epoch: int | None = None
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)

    in_recipe: set[str] = field(default_factory=set)  # entries the winner uses (when given)

    @property
    def ok(self) -> bool:
        return self.reason is None and bool(self.by_trick)

    def rows(self, threshold: float = SMALL) -> list[ImportanceRow]:
        """The table of the report: :func:`importance_rows` of this result."""
        return importance_rows(self.by_trick, self.in_recipe, threshold)


@dataclass(frozen=True)
class ImportanceRow:
    """One row of the importance table: its label, its importance, whether the winner uses it
    (False for the "others" row, whose ``folded`` lists the entries it sums)."""

    label: str
    importance: float
    in_recipe: bool
    folded: tuple[str, ...] = ()


def importance_rows(
    by_trick: dict[str, float], in_recipe: Iterable[str] = (), threshold: float = SMALL
) -> list[ImportanceRow]:
    """The rows of the importance table, largest first: an entry below ``threshold`` is folded
    into one last "N others (a, b, …)" row, unless it is a budget entry (learning rate, batch
    size: always their own rows) or one of ``in_recipe`` (the winner's, marked)."""
    keep = set(in_recipe)
    rows: list[ImportanceRow] = []
    small: dict[str, float] = {}
    for entry, value in by_trick.items():
        if value < threshold and entry not in keep and entry not in BUDGET_ENTRIES:
            small[entry] = value
        else:
            rows.append(ImportanceRow(entry_label(entry), value, entry in keep))
    if small:
        label = f"{len(small)} others ({', '.join(small)})"
        rows.append(ImportanceRow(label, sum(small.values()), False, tuple(small)))
    return rows


def trick_importance(study: optuna.Study, recipe: Recipe | None = None) -> ImportanceResult:
    """Per-trick importance of ``study``; see the module docstring. With ``recipe`` (the
    winner), ``in_recipe`` holds the entries it uses (:func:`entries_in_recipe`).

    Needs at least two rated trials with different values; otherwise returns a result whose
    ``reason`` says why, instead of raising.
    """
    from tricksearch.tuning._study import at_epoch, evaluator_name, param_importances

    trials = study.get_trials(deepcopy=False)
    complete = [
        t
        for t in trials
        if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
    ]
    epoch, _ = choose_fidelity(trials)
    rated_study = study if epoch is None else at_epoch(study, epoch)
    rated = complete if epoch is None else rated_study.get_trials(deepcopy=False)
    name = evaluator_name()
    result = ImportanceResult(
        evaluator=name, n_complete=len(complete), n_rated=len(rated), epoch=epoch
    )
    what = (
        "COMPLETE trials (trials that ran the full budget)"
        if epoch is None
        else (f"trials that reached epoch {epoch}")
    )
    if len(rated) < 2:
        result.reason = (
            f"importance needs at least 2 rated trials; this study has {len(rated)} {what}. "
            "Run more trials (or a larger --grace-period)."
        )
        return result
    if len({t.value for t in rated}) < 2:
        result.reason = (
            f"all {len(rated)} {what} have the same value ({rated[0].value:.4f}); "
            "importance needs variation."
        )
        return result
    if not any(t.params for t in rated):
        result.reason = f"the {what} sampled no parameters; nothing to rate."
        return result
    try:
        params, name, result.warnings = param_importances(rated_study)
    except ValueError as exc:
        result.reason = str(exc)
        return result
    result.by_param = dict(params)
    result.by_trick = group_by_trick(params)
    if recipe is not None:
        result.in_recipe = entries_in_recipe(result.by_trick, recipe)
    if not result.by_trick:
        result.reason = f"{name} returned no importances."
    return result
