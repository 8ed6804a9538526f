"""The verdict: is a recipe better than the baseline beyond the noise of training?

Recipe and baseline are trained with the same seeds (paired: the same initialisation and data
order per seed), so the noise that both share cancels in the per-seed difference. The gain is the
mean of those differences with a 95 % **paired t interval**:

    d_i = s·(recipe_i − baseline_i)          (s = +1 for a metric to maximise, −1 to minimise)
    gain = mean(d),  half = t(0.975, n−1) · sd(d) / √n,  interval = [gain − half, gain + half]

and the verdict is *better beyond noise* when the interval lies above 0, *worse* when it lies
below, *not distinguishable* otherwise (and always with fewer than 2 seeds: no interval then).
Pure functions, no torch / Ray / Optuna: the racing of seeds (``--seeds auto``) and the minimal
recipe call them between trainings.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "BETTER",
    "NOT_DISTINGUISHABLE",
    "WORSE",
    "Verdict",
    "detectable_gain",
    "paired_verdict",
    "t_quantile",
]

BETTER = "better beyond noise"
NOT_DISTINGUISHABLE = "not distinguishable"
WORSE = "worse"
#: How the interval is computed, as every output names it.
METHOD = "paired t, 95 %"


@dataclass(frozen=True)
class Verdict:
    """A paired comparison of ``a`` against ``b`` over the same seeds (gain = a − b, in the
    metric's good direction)."""

    verdict: str
    gain: float
    low: float | None
    high: float | None
    n: int
    method: str = METHOD

    @property
    def decided(self) -> bool:
        """True when more seeds would not be needed: the interval excludes 0."""
        return self.verdict != NOT_DISTINGUISHABLE

    def interval_text(self) -> str:
        """``+0.0123 (95 % CI +0.0040 … +0.0206, paired t, 5 seeds)``."""
        seeds = f"{self.n} seed{'s' if self.n != 1 else ''}"
        if self.low is None or self.high is None:
            return f"{self.gain:+.4f} (no interval with {seeds})"
        return f"{self.gain:+.4f} (95 % CI {self.low:+.4f} … {self.high:+.4f}, paired t, {seeds})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_verdict(
    a: Sequence[float | None], b: Sequence[float | None], *, mode: str = "max", level: float = 0.95
) -> Verdict:
    """Compare the per-seed scores ``a`` and ``b`` (same seeds, same order). A seed whose
    training failed on either side (None) is left out of the pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired scores: got {len(a)} and {len(b)} values, expected equal counts")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    if mode not in ("max", "min"):
        raise ValueError(f"mode: got {mode!r}, expected 'max' or 'min'")
    sign = 1.0 if mode == "max" else -1.0
    diffs = [sign * (x - y) for x, y in pairs]
    n = len(diffs)
    if n == 0:
        return Verdict(NOT_DISTINGUISHABLE, float("nan"), None, None, 0)
    gain = statistics.fmean(diffs)
    if n < 2:
        return Verdict(NOT_DISTINGUISHABLE, gain, None, None, n)
    half = t_quantile(0.5 + level / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    low, high = gain - half, gain + half
    if low > 0:
        word = BETTER
    elif high < 0:
        word = WORSE
    else:
        word = NOT_DISTINGUISHABLE
    return Verdict(word, gain, low, high, n)


def detectable_gain(n_samples: int, accuracy: float, *, power: float = 0.8) -> float:
    """The smallest accuracy gain a split of ``n_samples`` can tell from noise (two-sided 5 %,
    ``power``), by the normal approximation for two proportions near ``accuracy``; never below
    one sample's worth (1 / n)."""
    if n_samples <= 0:
        return float("inf")
    p = min(max(accuracy, 1.0 / n_samples), 1.0 - 1.0 / n_samples) if n_samples > 1 else 0.5
    z = _normal_quantile(0.975) + _normal_quantile(power)
    return max(1.0 / n_samples, z * math.sqrt(2.0 * p * (1.0 - p) / n_samples))


# --- Student's t, without scipy ----------------------------------------------------------------
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0.0 < p < 1.0 or df < 1:
        raise ValueError(f"t_quantile: got p={p}, df={df}; expected 0 < p < 1 and df >= 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def _t_cdf(t: float, df: int) -> float:
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    return math.exp(log_front) * _beta_fraction(a, b, x) / a


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _normal_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)
