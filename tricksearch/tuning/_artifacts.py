"""What a search writes and says at the end: ``trials.csv``, ``results.json``, ``best_recipe.yaml``
(its provenance is the summary), the report, the closing lines; and the result a finished search
left behind, for a resume that has nothing left to do.

``best_recipe.yaml`` and then ``results.json`` are a finished search's last writes: a run folder
holding both is done (:func:`stored_result`).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tricksearch.errors import TricksearchError
from tricksearch.tuning._budget import budget_line
from tricksearch.tuning._candidates import TrialRecord
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._console import say
from tricksearch.tuning._decide import Decision
from tricksearch.tuning._evidence import evidence_summary, verdict_lines
from tricksearch.tuning._result import SearchResult

if TYPE_CHECKING:
    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe
    from tricksearch.tuning._fidelity import FidelityPlan

__all__ = [
    "FULL_RECIPE",
    "OUTCOMES",
    "Timings",
    "closing_lines",
    "faults_line",
    "nothing_usable",
    "outcome_counts",
    "save_outcome",
    "search_summary",
    "stored_result",
    "time_budget_line",
    "write_trials_csv",
]

logger = logging.getLogger(__name__)

#: Beside best_recipe.yaml when the minimal recipe dropped tricks: the full winner.
FULL_RECIPE = "full_recipe.yaml"
#: The outcomes results.json counts (keyed in lower case), as ``_study.outcome`` names them.
OUTCOMES = ("COMPLETE", "PRUNED", "FAIL", "STOPPED", "OOM")


@dataclass(frozen=True)
class Timings:
    """Seconds spent: the whole search so far, starting Ray, and tuning (0 on a resume with no
    trial left to run)."""

    seconds: float
    ray_start_seconds: float = 0.0
    tune_seconds: float = 0.0
    retries: int = 0  # trials restarted from a checkpoint after a lost worker or node
    checkpoint_peak_bytes: int = 0  # the most the trials' checkpoints held on disk at once


def faults_line(retries: int, peak_bytes: int, *, checkpoints: bool = True) -> str:
    """What the trials' checkpoints cost and bought: the disk they held at most, the restarts."""
    if not checkpoints:
        return "checkpoints: off (--max-retries 0: a trial that loses its worker fails)"
    restarts = (
        "no trial lost its worker"
        if not retries
        else f"{retries} restart{'s' if retries != 1 else ''} after a lost worker, each from "
        "the trial's last checkpoint"
    )
    return (
        f"checkpoints: at most {peak_bytes / 2**20:.1f} MiB on disk at once (each trial's are "
        f"deleted when it ends); {restarts}"
    )


# --- the trials ---------------------------------------------------------------------------------
def write_trials_csv(
    records: Sequence[TrialRecord], path: Path, fidelity: FidelityPlan | None = None
) -> None:
    """Every trial, one row: its outcome (Optuna's state, or STOPPED for a trial the time budget
    cut; see ``_study.outcome``), value, epochs, seconds and parameters. With data fidelity
    (``fidelity``, default: the plan kept beside ``path``, ``_fidelity.PLAN_FILE``) also
    ``data_fraction`` (the share of the train split its last epoch trained on) and
    ``cost_epochs`` (its cost in full-epoch equivalents: the sum of its epochs' fractions)."""
    from tricksearch.tuning._fidelity import load_plan

    plan = load_plan(path.parent) if fidelity is None else fidelity
    extra = [] if plan is None else ["data_fraction", "cost_epochs"]
    keys = sorted({k for r in records for k in r.params})
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", "epochs", *extra, "seconds", *keys])
        for r in records:
            reached = "" if plan is None or not r.epochs else plan.fraction(r.epochs)
            cost = [] if plan is None else [reached, plan.cost(r.epochs)]
            w.writerow(
                [
                    r.number,
                    r.outcome,
                    "" if r.value is None else r.value,
                    r.epochs,
                    *cost,
                    "" if r.seconds is None else r.seconds,
                    *[r.params.get(k, "") for k in keys],
                ]
            )


def outcome_counts(records: Sequence[TrialRecord]) -> dict[str, int]:
    """Trials per outcome, keyed as results.json has them: complete, pruned, fail, stopped."""
    found = [r.outcome for r in records]
    return {k.lower(): found.count(k) for k in OUTCOMES}


def time_budget_line(
    counts: Mapping[str, int], config: SearchConfig, *, stopped_early: float | None = None
) -> str | None:
    """What the time budget cut, or None when it cut nothing (or there is none).
    ``stopped_early``: the seconds before the budget's end that the tuning stopped at, to leave
    them to the retraining (``_budget``); None when the budget did not stop it."""
    if not config.time_budget:
        return None
    ran = sum(counts.values())
    if not counts["stopped"] and (stopped_early is None or ran >= config.trials):
        return None
    kept = (
        f"; the tuning stopped {stopped_early:.0f} s before the budget's end, kept for the "
        "retraining"
        if stopped_early is not None and stopped_early >= 0.5
        else ""
    )
    return (
        f"time budget of {config.time_budget:g} s reached: "
        f"{ran} of {config.trials} trials ran, "
        f"{counts['stopped']} of them cut short by it" + kept
    )


def nothing_usable(counts: Mapping[str, int], n: int, config: SearchConfig, run_dir: Path) -> str:
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
    if counts.get("oom"):
        return (
            f"no trial finished: {counts['oom']} ran out of GPU memory (OOM) alone on a GPU and "
            f"{counts['fail']} failed; no recipe was written. Use a smaller --batch-size or a "
            f"smaller model. {errors}"
        )
    return f"every trial failed ({counts['fail']} failed of {n}); no recipe was written. {errors}"


# --- the result ---------------------------------------------------------------------------------
def search_summary(
    config: SearchConfig,
    records: Sequence[TrialRecord],
    decision: Decision,
    data: DatasetSplits,
    *,
    timings: Timings,
    slots: int,
) -> dict[str, Any]:
    """The summary of results.json and of the best recipe's provenance: the search's settings
    and cost, then the evidence (``_evidence.evidence_summary``)."""
    from tricksearch.api import versions
    from tricksearch.tuning._failures import failure_lines

    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "dataset": {
            "name": config.dataset,
            "val_fraction": config.val_fraction,
            "test_fraction": config.test_fraction,
            "split_seed": config.split_seed,
            **({"unlabeled": config.unlabeled} if config.unlabeled else {}),
            **(
                {"labeled_fraction": config.labeled_fraction} if config.labeled_fraction < 1 else {}
            ),
        },
        "model": config.model,
        "budget": {"epochs": config.epochs, "lr": config.lr, "batch_size": config.batch_size},
        "search": {
            "space": config.space,
            "sampler": config.sampler,
            "seed": config.seed,
            "metric": config.metric,
            "trials_requested": config.trials,
            "trials": outcome_counts(records),
            "failures": failure_lines(records),
            "trial_epochs": sum(r.epochs for r in records),
            "full_budget_epochs": len(records) * config.epochs,
            "chosen_from": decision.winner["label"],
            "candidates": decision.candidates,
            "seconds": round(timings.seconds, 1),
            "ray_start_seconds": round(timings.ray_start_seconds, 2),
            "tune_seconds": round(timings.tune_seconds, 2),
            "retries": timings.retries,
            "checkpoint_peak_bytes": timings.checkpoint_peak_bytes,
            "slots": slots,
            "trial_train_seconds": round(sum(r.train_seconds for r in records), 2),
        },
        **evidence_summary(decision, config.metric, data, config.cv),
        "versions": versions(),
    }


def _seeded(recipe: Recipe, config: SearchConfig, summary: Mapping[str, Any]) -> Recipe:
    return recipe.with_changes(
        budget=recipe.budget.to_dict() | {"seed": config.seed},
        provenance=json.loads(json.dumps(summary)),
    )


def save_outcome(
    config: SearchConfig,
    run_dir: Path,
    decision: Decision,
    summary: dict[str, Any],
    out: IO[str] | None,
) -> SearchResult:
    """Write ``best_recipe.yaml`` (the recommendation: the minimal recipe, else the winner, else
    the baseline; seeded as the search; the summary as provenance), ``full_recipe.yaml`` beside
    it when the minimal recipe dropped tricks, then ``results.json``, then the report; say the
    closing lines; return the result."""
    best = _seeded(decision.recommended["recipe"], config, summary)
    if decision.minimal is not None:
        _seeded(decision.winner["recipe"], config, summary).save(run_dir / FULL_RECIPE)
    recipe_path = best.save(run_dir / "best_recipe.yaml")
    rows = [
        {
            "label": c["label"],
            "val_mean": c["val_mean"],
            "val_std": c["val_std"],
            "ok": c["ok"],
            "tricks": sorted(c["recipe"].tricks_on()),
            "val": [r.get(config.metric) for r in c["rows"]],
            "seeds": [r["seed"] for r in c["rows"]],
            "curves": [r.get("curve") for r in c["rows"]],  # val after each epoch, per seed
            "errors": [r["error"] for r in c["rows"] if "error" in r],
        }
        for c in decision.table
    ]
    text = json.dumps({"summary": summary, "candidates": rows}, indent=2)
    (run_dir / "results.json").write_text(text + "\n")
    _write_report(run_dir, out)
    say(out, closing_lines(best, summary, recipe_path, config))
    return SearchResult(
        best=best,
        run_dir=run_dir,
        recipe_path=recipe_path,
        summary=summary,
        candidates=[dict(c) for c in decision.table],
    )


def stored_result(run_dir: Path) -> SearchResult | None:
    """The result a finished search left in ``run_dir``, or None when the search stopped before
    writing both best_recipe.yaml and results.json. ``candidates`` are results.json's summaries
    (label, val mean/std, tricks), not the retrained recipes."""
    from tricksearch.recipe import load_recipe

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


def _write_report(run_dir: Path, out: IO[str] | None) -> None:
    """``report.md`` (and its plots) in the run folder; a failure is a warning, not lost work."""
    try:
        from tricksearch.report import write_report
    except ImportError:
        return
    try:
        path = write_report(run_dir)
        html = path.with_suffix(".html")
        say(
            out,
            f"report: {path}"
            + (f" (one file to open in a browser: {html})" if html.exists() else ""),
        )
    except Exception as exc:  # the recipe is already safe on disk; a report bug must not lose it
        logger.exception("report failed")
        say(
            out,
            f"warning: the report could not be written ({exc}); "
            f"retry with `tricksearch report {run_dir}`",
        )


def closing_lines(
    best: Recipe, summary: Mapping[str, Any], path: Path, config: SearchConfig
) -> str:
    """Where the best recipe is, its tricks, the verdict with its interval (and against the tuned
    baseline), the minimal recipe, what failed, and the command that trains it again."""
    tricks = ", ".join(best.tricks_on()) or "none"
    changed = [
        f"{k} {getattr(best.budget, k):g} instead of {getattr(config, k):g}"
        for k in ("lr", "batch_size")
        if getattr(best.budget, k) != getattr(config, k)
    ]
    searched = summary.get("search", {})
    budget = summary.get("budget", {})
    n = len(summary["seeds"])
    full = (path.parent / FULL_RECIPE) if (summary.get("minimal") or {}).get("removed") else None
    lines = [
        f"best recipe: {path}" + (f" (the full winner: {full})" if full else ""),
        f"  tricks: {tricks}" + (f"; {', '.join(changed)}" if changed else ""),
        *["  " + line for line in verdict_lines(summary)],
        f"  ({n} seed{'s' if n > 1 else ''}; {sum(searched.get('trials', {}).values())} trials "
        f"of {budget.get('epochs', '?')} epochs)",
        *["  " + line for line in searched.get("failures", [])],
        *(
            [f"  {oom} trial(s) ran out of GPU memory (OOM): not counted as failed configurations"]
            if (oom := searched.get("trials", {}).get("oom"))
            else []
        ),
        *(["  " + budget_line(cut)] if (cut := searched.get("time_budget")) else []),
        f"  reproduce: tricksearch train --recipe {path}",
    ]
    return "\n".join(lines)
