"""``write_report(run_dir)``: ``report.md`` and its figures, from what a search left in its folder.

Reads ``study.db`` (the Optuna study ``"tricksearch"``), and when present ``search.json``,
``results.json``, ``best_recipe.yaml`` and ``ablation.json``; writes ``report.md``,
``history.png``, ``importance.png`` (when importance can be computed), ``ablation.png`` (when an
ablation was run) and ``recipe_vs_baseline.png`` (when the recipe carries its evidence). Called at
the end of every search and by ``tricksearch report RUN_DIR``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tricksearch.errors import ConfigError, TricksearchError
from tricksearch.recipe import Recipe, load_recipe
from tricksearch.report._importance import (
    ImportanceResult,
    entry_label,
    trick_importance,
    tricks_of_params,
)
from tricksearch.report._plots import (
    TrialPoint,
    plot_ablation,
    plot_history,
    plot_importance,
    plot_recipe_vs_baseline,
)
from tricksearch.report._show import evidence_lines, implicit_defaults, trick_lines
from tricksearch.tuning._study import STUDY_NAME, load_study, outcome

__all__ = ["STUDY_NAME", "load_study", "write_report"]

#: The name of the Optuna study a search writes into ``study.db``.
_FIGURES = ("history.png", "importance.png", "ablation.png", "recipe_vs_baseline.png")


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"report: {str(path)!r} is not valid JSON ({exc}).") from None
    return raw if isinstance(raw, dict) else None


def _trial_epochs(t: Any) -> int:
    epochs = t.user_attrs.get("epochs")
    if epochs is not None:
        return int(epochs)
    return int(max(t.intermediate_values, default=0))


def _trial_value(t: Any) -> float | None:
    if t.value is not None:
        return float(t.value)
    if t.intermediate_values:
        return float(t.intermediate_values[max(t.intermediate_values)])
    return None


def _fmt(v: Any, spec: str = ".4f") -> str:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return format(v, spec)
    return "n/a"


def _remove_stale(run_dir: Path, written: set[str]) -> None:
    for name in _FIGURES:
        if name not in written:
            (run_dir / name).unlink(missing_ok=True)


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report.md`` and its PNG figures; return the path of ``report.md``.

    Raises :class:`~tricksearch.errors.ConfigError` when the folder or its study is missing.
    """
    run_dir = Path(run_dir)
    study = load_study(run_dir)
    config = _read_json(run_dir / "search.json") or {}
    results = _read_json(run_dir / "results.json") or {}
    recipe: Recipe | None = None
    recipe_error = None
    if (run_dir / "best_recipe.yaml").is_file():
        try:
            recipe = load_recipe(run_dir / "best_recipe.yaml")
        except TricksearchError as exc:
            recipe_error = str(exc)
    prov: dict[str, Any] = results.get("summary") or (recipe.provenance if recipe else {}) or {}
    metric = config.get("metric") or (prov.get("search") or {}).get("metric") or "val_acc"

    maximize = study.direction.name == "MAXIMIZE"
    trials = study.get_trials(deepcopy=False)
    points = [TrialPoint(t.number, outcome(t), _trial_value(t), _trial_epochs(t)) for t in trials]
    written: set[str] = set()
    md: list[str] = [f"# tricksearch report: {run_dir.resolve().name}", ""]

    # -- summary ------------------------------------------------------------------------------
    md += _summary(config, prov, recipe, points, metric)
    if recipe_error:
        md += [f"> best_recipe.yaml could not be read: {recipe_error}", ""]

    # -- the recipe ---------------------------------------------------------------------------
    if recipe is not None:
        md += ["## The recipe", "", "```"]
        tl = trick_lines(recipe, indent="")
        md += tl or ["no trick on: the baseline won"]
        defaults = implicit_defaults(recipe)
        if defaults:
            md.append("defaults in effect: " + "; ".join(defaults))
        md += [
            "```",
            "",
            f"Reproduce: `tricksearch train --recipe {run_dir / 'best_recipe.yaml'}`",
            "",
        ]
    if prov.get("recipe") or prov.get("baseline"):
        plot_recipe_vs_baseline(prov, run_dir / "recipe_vs_baseline.png")
        written.add("recipe_vs_baseline.png")
        md += [
            "## Recipe vs baseline",
            "",
            "![recipe vs baseline](recipe_vs_baseline.png)",
            "",
            "```",
            *evidence_lines(
                {k: prov[k] for k in ("recipe", "baseline", "seeds", "gain") if k in prov},
                indent="",
            ),
            "```",
            "",
            "The winner was chosen on validation accuracy; the test split was used once, for "
            "the winner and the baseline.",
            "",
        ]
    md += _candidates(results)

    # -- history ------------------------------------------------------------------------------
    plot_history(points, run_dir / "history.png", maximize=maximize, metric=metric)
    written.add("history.png")
    md += [
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
    md += _top_trials(trials, maximize, metric)

    # -- importance ---------------------------------------------------------------------------
    imp = trick_importance(study)
    md += _importance_section(imp, run_dir, written, metric)

    # -- ablation -----------------------------------------------------------------------------
    md += _ablation_section(run_dir, recipe, written)

    # -- cost ---------------------------------------------------------------------------------
    md += _cost_section(config, prov, recipe, results, points)

    # -- dashboard and versions ---------------------------------------------------------------
    db = (run_dir / "study.db").resolve()
    md += [
        "## Explore the study",
        "",
        "```",
        "pip install 'tricksearch[dashboard]'",
        f"optuna-dashboard sqlite:///{db}",
        "```",
        "",
        f"The study is named `{STUDY_NAME}`; its parameters are the flat keys "
        "`family.trick` (switch), `family.group` (which member of an exclusive group), "
        "`family.trick.param` and `budget.lr` / `budget.batch_size`.",
        "",
    ]
    versions = prov.get("versions") or {}
    if versions:
        md += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]

    _remove_stale(run_dir, written)
    path = run_dir / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n")
    return path


# --- sections ----------------------------------------------------------------------------------
def _summary(
    config: dict[str, Any],
    prov: dict[str, Any],
    recipe: Recipe | None,
    points: list[TrialPoint],
    metric: str,
) -> list[str]:
    states = ("COMPLETE", "PRUNED", "FAIL", "STOPPED")
    counts = {s: sum(p.state == s for p in points) for s in states}
    unfinished = len(points) - sum(counts.values())
    ds = (
        (prov.get("dataset") or {}).get("name")
        or config.get("dataset")
        or (recipe.data.dataset if recipe else "?")
    )
    model = prov.get("model") or config.get("model") or (recipe.model.name if recipe else "?")
    epochs = (
        config.get("epochs")
        or (prov.get("budget") or {}).get("epochs")
        or (recipe.budget.epochs if recipe else "?")
    )
    search = prov.get("search") or {}
    lines = [
        "## Summary",
        "",
        f"- dataset **{ds}**, model **{model}**, {epochs} epochs at the full budget",
        f"- space `{config.get('space') or search.get('space', '?')}`, sampler "
        f"`{config.get('sampler') or search.get('sampler', '?')}`, metric `{metric}`",
        f"- {len(points)} trials: {counts['COMPLETE']} complete, {counts['PRUNED']} pruned "
        f"by ASHA, {counts['FAIL']} failed"
        + (f", {counts['STOPPED']} stopped by the time budget" if counts["STOPPED"] else "")
        + (f", {unfinished} unfinished (search still running?)" if unfinished else ""),
    ]
    if recipe is not None:
        on = list(recipe.tricks_on())
        lines.append(f"- best recipe: {', '.join(on) if on else 'no trick (the baseline)'}")
    rec, base = prov.get("recipe") or {}, prov.get("baseline") or {}
    if rec and base:
        n = len(prov.get("seeds") or [])
        lines.append(
            f"- test accuracy **{_fmt(rec.get('test_acc_mean'))} ± {_fmt(rec.get('test_acc_std'))}"
            f"** vs baseline {_fmt(base.get('test_acc_mean'))} ± "
            f"{_fmt(base.get('test_acc_std'))} ({n} seed{'s' if n != 1 else ''}; "
            "mean ± sample std)"
        )
    lines.append("")
    return lines


def _candidates(results: dict[str, Any]) -> list[str]:
    cands = results.get("candidates") or []
    if not cands:
        return []
    lines = [
        "## Candidates retrained at the full budget",
        "",
        "| candidate | val_acc (mean ± std) | seeds ok | tricks |",
        "|---|---:|---|---|",
    ]
    for c in cands:
        vals = [v for v in c.get("val", []) if isinstance(v, (int, float))]
        lines.append(
            f"| {c.get('label')} | {_fmt(c.get('val_mean'))} ± {_fmt(c.get('val_std'))} "
            f"| {len(vals)}/{len(c.get('val', []))} | "
            f"{', '.join(c.get('tricks', [])) or '—'} |"
        )
    return [*lines, ""]


def _top_trials(trials: list[Any], maximize: bool, metric: str, k: int = 5) -> list[str]:
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
            f"{_fmt(lr, '.3g') if lr is not None else '—'} | {bs if bs else '—'} | "
            f"{', '.join(tricks_of_params(t.params)) or '—'} |"
        )
    return [*lines, ""]


def _importance_section(
    imp: ImportanceResult, run_dir: Path, written: set[str], metric: str
) -> list[str]:
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
        "| entry | importance |",
        "|---|---:|",
    ]
    small = {k: v for k, v in imp.by_trick.items() if v < 0.005}
    lines += [f"| {entry_label(k)} | {v:.3f} |" for k, v in imp.by_trick.items() if k not in small]
    if small:
        lines.append(f"| {len(small)} others ({', '.join(small)}) | {sum(small.values()):.3f} |")
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
    import re

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


def _ablation_section(run_dir: Path, recipe: Recipe | None, written: set[str]) -> list[str]:
    from tricksearch.report._ablation import load_ablation

    path = run_dir / "ablation.json"
    lines = ["## Ablation", ""]
    if not path.is_file():
        target = run_dir / "best_recipe.yaml"
        return [
            *lines,
            "No ablation yet. For the one-trick-off / one-trick-on table with seeds:",
            "",
            "```",
            f"tricksearch ablate --recipe {target} --seeds 3 --out {run_dir}",
            f"tricksearch report {run_dir}",
            "```",
            "",
        ]
    ab = load_ablation(path)
    if recipe is not None and isinstance(ab.get("recipe"), dict):
        try:
            same = Recipe.from_dict(ab["recipe"]).without_provenance() == (
                recipe.without_provenance()
            )
        except TricksearchError:
            same = False
        if not same:
            lines += [
                "> Note: ablation.json was made for a different recipe than "
                "best_recipe.yaml; rerun the ablation.",
                "",
            ]
    plot_ablation(ab, run_dir / "ablation.png")
    written.add("ablation.png")
    seeds = ab.get("seeds") or []
    lines += [
        "![ablation](ablation.png)",
        "",
        f"| row | {ab.get('metric', 'val_acc')} (mean ± std) | Δ | vs | noise |",
        "|---|---:|---:|---|---|",
    ]
    for r in ab["rows"]:
        d = r.get("delta")
        noise = ""
        if d is not None:
            wn = r.get("within_noise")
            noise = (
                "n/a" if wn is None else "within noise" if wn else "better" if d > 0 else "worse"
            )
        lines.append(
            f"| {r.get('label')} | {_fmt(r.get('mean'))} ± {_fmt(r.get('std'))} | "
            f"{'' if d is None else format(d, '+.4f')} | {r.get('versus') or ''} | "
            f"{noise} |"
        )
    lines += ["", f"{len(seeds)} seeds per row. {ab.get('noise_rule', '')}", ""]
    return lines


def _cost_section(
    config: dict[str, Any],
    prov: dict[str, Any],
    recipe: Recipe | None,
    results: dict[str, Any],
    points: list[TrialPoint],
) -> list[str]:
    epochs = (
        config.get("epochs")
        or (prov.get("budget") or {}).get("epochs")
        or (recipe.budget.epochs if recipe else None)
        or max((p.epochs for p in points), default=0)
    )
    spent = sum(p.epochs for p in points)
    # ASHA's saving is measured on the trials it decided; a trial the time budget cut says nothing
    # about ASHA.
    decided = [p for p in points if p.state != "STOPPED"]
    cut = len(points) - len(decided)
    own = sum(p.epochs for p in decided)
    full = len(decided) * int(epochs or 0)
    lines = ["## Cost", ""]
    if full > 0:
        saved = 1 - own / full
        lines.append(
            f"- search: **{spent} trial-epochs** for {len(points)} trials; at the full budget "
            f"({len(decided)} × {epochs} epochs) it would have been {full}"
            + (f" for the {len(decided)} trials the time budget did not cut" if cut else "")
            + f": ASHA saved **{100 * saved:.0f} %**."
        )
    else:
        lines.append(f"- search: {spent} trial-epochs for {len(points)} trials.")
    cands = results.get("candidates") or []
    seeds = prov.get("seeds") or []
    if cands and seeds and epochs:
        n = len(cands) * len(seeds)
        lines.append(
            f"- retraining: {len(cands)} configurations (top candidates + baseline) × "
            f"{len(seeds)} seeds × {epochs} epochs = {n * int(epochs)} epochs."
        )
    seconds = (prov.get("search") or {}).get("seconds")
    if seconds is not None:
        lines.append(f"- wall time of the search (before retraining): {seconds} s.")
    return [*lines, ""]
