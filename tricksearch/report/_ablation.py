"""The ablation table: which tricks of a recipe earn their place, with seeds.

For a recipe with tricks T₁…Tₖ on, the table holds

- ``recipe``: the recipe itself;
- ``baseline``: the same data, model and budget with every trick off;
- ``− Tᵢ``: the recipe without Tᵢ (compared with the recipe): what the recipe loses without it;
- ``+ Tᵢ``: the baseline with Tᵢ alone (compared with the baseline): what it brings on its own.

Every row is trained with ``n`` seeds (``budget.seed = 0 … n−1``) by the engine and scored by its
validation accuracy (the test split is never touched), reported as mean ± sample standard
deviation. A difference is flagged *within noise* when it is no larger than the pooled standard
deviation of the two rows compared — a screen against reading seed noise as an effect, not a
significance test. Removing a member of an exclusive group (an optimizer, an LR decay) falls back
to the group's required default (``sgd``, ``constant``); the row label says so
(``− cosine → constant``).

Identical configurations (the recipe with one trick equals ``+ trick``) are trained once.
"""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricksearch._clock import fmt_duration
from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe
from tricksearch.tricks._base import TrickSpec, registered_tricks

if TYPE_CHECKING:  # pragma: no cover
    from tricksearch.data import DatasetSplits

__all__ = ["NOISE_RULE", "AblationResult", "AblationRow", "ablate", "pooled_std"]

#: How "within noise" is decided; printed under every table.
NOISE_RULE = (
    "within noise: |Δ| ≤ the pooled sample standard deviation of the two rows compared, "
    "√(((n₁−1)s₁² + (n₂−1)s₂²)/(n₁+n₂−2)) (= √((s₁²+s₂²)/2) for equal n); a screen against seed "
    "noise, not a significance test. Δ of a '−' row is against the recipe, of a '+' row and of "
    "the recipe against the baseline."
)

Progress = Callable[[str], None]
_now = time.monotonic  # the clock of the progress lines' elapsed and estimate


def pooled_std(a: list[float], b: list[float]) -> float | None:
    """Pooled sample standard deviation of two groups of scores; ``None`` when undefined.

    ``√(((n₁−1)s₁² + (n₂−1)s₂²)/(n₁+n₂−2))``; needs at least two scores in one group and one in
    the other (a group of one contributes no variance but no degree of freedom either).
    """
    dof = len(a) + len(b) - 2
    if dof < 1 or not a or not b:
        return None
    ss = sum((len(g) - 1) * statistics.variance(g) for g in (a, b) if len(g) > 1)
    return math.sqrt(ss / dof)


@dataclass
class AblationRow:
    """One row of the table: a configuration, its scores per seed and its comparison."""

    label: str
    kind: str  # "recipe" | "baseline" | "minus" | "plus"
    trick: str | None
    recipe: dict[str, Any] = field(repr=False)
    fallback: str | None = None
    val_acc: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    versus: str | None = None  # "recipe" | "baseline" | None
    delta: float | None = None
    pooled_std: float | None = None
    within_noise: bool | None = None

    @property
    def mean(self) -> float | None:
        """Mean validation accuracy over the seeds that finished."""
        return statistics.fmean(self.val_acc) if self.val_acc else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n−1) over the seeds that finished; None below 2 seeds."""
        return statistics.stdev(self.val_acc) if len(self.val_acc) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kind": self.kind,
            "trick": self.trick,
            "fallback": self.fallback,
            "seeds": list(self.seeds),
            "val_acc": list(self.val_acc),
            "mean": self.mean,
            "std": self.std,
            "versus": self.versus,
            "delta": self.delta,
            "pooled_std": self.pooled_std,
            "within_noise": self.within_noise,
            "failed": list(self.failed),
            "recipe": self.recipe,
        }


@dataclass
class AblationResult:
    """The finished table; :meth:`table` prints it, :meth:`save` writes JSON and Markdown."""

    recipe: Recipe
    seeds: list[int]
    rows: list[AblationRow]
    seconds: float = 0.0
    trainings: int = 0
    source: str | None = None
    metric: str = "val_acc"
    noise_rule: str = NOISE_RULE

    def row(self, label: str) -> AblationRow:
        """The row called ``label`` (``"recipe"``, ``"baseline"``, ``"− mixup"``, ``"+ mixup"``)."""
        for r in self.rows:
            if r.label == label or r.label.split(" → ")[0] == label:
                return r
        raise KeyError(f"no ablation row {label!r}; rows: {', '.join(r.label for r in self.rows)}")

    def _title(self) -> str:
        r = self.recipe
        src = f"{self.source} " if self.source else ""
        return (
            f"ablation of {src}({r.data.dataset}, {r.model.name}, {r.budget.epochs} epochs): "
            f"{self.metric} over seeds {', '.join(map(str, self.seeds))}"
        )

    def _cells(self) -> list[list[str]]:
        out = []
        for row in self.rows:
            out.append(
                [
                    row.label,
                    _fmt_mean_std(row.mean, row.std),
                    "" if row.delta is None else f"{row.delta:+.4f}",
                    row.versus or "",
                    _noise_word(row),
                    _seed_word(row, len(self.seeds)),
                ]
            )
        return out

    def table(self) -> str:
        """The table as aligned plain text, with the rule for "within noise" underneath."""
        head = ["row", self.metric, "Δ", "vs", "noise", "seeds"]
        cells = [head, *self._cells()]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = [self._title(), ""]
        for c in cells:
            lines.append("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
        lines += ["", _wrap(self.noise_rule), _fallback_note(self.rows)]
        return "\n".join(line for line in lines if line is not None).rstrip() + "\n"

    def markdown(self) -> str:
        """The table as Markdown (what ``ablation.md`` holds)."""
        lines = [f"# {self._title()}", ""]
        lines.append(f"| row | {self.metric} (mean ± std) | Δ | vs | noise | seeds |")
        lines.append("|---|---:|---:|---|---|---:|")
        for c in self._cells():
            lines.append("| " + " | ".join(v.replace("|", "\\|") for v in c) + " |")
        lines += ["", self.noise_rule]
        note = _fallback_note(self.rows)
        if note:
            lines += ["", note]
        lines += [
            "",
            f"{self.trainings} trainings, {self.seconds:.0f} s. Scores are validation accuracy; "
            "the test split was not used.",
        ]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        from tricksearch.api import versions

        return {
            "source": self.source,
            "metric": self.metric,
            "seeds": list(self.seeds),
            "noise_rule": self.noise_rule,
            "seconds": round(self.seconds, 1),
            "trainings": self.trainings,
            "recipe": self.recipe.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "versions": versions(),
        }

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``ablation.json`` and ``ablation.md`` into ``out_dir``; return both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out / "ablation.json", out / "ablation.md"
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        md_path.write_text(self.markdown())
        return json_path, md_path


def _fmt_mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "failed"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f} ± n/a"


def _noise_word(row: AblationRow) -> str:
    if row.delta is None:
        return ""
    if row.within_noise is None:
        return "n/a (1 seed)"
    return "within noise" if row.within_noise else ("better" if row.delta > 0 else "worse")


def _seed_word(row: AblationRow, n: int) -> str:
    return f"{len(row.val_acc)}/{n}" if row.failed else str(n)


def _wrap(text: str, width: int = 100) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _fallback_note(rows: list[AblationRow]) -> str:
    falls = sorted({f"{r.trick} → {r.fallback}" for r in rows if r.kind == "minus" and r.fallback})
    if not falls:
        return ""
    return (
        "'→' rows: removing a member of an exclusive group falls back to the group's default "
        f"({'; '.join(falls)})."
    )


# --- planning ----------------------------------------------------------------------------------
def _fallback(spec: TrickSpec) -> str | None:
    """What replaces ``spec`` when it is removed: its group's required default, if any."""
    if spec.group is None:
        return None
    for name, other in registered_tricks().items():
        if other.family == spec.family and other.group == spec.group and other.required_default:
            return f"{name} defaults" if name == spec.name else name
    return None


def _plan(recipe: Recipe) -> list[AblationRow]:
    """The rows of the table, recipes built and validated (before any training)."""
    tricks = registered_tricks()
    base = recipe.baseline()
    rows = [
        AblationRow("recipe", "recipe", None, recipe.to_dict(), versus="baseline"),
        AblationRow("baseline", "baseline", None, base.to_dict()),
    ]
    for name, params in recipe.tricks_on().items():
        spec = tricks[name]
        fallback = _fallback(spec)
        try:
            minus = recipe.without_trick(name)
            plus = base.with_trick(name, params)
        except ConfigError as exc:
            raise type(exc)(f"ablation row for trick {name!r}: {exc}") from None
        label = f"− {name}" + (f" → {fallback}" if fallback else "")
        rows.append(AblationRow(label, "minus", name, minus.to_dict(), fallback, versus="recipe"))
        rows.append(AblationRow(f"+ {name}", "plus", name, plus.to_dict(), versus="baseline"))
    return rows


def _key(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True)


def _compare(rows: list[AblationRow]) -> None:
    by_kind = {r.kind: r for r in rows if r.kind in ("recipe", "baseline")}
    for row in rows:
        ref = by_kind.get(row.versus) if row.versus else None
        if ref is None or not row.val_acc or not ref.val_acc:
            continue
        row.delta = statistics.fmean(row.val_acc) - statistics.fmean(ref.val_acc)
        row.pooled_std = pooled_std(row.val_acc, ref.val_acc)
        row.within_noise = None if row.pooled_std is None else abs(row.delta) <= row.pooled_std


# --- training ----------------------------------------------------------------------------------
def _train_job(
    recipe: dict[str, Any], seed: int, data: DatasetSplits | None, device: str | None
) -> dict[str, Any]:
    """Train one configuration with one seed, with the recipe's torch thread count (as the search
    trained it); a diverged run is a result, not an error."""
    from tricksearch.api import torch_threads
    from tricksearch.engine import TrainingDiverged, fit

    r = Recipe.from_dict(recipe)
    r = r.with_changes(budget=r.budget.to_dict() | {"seed": seed})
    t0 = time.perf_counter()
    try:
        with torch_threads(r.runtime.threads):
            res = fit(r, data=data, device=device, evaluate_test=False)
    except TrainingDiverged as exc:
        return {
            "seed": seed,
            "error": str(exc).splitlines()[0],
            "seconds": time.perf_counter() - t0,
        }
    return {"seed": seed, "val_acc": float(res.val_acc), "seconds": res.seconds}


def _run_sequential(
    jobs: list[tuple[str, dict[str, Any], int]],
    data: DatasetSplits | None,
    device: str | None,
    done: Callable[[str, dict[str, Any]], None],
) -> None:
    for key, recipe, seed in jobs:
        done(key, _train_job(recipe, seed, data, device))


def _run_ray(
    jobs: list[tuple[str, dict[str, Any], int]],
    data: DatasetSplits | None,
    device: str | None,
    done: Callable[[str, dict[str, Any]], None],
) -> None:
    from tricksearch.tuning._parallel import map_tasks, ray_running

    gpu = 0.25 if device is not None and str(device).startswith("cuda") else 0.0
    tasks = [(recipe, seed, device) for _, recipe, seed in jobs]
    with ray_running():
        for i, res in map_tasks(_train_ray_job, tasks, num_cpus=1, num_gpus=gpu, shared=data):
            key, _, seed = jobs[i]
            if isinstance(res, Exception):
                res = {"seed": seed, "error": str(res).splitlines()[0], "seconds": 0.0}
            done(key, res)


def _train_ray_job(
    recipe: dict[str, Any], seed: int, device: str | None, data: DatasetSplits | None
) -> dict[str, Any]:
    return _train_job(recipe, seed, data, device)


def ablate(
    recipe: Recipe,
    *,
    seeds: int = 3,
    data: DatasetSplits | None = None,
    parallel: bool = False,
    progress: Progress | None = None,
    device: str | None = None,
) -> AblationResult:
    """Train the recipe, the baseline, and each trick removed / added alone, with ``seeds`` seeds.

    ``data`` defaults to the recipe's dataset (loaded once). ``parallel=True`` runs the
    trainings as Ray tasks (one CPU each; a quarter GPU each when ``device`` names CUDA) when Ray
    is installed, starting and stopping a local Ray if none is running; without Ray it runs them
    one after the other. ``progress`` receives a line per finished training: ``[i/n] …``, elapsed
    and ~ elapsed / i × (n − i) left. ``device`` goes to :func:`tricksearch.engine.fit`.
    """
    if not isinstance(recipe, Recipe):
        raise ConfigTypeError(f"recipe: got {type(recipe).__name__}, expected a Recipe.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds: got {seeds!r}, expected an integer >= 1.")
    recipe = recipe.without_provenance() if recipe.provenance else recipe
    rows = _plan(recipe)
    seed_list = list(range(seeds))
    t0 = time.perf_counter()
    if data is None:  # once, shared by every training (and shipped once to Ray)
        from tricksearch.engine import load_data

        data = load_data(recipe)
    results = _train_rows(rows, seed_list, data, parallel, device, progress or (lambda line: None))
    for row in rows:
        res = sorted(results[_key(row.recipe)], key=lambda r: r["seed"])
        row.seeds = [r["seed"] for r in res if "val_acc" in r]
        row.val_acc = [r["val_acc"] for r in res if "val_acc" in r]
        row.failed = [{"seed": r["seed"], "error": r["error"]} for r in res if "error" in r]
    _compare(rows)
    return AblationResult(
        recipe=recipe,
        seeds=seed_list,
        rows=rows,
        seconds=time.perf_counter() - t0,
        trainings=len(results) * len(seed_list),
    )


def _train_rows(
    rows: list[AblationRow],
    seeds: list[int],
    data: DatasetSplits | None,
    parallel: bool,
    device: str | None,
    say: Progress,
) -> dict[str, list[dict[str, Any]]]:
    """Train every distinct configuration of ``rows`` with every seed: key -> one result per seed
    (``{"seed", "val_acc", "seconds"}`` or ``{"seed", "error", "seconds"}``)."""
    unique: dict[str, dict[str, Any]] = {}
    labels: dict[str, list[str]] = {}
    for row in rows:
        unique.setdefault(_key(row.recipe), row.recipe)
        labels.setdefault(_key(row.recipe), []).append(row.label)
    jobs = [(key, r, s) for key, r in unique.items() for s in seeds]
    results: dict[str, list[dict[str, Any]]] = {key: [] for key in unique}
    t0 = _now()

    def done(key: str, res: dict[str, Any]) -> None:
        results[key].append(res)
        count, elapsed = sum(map(len, results.values())), _now() - t0
        score = f"val_acc {res['val_acc']:.4f}" if "val_acc" in res else f"failed: {res['error']}"
        left = f", ~{fmt_duration(elapsed / count * (len(jobs) - count))} left" * (
            count < len(jobs)
        )
        say(
            f"[{count}/{len(jobs)}] {' = '.join(labels[key])}, seed {res['seed']}: {score} "
            f"({res['seconds']:.1f}s; {fmt_duration(elapsed)} elapsed{left})"
        )

    if parallel and importlib.util.find_spec("ray") is not None:
        _run_ray(jobs, data, device, done)
    else:
        if parallel:
            say("note: ray is not installed; training one configuration after the other.")
        _run_sequential(jobs, data, device, done)
    return results


def load_ablation(path: str | Path) -> dict[str, Any]:
    """Read an ``ablation.json`` written by :meth:`AblationResult.save` (for the report)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"ablation: {str(path)!r} is not a readable ablation.json ({exc})."
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rows"), list):
        raise ConfigError(
            f"ablation: {str(path)!r} has no 'rows' list; expected the file `tricksearch ablate` "
            "writes."
        )
    return raw
