"""The minimal recipe: drop the winner's tricks while the result stays indistinguishable from it.

A winner found from a handful of trials often carries passengers: tricks that were switched on by
the sampler and do nothing. The ablation path removes them:

1. one-trick-off round: the winner without each of its tricks, trained with the winner's seeds;
   the tricks are ordered by what their removal costs (least first);
2. path: remove them cumulatively in that order; each step is trained and compared with the full
   winner (paired, :func:`paired_verdict`); the path stops at the first step that is *worse*
   (with a single seed, at the first step whose mean is below the winner's: no interval then).

The tricks removed up to there are passengers; what is left is the minimal recipe. The cost is at
most 2·k − 1 evaluations for k tricks (the first path step reuses its one-off evaluation).
Pure logic: ``evaluate`` trains (or, in tests, plants) the per-seed scores of a set of removals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tricksearch.tuning._verdict import WORSE, Verdict, paired_verdict

__all__ = ["AblationPath", "PathStep", "ablation_path"]

#: ``evaluate(removed)`` -> the per-seed scores of the winner without the tricks in ``removed``
#: (None for a seed whose training failed; that seed is left out of the comparison).
Evaluate = Callable[[frozenset[str]], Sequence[float | None]]


@dataclass(frozen=True)
class PathStep:
    """One step: the tricks removed so far (the last one is this step's) and the comparison of
    that reduced recipe with the full winner."""

    removed: tuple[str, ...]
    scores: tuple[float | None, ...]
    verdict: Verdict
    kept: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": list(self.removed),
            "scores": list(self.scores),
            "verdict": self.verdict.to_dict(),
            "kept": self.kept,
        }


@dataclass
class AblationPath:
    """The result: the one-off costs, the path, and the tricks the minimal recipe keeps."""

    tricks: tuple[str, ...]
    one_off: dict[str, Verdict] = field(default_factory=dict)
    steps: list[PathStep] = field(default_factory=list)

    @property
    def removed(self) -> tuple[str, ...]:
        kept = [s for s in self.steps if s.kept]
        return kept[-1].removed if kept else ()

    @property
    def minimal(self) -> tuple[str, ...]:
        """The tricks of the minimal recipe, in the winner's order."""
        return tuple(t for t in self.tricks if t not in self.removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tricks": list(self.tricks),
            "minimal": list(self.minimal),
            "removed": list(self.removed),
            "one_off": {k: v.to_dict() for k, v in self.one_off.items()},
            "steps": [s.to_dict() for s in self.steps],
        }


def _acceptable(verdict: Verdict) -> bool:
    if verdict.n < 2:  # no interval: keep the removal only if it did not lose on average
        return verdict.gain >= 0
    return verdict.verdict != WORSE


def ablation_path(
    tricks: Sequence[str],
    full_scores: Sequence[float | None],
    evaluate: Evaluate,
    *,
    mode: str = "max",
    on_step: Callable[[str], None] | None = None,
) -> AblationPath:
    """Find the minimal recipe; see the module docstring. ``on_step`` receives progress lines."""
    result = AblationPath(tricks=tuple(tricks))
    if not tricks:
        return result
    scores: dict[frozenset[str], Sequence[float | None]] = {}
    for trick in tricks:
        removed = frozenset((trick,))
        scores[removed] = evaluate(removed)
        result.one_off[trick] = paired_verdict(scores[removed], full_scores, mode=mode)
        if on_step:
            on_step(f"without {trick}: {result.one_off[trick].interval_text()}")

    def cost(trick: str) -> float:  # what removing the trick costs; a failed removal the most
        gain = result.one_off[trick].gain
        return math.inf if math.isnan(gain) else -gain

    order = sorted(tricks, key=cost)
    for i in range(len(order)):
        removed_list = tuple(order[: i + 1])
        removed = frozenset(removed_list)
        if removed not in scores:
            scores[removed] = evaluate(removed)
        verdict = paired_verdict(scores[removed], full_scores, mode=mode)
        ok = _acceptable(verdict)
        result.steps.append(PathStep(removed_list, tuple(scores[removed]), verdict, ok))
        if on_step:
            word = "kept" if ok else "stops the path"
            on_step(f"without {', '.join(removed_list)}: {verdict.interval_text()} ({word})")
        if not ok:
            break
    return result
