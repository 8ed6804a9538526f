"""``write_report(run_dir)``: ``report.md`` and its figures, from what a search left in its folder.

Reads ``study.db`` (the Optuna study ``"tricksearch"``), and when present ``search.json``,
``results.json``, ``best_recipe.yaml`` and ``ablation.json``; writes ``report.md``,
``history.png``, ``importance.png`` (when importance can be computed), ``ablation.png`` (when an
ablation was run), ``recipe_vs_baseline.png`` (when the recipe carries its evidence),
``learning_curves.png`` (when results.json holds the retrainings' curves),
``parallel_coordinate.png`` and ``slice.png`` (Optuna's own figures, from 2 finished trials), and
``report.html``: the same report in one self-contained file. Called at the end of every search and
by ``tricksearch report RUN_DIR``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricksearch.errors import ConfigError, TricksearchError
from tricksearch.recipe import Recipe, load_recipe
from tricksearch.report import _curves, _optuna_figures
from tricksearch.report._html import write_html
from tricksearch.report._importance import trick_importance
from tricksearch.report._plots import TrialPoint, plot_ablation, plot_recipe_vs_baseline
from tricksearch.report._report_study import (
    failures_section,
    history_section,
    importance_section,
    top_trials,
    trial_point,
)
from tricksearch.report._show import evidence_lines, fmt_number, implicit_defaults, trick_lines
from tricksearch.tuning._fidelity import fidelity_line, load_plan
from tricksearch.tuning._study import STUDY_NAME, load_study

if TYPE_CHECKING:  # optuna is imported by load_study, when a report is written
    from optuna.study import Study
    from optuna.trial import FrozenTrial

__all__ = ["write_report"]

#: The figures a report may draw; those not drawn this time are removed from the run folder.
_FIGURES = (
    "history.png",
    "importance.png",
    "ablation.png",
    "recipe_vs_baseline.png",
    _curves.FIGURE,
    *_optuna_figures.FIGURES.values(),
)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"report: {str(path)!r} is not valid JSON ({exc}).") from None
    return raw if isinstance(raw, dict) else None


@dataclass
class _Run:
    """What a search left in its folder, read once: the study and, when present, the settings
    (``search.json``), the results, the best recipe and its provenance (the evidence)."""

    dir: Path
    study: Study
    config: dict[str, Any]
    results: dict[str, Any]
    recipe: Recipe | None
    recipe_error: str | None
    prov: dict[str, Any]
    metric: str
    trials: list[FrozenTrial]
    points: list[TrialPoint]

    @property
    def maximize(self) -> bool:
        return self.study.direction.name == "MAXIMIZE"

    @property
    def epochs(self) -> int | None:
        """The full budget: from the settings, else the provenance, else the recipe."""
        return (
            self.config.get("epochs")
            or (self.prov.get("budget") or {}).get("epochs")
            or (self.recipe.budget.epochs if self.recipe else None)
        )


def _read_run(run_dir: Path) -> _Run:
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
    trials = study.get_trials(deepcopy=False)
    points = [trial_point(t) for t in trials]
    return _Run(run_dir, study, config, results, recipe, recipe_error, prov, metric, trials, points)


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report.md``, its PNG figures and ``RUN_DIR/report.html`` (the same, one
    self-contained file); return the path of ``report.md``.

    Raises :class:`~tricksearch.errors.ConfigError` when the folder or its study is missing.
    """
    run = _read_run(Path(run_dir))
    written: set[str] = set()  # the figures drawn this time; older ones are removed
    md: list[str] = [f"# tricksearch report: {run.dir.resolve().name}", ""]
    md += _summary(run)
    if run.recipe_error:
        md += [f"> best_recipe.yaml could not be read: {run.recipe_error}", ""]
    md += _recipe_section(run)
    md += _evidence_section(run, written)
    md += _candidates(run.results)
    md += _curves.curves_section(run.results, run.dir, written)
    md += history_section(run.points, run.dir, written, maximize=run.maximize, metric=run.metric)
    md += top_trials(run.trials, run.maximize, run.metric)
    md += failures_section(run.trials)
    imp = trick_importance(run.study, recipe=run.recipe)
    md += importance_section(imp, run.dir, written, run.metric)
    md += _optuna_figures.optuna_section(run.study, imp, run.dir, written, run.metric)
    md += _ablation_section(run.dir, run.recipe, written)
    md += _cost_section(run)
    md += _explore_section(run)
    for name in _FIGURES:
        if name not in written:
            (run.dir / name).unlink(missing_ok=True)
    path = run.dir / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n")
    write_html(path)
    return path


# --- sections ----------------------------------------------------------------------------------
def _summary(run: _Run) -> list[str]:
    prov, recipe, points = run.prov, run.recipe, run.points
    states = ("COMPLETE", "PRUNED", "FAIL", "STOPPED")
    counts = {s: sum(p.state == s for p in points) for s in states}
    unfinished = len(points) - sum(counts.values())
    ds = (
        (prov.get("dataset") or {}).get("name")
        or run.config.get("dataset")
        or (recipe.data.dataset if recipe else "?")
    )
    model = prov.get("model") or run.config.get("model") or (recipe.model.name if recipe else "?")
    epochs = run.epochs or "?"
    search = prov.get("search") or {}
    lines = [
        "## Summary",
        "",
        f"- dataset **{ds}**, model **{model}**, {epochs} epochs at the full budget",
        f"- space `{run.config.get('space') or search.get('space', '?')}`, sampler "
        f"`{run.config.get('sampler') or search.get('sampler', '?')}`, metric `{run.metric}`",
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
        r_ms, b_ms = (
            f"{fmt_number(e.get('test_acc_mean'))} ± {fmt_number(e.get('test_acc_std'))}"
            for e in (rec, base)
        )
        lines.append(
            f"- test accuracy **{r_ms}** vs baseline {b_ms} ({n} seed{'s' if n != 1 else ''}; "
            "mean ± sample std)"
        )
    lines.append("")
    return lines


def _recipe_section(run: _Run) -> list[str]:
    if run.recipe is None:
        return []
    lines = ["## The recipe", "", "```"]
    lines += trick_lines(run.recipe, indent="") or ["no trick on: the baseline won"]
    defaults = implicit_defaults(run.recipe)
    if defaults:
        lines.append("defaults in effect: " + "; ".join(defaults))
    reproduce = f"Reproduce: `tricksearch train --recipe {run.dir / 'best_recipe.yaml'}`"
    return [*lines, "```", "", reproduce, ""]


def _evidence_section(run: _Run, written: set[str]) -> list[str]:
    prov = run.prov
    if not (prov.get("recipe") or prov.get("baseline")):
        return []
    plot_recipe_vs_baseline(prov, run.dir / "recipe_vs_baseline.png")
    written.add("recipe_vs_baseline.png")
    evidence = {k: prov[k] for k in ("recipe", "baseline", "seeds", "gain") if k in prov}
    verdict = []
    if prov.get("verdict"):
        from tricksearch.tuning._evidence import verdict_lines

        verdict = ["## Verdict", "", "```", *verdict_lines(prov), "```", ""]
        verdict += _path_lines(prov.get("minimal"))
    return [
        *verdict,
        "## Recipe vs baseline",
        "",
        "![recipe vs baseline](recipe_vs_baseline.png)",
        "",
        "```",
        *evidence_lines(evidence, indent=""),
        "```",
        "",
        "The candidates and the baseline were retrained with the same seeds (paired); the "
        "winner was chosen on validation (handed over only if better than the baseline beyond "
        "noise); the test split was only read for the verdicts (95 % paired-t intervals).",
        "",
    ]


def _path_lines(minimal: dict[str, Any] | None) -> list[str]:
    """The minimal recipe's ablation path as a table: each step, its comparison with the full
    winner on val, kept or not."""
    if not minimal or not (minimal.get("path") or {}).get("steps"):
        return []
    lines = [
        "Ablation path (the winner's tricks removed cumulatively, cheapest first; compared with "
        "the full winner on val, paired):",
        "",
        "| removed | gain vs full winner (95 % CI) | verdict | kept |",
        "|---|---|---|---|",
    ]
    for step in minimal["path"]["steps"]:
        v = step["verdict"]
        ci = "" if v.get("low") is None else f" ({v['low']:+.4f} … {v['high']:+.4f})"
        lines.append(
            f"| {', '.join(step['removed'])} | {v['gain']:+.4f}{ci} | {v['verdict']} | "
            f"{'yes' if step['kept'] else 'no: the path stops'} |"
        )
    return [*lines, ""]


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
            f"| {c.get('label')} | {fmt_number(c.get('val_mean'))} ± "
            f"{fmt_number(c.get('val_std'))} | {len(vals)}/{len(c.get('val', []))} | "
            f"{', '.join(c.get('tricks', [])) or '—'} |"
        )
    return [*lines, ""]


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
            f"| {r.get('label')} | {fmt_number(r.get('mean'))} ± {fmt_number(r.get('std'))} | "
            f"{'' if d is None else format(d, '+.4f')} | {r.get('versus') or ''} | "
            f"{noise} |"
        )
    lines += ["", f"{len(seeds)} seeds per row. {ab.get('noise_rule', '')}", ""]
    return lines


def _cost_section(run: _Run) -> list[str]:
    points = run.points
    epochs = run.epochs or max((p.epochs for p in points), default=0)
    spent = sum(p.epochs for p in points)
    # ASHA's saving is measured on the trials it decided (COMPLETE or PRUNED by ASHA): a trial
    # that failed or that the time budget cut says nothing about ASHA.
    decided = [p for p in points if p.state in ("COMPLETE", "PRUNED")]
    left_out = [
        f"{n} {what}"
        for n, what in (
            (sum(p.state == "FAIL" for p in points), "failed"),
            (sum(p.state == "STOPPED" for p in points), "cut by the time budget"),
        )
        if n
    ]
    own = sum(p.epochs for p in decided)
    full = len(decided) * int(epochs or 0)
    lines = ["## Cost", ""]
    if full > 0:
        saved = 1 - own / full
        lines.append(
            f"- search: **{spent} trial-epochs** for {len(points)} trials; the {len(decided)} "
            f"trials ASHA decided on took {own}, at the full budget ({len(decided)} × {epochs} "
            f"epochs) they would have taken {full}"
            + (f" (not counted: {' and '.join(left_out)})" if left_out else "")
            + f": ASHA saved **{100 * saved:.0f} %**."
        )
    else:
        lines.append(f"- search: {spent} trial-epochs for {len(points)} trials.")
    fidelity = fidelity_line(load_plan(run.dir), [p.epochs for p in points])
    if fidelity:  # --fidelity data: the early epochs on a fraction of train (tuning/_fidelity.py)
        lines.append(f"- {fidelity}; the cost of each trial is in trials.csv (`cost_epochs`).")
    cands = run.results.get("candidates") or []
    seeds = run.prov.get("seeds") or []
    if cands and seeds and epochs:
        n = len(cands) * len(seeds)
        lines.append(
            f"- retraining: {len(cands)} configurations (top candidates + baseline) × "
            f"{len(seeds)} seeds × {epochs} epochs = {n * int(epochs)} epochs."
        )
    seconds = (run.prov.get("search") or {}).get("seconds")
    if seconds is not None:
        lines.append(f"- wall time of the search (before retraining): {seconds} s.")
    return [*lines, ""]


def _explore_section(run: _Run) -> list[str]:
    """How to open the study in optuna-dashboard, and the versions the search ran with."""
    lines = [
        "## Explore the study",
        "",
        "```",
        "pip install 'tricksearch[dashboard]'",
        f"tricksearch dashboard {run.dir.resolve()}",
        f"optuna-dashboard sqlite:///{(run.dir / 'study.db').resolve()}   # the same",
        "```",
        "",
        f"The study is named `{STUDY_NAME}`; its parameters are the flat keys "
        "`family.trick` (switch), `family.group` (which member of an exclusive group), "
        "`family.trick.param` and `budget.lr` / `budget.batch_size`.",
        "",
    ]
    versions = run.prov.get("versions") or {}
    if versions:
        lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    return lines
