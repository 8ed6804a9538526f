"""The sections of ``report.md`` read from the Optuna study: the optimization history, the top
trials, why trials failed and which tricks mattered (importance), with their figures.

Each section returns its Markdown lines; one that draws a figure adds its file name to
``written`` (the report removes figures of an earlier run that were not drawn again).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from tricksearch.report._importance import (
    ImportanceResult,
    tricks_of_params,
)
from tricksearch.report._plots import TrialPoint, plot_history, plot_importance
from tricksearch.report._show import fmt_number
from tricksearch.tuning._candidates import trial_record
from tricksearch.tuning._failures import failure_groups
from tricksearch.tuning._study import outcome

if TYPE_CHECKING:  # optuna is imported by load_study, when a report is written
    from optuna.trial import FrozenTrial

__all__ = [
    "failures_section",
    "history_section",
    "importance_section",
    "top_trials",
    "trial_point",
]


def _trial_epochs(t: FrozenTrial) -> int:
    epochs = t.user_attrs.get("epochs")
    if epochs is not None:
        return int(epochs)
    return int(max(t.intermediate_values, default=0))


def _trial_value(t: FrozenTrial) -> float | None:
    if t.value is not None:
        return float(t.value)
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def trial_point(t: FrozenTrial) -> TrialPoint:
    """A trial as the history plot and the cost count see it: its final or last value."""
    return TrialPoint(t.number, outcome(t), _trial_value(t), _trial_epochs(t))


def history_section(
    points: list[TrialPoint], run_dir: Path, written: set[str], *, maximize: bool, metric: str
) -> list[str]:
    """Every trial's value by trial number (``history.png``) and how to read the figure."""
    plot_history(points, run_dir / "history.png", maximize=maximize, metric=metric)
    written.add("history.png")
    return [
        "## Optimization history",
        "",
        "![optimization history](history.png)",
        "",
        "Filled dots: trials that ran the full budget (COMPLETE); hollow: trials ASHA stopped "
        "early, at their last (low-fidelity) value (PRUNED); hollow squares: trials the time "
        "budget cut, at their last value; red crosses: FAILED trials. "
        "The line is the best COMPLETE value so far.",
        "",
    ]


def top_trials(trials: list[FrozenTrial], maximize: bool, metric: str, k: int = 5) -> list[str]:
    """The ``k`` best COMPLETE trials: value, epochs, lr, batch size and tricks switched on."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return ["No trial ran the full budget.", ""]
    complete.sort(key=lambda t: t.value, reverse=maximize)
    lines = [
        f"Top {min(k, len(complete))} complete trials:",
        "",
        f"| trial | {metric} | epochs | lr | batch | tricks switched on |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for t in complete[:k]:
        lr = t.params.get("budget.lr")
        bs = t.params.get("budget.batch_size")
        lines.append(
            f"| {t.number} | {t.value:.4f} | {_trial_epochs(t)} | "
            f"{fmt_number(lr, '.3g') if lr is not None else '—'} | {bs if bs else '—'} | "
            f"{', '.join(tricks_of_params(t.params)) or '—'} |"
        )
    return [*lines, ""]


def failures_section(trials: list[FrozenTrial]) -> list[str]:
    """The failed trials' causes grouped, most common first, with the path of one ``error.txt``
    per cause (the whole traceback); nothing when no trial failed. A trial the time budget cut
    before its first epoch is "stopped", not failed, and is not listed."""
    groups = failure_groups([trial_record(t) for t in trials])
    if not groups:
        return []
    n = sum(g.count for g in groups)
    lines = [
        "## Failed trials",
        "",
        f"{n} of {len(trials)} trial{'s' if len(trials) != 1 else ''} failed; a failed trial "
        "teaches the sampler nothing. Causes, most common first (the exception's type and the "
        "first line of its message; the whole traceback is in the file named):",
        "",
    ]
    for g in groups:
        where = f" — traceback: `{g.error_file}`" if g.error_file else ""
        lines.append(f"- {g.count} × {g.cause}{where}")
    return [*lines, ""]


def importance_section(
    imp: ImportanceResult, run_dir: Path, written: set[str], metric: str
) -> list[str]:
    """Per-trick importance (``importance.png`` and a table), or why it was not computed."""
    lines = ["## Which tricks mattered", ""]
    evaluator = f"`optuna.importance.{imp.evaluator}`"
    if not imp.ok:
        return [
            *lines,
            f"Importance not computed: {imp.reason}",
            "",
            f"(Evaluator that would be used: {evaluator}.)",
            "",
        ]
    at = "" if imp.epoch is None else f", at epoch {imp.epoch}"
    plot_importance(imp.by_trick, run_dir / "importance.png", evaluator=imp.evaluator + at)
    written.add("importance.png")
    lines += [
        "![importance per trick](importance.png)",
        "",
        f"Evaluator: {evaluator} — Optuna's default"
        + (
            " (PED-ANOVA: how much each parameter's distribution among the best trials "
            "differs from all trials; it handles conditional parameters)"
            if imp.evaluator == "PedAnovaImportanceEvaluator"
            else ""
        )
        + (
            f", on {imp.n_rated} COMPLETE trials."
            if imp.epoch is None
            else f", on the {metric} at epoch {imp.epoch} of the {imp.n_rated} trials that "
            f"reached it: only {imp.n_complete} ran the full budget (the others stopped early), "
            "so importance is read at a fidelity ASHA prunes on, where tricks that pay off "
            "late (a long warmup, strong regularization) can look worse than they end."
        )
        + " A trick's importance is the sum over its switch and its parameters; `decay`, "
        "`optimizer`, `policy` are the choice of a member of that exclusive group; entries "
        "sum to 1. Few trials make these numbers rough; importance is not effect size (see "
        "the ablation for that).",
        "",
        "| entry | importance | in the recipe |",
        "|---|---:|---|",
    ]
    lines += [
        f"| {r.label} | {r.importance:.3f} | {'yes' if r.in_recipe else ''} |" for r in imp.rows()
    ]
    lines.append("")
    if imp.n_rated < 50:
        lines += [
            f"Only {imp.n_rated} rated trials: PED-ANOVA is stable with at least 5 trials in "
            "its top 10 % (≈ 50 trials); read these numbers as a hint.",
            "",
        ]
    if imp.warnings:
        lines += [_condense_warnings(imp.warnings), ""]
    return lines


def _condense_warnings(messages: list[str]) -> str:
    """Optuna's per-parameter warnings, one sentence."""
    sparse, other = [], []
    for msg in messages:
        m = re.match(r"Some regimes for parameter `(.+?)` have less than (\d+) trials", msg)
        if m:
            sparse.append(m.group(1))
        else:
            other.append(msg)
    parts = []
    if sparse:
        parts.append(
            f"{len(sparse)} parameter(s) were seen in too few COMPLETE trials to rate "
            f"well ({', '.join(sparse)})"
        )
    parts += other
    return "Optuna warned: " + "; ".join(parts) + "."
