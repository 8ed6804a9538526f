"""The decision after the search: which recipe to hand over, and the evidence for it.

    candidates (ranked by estimated full-budget value; the baseline's configuration takes no
    slot) + the baseline (+ the tuned baseline) retrained with the same seeds (paired)
      -> leader: the candidate with the best mean val score
      -> --seeds auto: more seeds for the leader and the baselines until the leader-vs-baseline
         verdict on val is decided, or max_seeds
      -> winner: the leader when it is better than the baseline beyond noise on val; otherwise
         the baseline ("no trick helped beyond noise")
      -> minimal recipe: the winner's passengers dropped along the ablation path (``_minimal``)
      -> verdicts on the held-out test split: the exported recipe vs the baseline, vs the tuned
         baseline

Every training goes through :class:`Trainer`, which never trains the same recipe and seed twice.
The test split decides nothing here: it is only read for the verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from tricksearch.tuning._candidates import (
    TrialRecord,
    candidate_table,
    choose_winner,
    pick_candidates,
)
from tricksearch.tuning._console import say
from tricksearch.tuning._minimal import AblationPath, ablation_path
from tricksearch.tuning._result import SearchFailed
from tricksearch.tuning._retrain import RetrainJob, run_jobs
from tricksearch.tuning._verdict import BETTER, Verdict, paired_verdict

if TYPE_CHECKING:
    from tricksearch.recipe import Recipe
    from tricksearch.tuning._budget import Plan, TimeBudget
    from tricksearch.tuning._prepare import Prepared
    from tricksearch.tuning._trainable import TrialContext

__all__ = ["BASELINE", "TUNED", "Decision", "Trainer", "decide", "plan_work", "scores"]

BASELINE = "baseline"
TUNED = "tuned baseline"


class Trainer:
    """Trains recipes at the full budget (as Ray tasks) and remembers every result by recipe and
    seed, so the same training is never run twice (a candidate equal to the baseline, a step of
    the ablation path equal to a candidate)."""

    def __init__(self, prep: Prepared, ctx: TrialContext, out: IO[str] | None) -> None:
        self.prep, self.ctx, self.out = prep, ctx, out
        self.results: dict[tuple[str, int], dict[str, Any]] = {}

    def train(self, recipes: Mapping[str, Recipe], seeds: Sequence[int]) -> None:
        """Train every recipe with every seed that it has no result for yet."""
        jobs: list[RetrainJob] = []
        planned = set(self.results)
        for label, recipe in recipes.items():
            key = recipe.dumps("json")
            for seed in seeds:
                if (key, seed) not in planned:
                    planned.add((key, seed))
                    jobs.append(RetrainJob(label, recipe.to_dict(), seed))
        if not jobs:
            return
        by_job = {(j.label, j.seed): j for j in jobs}
        for res in run_jobs(jobs, self.ctx, self.prep.config, self.out):
            job = by_job[(res["label"], res["seed"])]
            self.results[(recipes[job.label].dumps("json"), job.seed)] = res

    def rows(self, label: str, recipe: Recipe, seeds: Sequence[int]) -> list[dict[str, Any]]:
        """The results of ``recipe`` for ``seeds`` (those it has), labelled ``label``."""
        key = recipe.dumps("json")
        return [
            self.results[(key, s)] | {"label": label} for s in seeds if (key, s) in self.results
        ]

    def table(self, recipes: Mapping[str, Recipe], seeds: Sequence[int]) -> list[dict[str, Any]]:
        rows = [r for label, rec in recipes.items() for r in self.rows(label, rec, seeds)]
        return candidate_table(recipes, rows, self.prep.config.metric)


def scores(row: Mapping[str, Any], seeds: Sequence[int], key: str) -> list[float | None]:
    """A candidate's ``key`` per seed, in the order of ``seeds`` (None where it failed)."""
    by_seed = {r["seed"]: r.get(key) for r in row["rows"] if "error" not in r}
    return [by_seed.get(s) for s in seeds]


@dataclass
class Decision:
    """What the search hands over. ``table``: every retrained configuration (candidates, the
    baseline, the tuned baseline, the minimal recipe) with its per-seed results; ``leader``: the
    best candidate (None when there was none); ``winner``: the full recipe chosen (the leader,
    or the baseline); ``minimal``: the winner without its passengers (None when no path ran);
    ``selection``: leader vs baseline on val, the comparison that chose the winner."""

    table: list[dict[str, Any]]
    seeds: list[int]
    baseline: dict[str, Any]
    winner: dict[str, Any]
    leader: dict[str, Any] | None = None
    tuned: dict[str, Any] | None = None
    minimal: dict[str, Any] | None = None
    path: AblationPath | None = None
    selection: Verdict | None = None
    candidates: list[str] = field(default_factory=list)

    @property
    def recommended(self) -> dict[str, Any]:
        """The recipe handed over as best_recipe.yaml: the minimal one when the path removed
        anything, else the winner."""
        return self.minimal if self.minimal is not None else self.winner

    @property
    def trick_helped(self) -> bool:
        return self.winner["label"] != BASELINE

    def test_verdict(
        self, row: Mapping[str, Any], against: Mapping[str, Any], metric: str
    ) -> Verdict:
        """``row`` vs ``against`` on the held-out test split, paired over the seeds."""
        key, mode = _test_key(metric)
        return paired_verdict(
            scores(row, self.seeds, key), scores(against, self.seeds, key), mode=mode
        )


def _test_key(metric: str) -> tuple[str, str]:
    """The test-split counterpart of the selection metric, and its direction."""
    return ("test_loss", "min") if metric == "val_loss" else ("test_acc", "max")


def plan_work(prep: Prepared, records: Sequence[TrialRecord], budget: TimeBudget) -> Plan | None:
    """The time budget's plan of the work after the tuning (``_budget.plan_after_tuning``) for
    the candidates there are, the tuned baseline's search (when the space has one) and the best
    candidate's tricks (the minimal recipe's path); None when no speed was measured."""
    from dataclasses import replace

    from tricksearch.tuning._tuned_baseline import budget_space

    config = prep.config
    candidates = _candidates(prep, records)
    tricks = 0
    if candidates and config.minimal:
        tricks = len(prep.space.to_recipe(prep.base, dict(candidates[0].params)).tricks_on())
    work = replace(
        budget.work,
        candidates=len(candidates),
        tuned_trials=config.tuned_baseline_trials if budget_space(prep.space) else 0,
        minimal_tricks=tricks,
    )
    return budget.plan_for(work, records)


def _candidates(prep: Prepared, records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The top-k trials by estimated full-budget value, the baseline's point left out."""
    config = prep.config
    return pick_candidates(
        records,
        config.mode,
        config.top_k,
        max_t=config.epochs,
        exclude=_points(prep, prep.base.baseline()),
    )


def decide(
    prep: Prepared,
    ctx: TrialContext,
    records: Sequence[TrialRecord],
    tuned: Recipe | None,
    out: IO[str] | None,
    budget: TimeBudget | None = None,
) -> Decision:
    """Retrain, race, choose, and shrink; see the module docstring. ``budget``: the time budget,
    whose plan (``budget.plan``) sets the candidates and seeds retrained and bounds the race and
    the minimal recipe by the time left."""
    config = prep.config
    plan = budget.plan if budget is not None else None
    baseline = prep.base.baseline()
    candidates = _candidates(prep, records)
    if plan is not None:
        candidates = candidates[: plan.candidates]
    recipes = {
        f"trial {r.number}": prep.space.to_recipe(prep.base, dict(r.params)) for r in candidates
    }
    recipes[BASELINE] = baseline
    if tuned is not None:
        recipes[TUNED] = tuned
    seeds = list(config.first_seeds)
    if plan is not None:
        seeds = seeds[: plan.seeds]
    others = " and the tuned baseline" if tuned is not None else ""
    say(
        out,
        f"retraining the top {len(candidates)} trial(s), the baseline{others} at the full "
        f"budget with seeds {seeds} ...",
    )
    trainer = Trainer(prep, ctx, out)
    trainer.train(recipes, seeds)
    leader = _leader(trainer.table(recipes, seeds), config.mode)
    selection = None
    if leader is not None:
        selection = _race(trainer, recipes, leader["label"], seeds, out, budget)
    table = trainer.table(recipes, seeds)
    rows = {c["label"]: c for c in table}
    base_row = rows[BASELINE]
    lead_row = rows[leader["label"]] if leader is not None else None
    if not any("error" not in r for r in base_row["rows"]):
        # Without the baseline no gain can be measured: nothing is exported (a recipe with
        # "baseline nan, gain +nan" would look like an answer). The study keeps every trial.
        raise SearchFailed(
            "the baseline failed when retrained "
            f"({next(r['error'] for r in base_row['rows'] if 'error' in r)}), so no gain can be "
            "measured and no recipe was written; the trials are kept in "
            f"{prep.run_dir / 'study.db'}."
        )
    better = selection is not None and selection.verdict == BETTER
    decision = Decision(
        table=table,
        seeds=seeds,
        baseline=base_row,
        winner=lead_row if better and lead_row is not None else base_row,
        leader=lead_row,
        tuned=rows.get(TUNED),
        selection=selection,
        candidates=[k for k in recipes if k not in (BASELINE, TUNED)],
    )
    if decision.trick_helped and config.minimal and decision.winner["recipe"].tricks_on():
        if _minimal_fits(budget, len(decision.winner["recipe"].tricks_on()), len(seeds), out):
            _shrink(decision, trainer, out)
    if budget is not None:
        budget.outcome["seeds"] = list(seeds)
    return decision


def _minimal_fits(budget: TimeBudget | None, tricks: int, seeds: int, out: IO[str] | None) -> bool:
    """Whether the minimal recipe's path fits in the time budget's time left (always without a
    budget); recorded in ``budget.outcome["minimal"]``."""
    if budget is None:
        return True
    need = budget.minimal_seconds(tricks, seeds)
    fits = budget.fits(need)
    budget.outcome["minimal"] = "ran" if fits else "skipped"
    if not fits:
        say(
            out,
            f"minimal recipe: skipped to fit the time budget ({need:.0f} s expected, "
            f"{max(0.0, budget.left()):.0f} s left)",
        )
    return fits


def _points(prep: Prepared, recipe: Recipe) -> list[dict[str, Any]]:
    """The baseline as the space writes it: ``[point]``, or ``[]`` when the space cannot express
    it (a space that fixes a trick on): then no trial is the baseline."""
    try:
        point = prep.space.point(recipe)
        same = prep.space.to_recipe(prep.base, point).dumps("json") == recipe.dumps("json")
    except Exception:  # the space's own refusal: nothing to exclude
        return []
    return [point] if same else []


def _leader(table: Sequence[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    pool = [c for c in table if c["label"] not in (BASELINE, TUNED)]
    try:
        return choose_winner(pool, mode)
    except SearchFailed:  # no candidate, or every one failed: the baseline stands alone
        return None


def _race(
    trainer: Trainer,
    recipes: Mapping[str, Recipe],
    leader: str,
    seeds: list[int],
    out: IO[str] | None,
    budget: TimeBudget | None = None,
) -> Verdict:
    """Leader vs baseline on val; with ``--seeds auto`` more seeds (for the leader and the
    baselines) until that verdict is decided or ``max_seeds`` is reached, or (with a time
    budget) until one more round would not fit in the time left, the minimal recipe's share
    kept when the plan has one. ``seeds`` grows."""
    config = trainer.prep.config
    raced = {k: recipes[k] for k in (leader, BASELINE, TUNED) if k in recipes}

    def fits() -> bool:
        if budget is None:
            return True
        plan = budget.plan
        keep = 0.0
        if plan is not None and plan.minimal:
            keep = budget.minimal_seconds(plan.work.minimal_tricks, len(seeds) + 1)
        if budget.fits(budget.round_seconds(len(raced)) + keep):
            return True
        budget.outcome["race"] = "stopped"
        return False

    def verdict() -> Verdict:
        rows = {c["label"]: c for c in trainer.table(raced, seeds)}
        return paired_verdict(
            scores(rows[leader], seeds, config.metric),
            scores(rows[BASELINE], seeds, config.metric),
            mode=config.mode,
        )

    current = verdict()
    while (
        config.seeds == "auto" and not current.decided and len(seeds) < config.max_seeds and fits()
    ):
        seeds.append(max(seeds) + 1)
        say(
            out,
            f"  {leader} vs baseline on val: {current.interval_text()}; adding seed {seeds[-1]}",
        )
        trainer.train(raced, seeds[-1:])
        current = verdict()
    say(out, f"{leader} vs baseline on val: {current.verdict}: {current.interval_text()}")
    return current


def _shrink(decision: Decision, trainer: Trainer, out: IO[str] | None) -> None:
    """Run the ablation path on the winner; record the minimal recipe when it removed any."""
    config = trainer.prep.config
    full: Recipe = decision.winner["recipe"]
    seeds = decision.seeds
    tricks = list(full.tricks_on())

    def without(removed: frozenset[str]) -> Recipe:
        recipe = full
        for name in removed:
            recipe = recipe.without_trick(name)
        return recipe

    def evaluate(removed: frozenset[str]) -> list[float | None]:
        label = "without " + ", ".join(sorted(removed))
        trainer.train({label: without(removed)}, seeds)
        row = trainer.table({label: without(removed)}, seeds)[0]
        return scores(row, seeds, config.metric)

    say(
        out,
        f"minimal recipe: dropping the winner's {len(tricks)} trick(s) one at a time (at most "
        f"{2 * len(tricks) - 1} × {len(seeds)} trainings; --no-minimal skips this) ...",
    )
    path = ablation_path(
        tricks,
        scores(decision.winner, seeds, config.metric),
        evaluate,
        mode=config.mode,
        on_step=lambda line: say(out, "  " + line),
    )
    decision.path = path
    if path.removed:
        recipe = without(frozenset(path.removed))
        row = trainer.table({"minimal": recipe}, seeds)[0]
        decision.minimal = row
        decision.table.append(row)
