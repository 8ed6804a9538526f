"""Learning curves of the retrained configurations: val accuracy after each epoch, mean ± std over
the seeds, one line per recipe (the baseline, the tuned baseline, the candidates, the best).

The data is ``results.json``: each candidate of ``"candidates"`` holds its seeds' curves, either as
``"curves"`` (one list per seed, aligned with ``"seeds"``; ``null`` for a seed that failed) or as
per-seed ``"rows"`` each with a ``"curve"`` (what ``retrain_one`` returns: the val accuracy after
epoch 1, 2, …). A run folder written before curves were recorded has neither: no figure, no section.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tricksearch._numbers import finite_number as _finite
from tricksearch.report._plots import _ACCENT, _GOOD, _NEUTRAL, _figure, _save

__all__ = ["FIGURE", "Curve", "best_label", "curves_section", "learning_curves", "seed_curves"]

#: The file the figure is written to, in the run folder.
FIGURE = "learning_curves.png"
BASELINE, TUNED = "baseline", "tuned baseline"
#: Line colours of the candidates other than the best, in turn.
_CYCLE = ("#e9c46a", "#f4a261", "#8e7dbe", "#e76f51", "#457b9d", "#a8dadc")


@dataclass(frozen=True)
class Curve:
    """One recipe's learning curve: ``mean[i]`` and ``std[i]`` (sample std; 0 with one seed) of
    the val accuracy after epoch ``i + 1`` over ``n_seeds`` seeds (those that reached it).
    ``role``: "baseline", "tuned baseline", "candidate" or "best" (the recipe handed over)."""

    label: str
    role: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    n_seeds: int


def seed_curves(candidate: Mapping[str, Any]) -> list[list[float]]:
    """The per-seed curves of one candidate of results.json (see the module docstring); seeds
    without a curve (failed, or an older results.json) are left out."""
    raw = candidate.get("curves")
    if not isinstance(raw, list):
        rows = candidate.get("rows")
        raw = (
            [r.get("curve") for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
        )
    return [
        [float(v) for v in c]
        for c in raw
        if isinstance(c, list) and c and all(_finite(v) for v in c)
    ]


def best_label(results: Mapping[str, Any]) -> str | None:
    """The label of the configuration the search handed over: the minimal recipe, the winner
    (the candidate it was chosen from) or the baseline."""
    summary = results.get("summary") or {}
    exported = (summary.get("verdict") or {}).get("exported")
    if exported == "minimal":
        return "minimal"
    if exported == "baseline":
        return BASELINE
    return (summary.get("search") or {}).get("chosen_from")


def _mean_std(curves: Sequence[Sequence[float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per epoch, over the curves that reached it."""
    means, stds = [], []
    for epoch in range(max(len(c) for c in curves)):
        vals = [c[epoch] for c in curves if len(c) > epoch]
        means.append(statistics.fmean(vals))
        stds.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
    return tuple(means), tuple(stds)


def learning_curves(results: Mapping[str, Any]) -> list[Curve]:
    """One :class:`Curve` per candidate of results.json that has curves, in drawing order: the
    baseline, the tuned baseline, the other candidates as listed, the best last (on top)."""
    best = best_label(results)
    found: list[Curve] = []
    for cand in results.get("candidates") or []:
        curves = seed_curves(cand)
        if not curves:
            continue
        label = str(cand.get("label"))
        role = "best" if label == best else label if label in (BASELINE, TUNED) else "candidate"
        mean, std = _mean_std(curves)
        found.append(Curve(label, role, mean, std, len(curves)))
    order = {BASELINE: 0, TUNED: 1, "candidate": 2, "best": 3}
    return sorted(found, key=lambda c: order[c.role])  # stable: candidates keep their order


def _style(curve: Curve, k: int) -> dict[str, Any]:
    if curve.role == "best":
        return {"color": _GOOD, "linewidth": 2.6, "zorder": 4}
    if curve.role == BASELINE:
        return {"color": _NEUTRAL, "linestyle": "--", "linewidth": 1.8, "zorder": 3}
    if curve.role == TUNED:
        return {"color": _ACCENT, "linestyle": ":", "linewidth": 1.8, "zorder": 3}
    return {"color": _CYCLE[k % len(_CYCLE)], "linewidth": 1.4, "zorder": 2}


def plot_learning_curves(curves: Sequence[Curve], path: Path) -> Path:
    """Val accuracy by epoch: each curve's mean as a line, ± one std as a band."""
    fig = _figure(8, 4.8)
    ax = fig.add_subplot()
    k = 0
    for c in curves:
        style = _style(c, k)
        k += c.role == "candidate"
        xs = list(range(1, len(c.mean) + 1))
        label = f"{c.label} (best)" if c.role == "best" else c.label
        ax.plot(xs, c.mean, marker="o", markersize=3, label=label, **style)
        lo = [m - s for m, s in zip(c.mean, c.std, strict=True)]
        hi = [m + s for m, s in zip(c.mean, c.std, strict=True)]
        ax.fill_between(xs, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
    n = max((c.n_seeds for c in curves), default=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val accuracy")
    ax.set_title(f"Learning curves, mean ± std over {n} seed{'s' if n != 1 else ''}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def curves_section(results: Mapping[str, Any], run_dir: Path, written: set[str]) -> list[str]:
    """The learning-curve figure and how to read it; nothing when results.json has no curves."""
    curves = learning_curves(results)
    if not curves:
        return []
    plot_learning_curves(curves, run_dir / FIGURE)
    written.add(FIGURE)
    seeds = sorted({c.n_seeds for c in curves})
    n = "/".join(str(s) for s in seeds)
    return [
        "## Learning curves",
        "",
        f"![learning curves]({FIGURE})",
        "",
        "Validation accuracy after each epoch of the configurations retrained at the full "
        f"budget: the line is the mean over the seeds ({n} per configuration), the band ± one "
        "sample standard deviation. The thick green line is the recipe handed over (best), the "
        "dashed grey one the baseline"
        + (", the dotted one the tuned baseline" if any(c.role == TUNED for c in curves) else "")
        + ". A curve still rising at the last epoch suggests more epochs would pay.",
        "",
    ]
