"""The report's figures, drawn with matplotlib's object API on the Agg canvas.

No ``pyplot``: nothing global changes (backend, open figures), nothing needs a display. Each
function takes plain data (no Optuna objects) and writes one PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricksearch._numbers import finite_number as _finite

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TrialPoint",
    "plot_ablation",
    "plot_history",
    "plot_importance",
    "plot_recipe_vs_baseline",
]

_DPI = 120
_GOOD, _BAD, _NEUTRAL, _ACCENT = "#2a9d8f", "#e76f51", "#9aa0a6", "#264653"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=_DPI)
    return path


@dataclass(frozen=True)
class TrialPoint:
    """One trial for the history plot: its number, state, score (final or last) and epochs."""

    number: int
    state: str  # "COMPLETE" | "PRUNED" | "FAIL" | "STOPPED" (cut by the time budget) | other
    value: float | None
    epochs: int = 0


def plot_history(
    trials: Sequence[TrialPoint], path: Path, *, maximize: bool = True, metric: str = "val_acc"
) -> Path:
    """Trial value vs trial number; best-so-far line over COMPLETE trials; pruned and failed marked.

    Pruned trials (and trials the time budget cut, as squares) are drawn at their last reported
    (low-fidelity) value; failed trials sit on the bottom edge as red crosses.
    """
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    complete = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    pruned = [t for t in trials if t.state == "PRUNED" and t.value is not None]
    failed = [t for t in trials if t.state == "FAIL"]
    stopped = [t for t in trials if t.state == "STOPPED"]  # cut by the time budget
    cut = [t for t in stopped if t.value is not None]
    values = [
        t.value for t in complete + pruned + cut if t.value is not None and math.isfinite(t.value)
    ]
    hollow = {"s": 28, "facecolors": "none", "edgecolors": _NEUTRAL}
    for group, style in (
        (pruned, hollow | {"marker": "o", "label": "pruned by ASHA (last value)"}),
        (cut, hollow | {"marker": "s", "label": "stopped by the time budget (last value)"}),
        (complete, {"s": 36, "color": _ACCENT, "label": "complete (full budget)", "zorder": 3}),
    ):
        if group:
            ax.scatter([t.number for t in group], [t.value for t in group], **style)
    if complete:
        xs, ys = _best_so_far(complete, last=max(t.number for t in trials), maximize=maximize)
        ax.step(xs, ys, where="post", color=_GOOD, linewidth=2, label="best so far", zorder=2)
    if values:
        lo, hi = min(values), max(values)
        pad = max((hi - lo) * 0.08, 1e-3)
        ax.set_ylim(lo - 2 * pad, hi + pad)
    if failed:
        y0 = ax.get_ylim()[0]
        ax.scatter(
            [t.number for t in failed],
            [y0] * len(failed),
            marker="x",
            s=40,
            color=_BAD,
            label="failed",
            clip_on=False,
            zorder=4,
        )
    if not trials:
        ax.text(0.5, 0.5, "no trials", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial number")
    ax.set_ylabel(metric)
    n = len(trials)
    running = n - len(complete) - len(pruned) - len(failed) - len(stopped)
    ax.set_title(
        f"Optimization history: {n} trials, {len(complete)} complete, "
        f"{len(pruned)} pruned, {len(failed)} failed"
        + (f", {len(stopped)} stopped (time budget)" if stopped else "")
        + (f", {running} unfinished" if running else "")
    )
    ax.grid(alpha=0.3)
    if trials:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def _best_so_far(
    complete: list[TrialPoint], *, last: int, maximize: bool
) -> tuple[list[int], list[float]]:
    """The best value so far after each COMPLETE trial, held flat to trial number ``last``."""
    best: float | None = None
    xs: list[int] = []
    ys: list[float] = []
    for t in sorted(complete, key=lambda t: t.number):
        v = float(t.value)  # type: ignore[arg-type]
        best = v if best is None else (max(best, v) if maximize else min(best, v))
        xs.append(t.number)
        ys.append(best)
    return [*xs, last], [*ys, ys[-1]]


def plot_importance(
    by_trick: dict[str, float], path: Path, *, evaluator: str = "", top: int = 15
) -> Path:
    """Horizontal bars of per-trick importance (largest on top); past ``top``, one "other" bar."""
    ranked = sorted(by_trick.items(), key=lambda kv: -kv[1])
    if len(ranked) > top:
        rest = ranked[top - 1 :]
        ranked = [*ranked[: top - 1], (f"{len(rest)} others", sum(v for _, v in rest))]
    items = ranked[::-1]
    fig = _figure(8, max(2.5, 0.45 * len(items) + 1.2))
    ax = fig.add_subplot()
    from tricksearch.report._importance import entry_label

    names = [entry_label(k) for k, _ in items]
    vals = [v for _, v in items]
    bars = ax.barh(names, vals, color=_ACCENT)
    for bar, v in zip(bars, vals, strict=True):
        ax.text(
            bar.get_width() + 0.005,
            bar.get_y() + bar.get_height() / 2,
            f"{v:.2f}",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, max([*vals, 0.1]) * 1.15)
    ax.set_xlabel("importance (sums to 1 over the entries)")
    ax.set_title(f"Importance per trick ({evaluator})" if evaluator else "Importance per trick")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_ablation(ablation: dict[str, Any], path: Path) -> Path:
    """Δ of each '−' / '+' row (and of the recipe vs the baseline), with pooled-std error bars.

    Grey bars are within noise; green helps (a '+' row above the baseline, or a '−' row whose
    removal hurts, is drawn as the trick's contribution), red hurts.
    """
    rows = [r for r in ablation.get("rows", []) if r.get("delta") is not None]
    fig = _figure(8, max(2.5, 0.42 * len(rows) + 1.4))
    ax = fig.add_subplot()
    labels, deltas, errs, colors = [], [], [], []
    for r in reversed(rows):
        d = float(r["delta"])
        labels.append(f"{r['label']}  (vs {r.get('versus')})")
        deltas.append(d)
        errs.append(float(r["pooled_std"]) if r.get("pooled_std") is not None else 0.0)
        # For '−' rows a negative Δ means the trick helped the recipe.
        helps = -d if r.get("kind") == "minus" else d
        if r.get("within_noise") in (True, None):
            colors.append(_NEUTRAL)
        else:
            colors.append(_GOOD if helps > 0 else _BAD)
    ax.barh(labels, deltas, xerr=errs, color=colors, capsize=3, ecolor="#444444")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"Δ {ablation.get('metric', 'val_acc')} (mean over seeds; bars: pooled std)")
    seeds = ablation.get("seeds", [])
    ax.set_title(f"Ablation, {len(seeds)} seeds (grey: within noise)")
    ax.grid(axis="x", alpha=0.3)
    if not rows:
        ax.text(0.5, 0.5, "no comparisons", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_recipe_vs_baseline(evidence: dict[str, Any], path: Path) -> Path:
    """Val and test accuracy, recipe vs baseline: mean ± std bars with the seeds as dots.

    ``evidence`` is the provenance of a best recipe (keys ``recipe``, ``baseline``, ``seeds``).
    """
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    width = 0.36
    all_vals: list[float] = []
    labels: list[tuple[float, float]] = []
    for i, (who, color) in enumerate((("baseline", _NEUTRAL), ("recipe", _GOOD))):
        ev = evidence.get(who) or {}
        means, stds, xs = [], [], []
        for j, split in enumerate(("val", "test")):
            m = ev.get(f"{split}_acc_mean")
            s = ev.get(f"{split}_acc_std")
            x = j + (i - 0.5) * width
            xs.append(x)
            means.append(float(m) if _finite(m) else 0.0)
            stds.append(float(s) if _finite(s) else 0.0)
            seeds = [v for v in ev.get(f"{split}_acc", []) if _finite(v)]
            all_vals += seeds + ([float(m)] if _finite(m) else [])
            if seeds:
                ax.scatter([x] * len(seeds), seeds, color="black", s=10, zorder=3)
        ax.bar(xs, means, width, yerr=stds, color=color, capsize=4, label=who, ecolor="#444444")
        labels += [(x, m) for x, m in zip(xs, means, strict=True)]
    if all_vals:
        lo, hi = min(all_vals), max(all_vals)
        pad = max((hi - lo) * 0.5, 0.01)
        ax.set_ylim(max(0.0, lo - 2 * pad), hi + 1.5 * pad)
    y0, y1 = ax.get_ylim()
    for x, m in labels:  # the mean, written inside the foot of its bar
        ax.text(
            x,
            y0 + 0.04 * (y1 - y0),
            f"{m:.4f}",
            ha="center",
            va="bottom",
            fontsize=9,
            color="white",
            fontweight="bold",
        )
    ax.set_xticks([0, 1], ["validation", "test"])
    ax.set_ylabel("accuracy")
    n = len(evidence.get("seeds", []))
    ax.set_title(f"Recipe vs baseline, mean ± std over {n} seeds")
    ax.legend(loc="upper left", ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
