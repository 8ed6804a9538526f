"""The verdict's statistics against scipy, and the minimal recipe's ablation path on planted
effects (pure functions: no training, no Ray)."""

from __future__ import annotations

import random

import pytest
from scipy import stats

from tricksearch.tuning._minimal import ablation_path
from tricksearch.tuning._verdict import (
    BETTER,
    NOT_DISTINGUISHABLE,
    WORSE,
    detectable_gain,
    paired_verdict,
    t_quantile,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 19, 60, 500])
@pytest.mark.parametrize("p", [0.55, 0.9, 0.975, 0.995])
def test_t_quantile_matches_scipy(p: float, df: int) -> None:
    assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), abs=1e-9)
    assert t_quantile(1 - p, df) == pytest.approx(stats.t.ppf(1 - p, df), abs=1e-9)


def test_interval_matches_scipy_paired_t() -> None:
    rng = random.Random(3)
    a = [0.9 + rng.gauss(0, 0.01) for _ in range(6)]
    b = [x - 0.004 + rng.gauss(0, 0.01) for x in a]
    v = paired_verdict(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    low, high = stats.t.interval(0.95, len(d) - 1, loc=stats.tmean(d), scale=stats.sem(d))
    assert v.low == pytest.approx(low, abs=1e-12)
    assert v.high == pytest.approx(high, abs=1e-12)
    assert v.n == 6 and v.gain == pytest.approx(sum(d) / 6)


def test_verdict_words_and_direction() -> None:
    base = [0.80, 0.81, 0.79, 0.80]
    assert paired_verdict([x + 0.05 for x in base], base).verdict == BETTER
    assert paired_verdict([x - 0.05 for x in base], base).verdict == WORSE
    noisy = [0.85, 0.76, 0.83, 0.78]
    assert paired_verdict(noisy, base).verdict == NOT_DISTINGUISHABLE
    # A loss is minimised: lower is better.
    assert paired_verdict([x - 0.05 for x in base], base, mode="min").verdict == BETTER
    # One seed: no interval, never decided.
    one = paired_verdict([0.99], [0.5])
    assert one.verdict == NOT_DISTINGUISHABLE and one.low is None and not one.decided
    assert "no interval" in one.interval_text()
    with pytest.raises(ValueError, match="equal counts"):
        paired_verdict([0.1, 0.2], [0.1])


def test_detectable_gain_shrinks_with_the_split() -> None:
    small, large = detectable_gain(40, 0.8), detectable_gain(4000, 0.8)
    assert small > 0.2 > 0.03 > large
    assert detectable_gain(10, 1.0) >= 0.1  # never below one sample's worth


def _planted(effects: dict[str, float], seeds: int = 4, noise: float = 0.002):
    """Scores of the winner without the tricks in ``removed``: 0.8 + the effects of the tricks
    kept, plus seed noise shared by all recipes (paired) and a little of each recipe's own."""
    shared = [random.Random(s).gauss(0, 0.02) for s in range(seeds)]

    def evaluate(removed: frozenset[str]) -> list[float]:
        kept = sum(v for k, v in effects.items() if k not in removed)
        own = random.Random(hash(tuple(sorted(removed))) % 1000)
        return [0.8 + kept + shared[s] + own.gauss(0, noise) for s in range(seeds)]

    return evaluate


def test_minimal_recipe_keeps_the_useful_trick_only() -> None:
    effects = {"inert_a": 0.0, "useful": 0.06, "inert_b": 0.0}
    evaluate = _planted(effects)
    calls: list[frozenset[str]] = []

    def counted(removed: frozenset[str]) -> list[float]:
        calls.append(removed)
        return evaluate(removed)

    path = ablation_path(list(effects), evaluate(frozenset()), counted)
    assert path.minimal == ("useful",)
    assert set(path.removed) == {"inert_a", "inert_b"}
    assert path.one_off["useful"].verdict == WORSE
    assert path.steps[-1].removed[-1] == "useful" and not path.steps[-1].kept
    assert len(calls) <= 2 * len(effects) - 1


def test_minimal_recipe_keeps_everything_that_matters() -> None:
    effects = {"a": 0.05, "b": 0.04}
    evaluate = _planted(effects)
    path = ablation_path(list(effects), evaluate(frozenset()), evaluate)
    assert path.minimal == ("a", "b") and path.removed == ()


def test_minimal_recipe_drops_a_harmful_trick() -> None:
    effects = {"good": 0.05, "harmful": -0.03}
    evaluate = _planted(effects)
    path = ablation_path(list(effects), evaluate(frozenset()), evaluate)
    assert path.minimal == ("good",)
    assert path.one_off["harmful"].verdict == BETTER
