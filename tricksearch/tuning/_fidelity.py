"""Data-subset fidelity (``--fidelity data``): a trial's early epochs train on a fraction of the
train split, so it costs little until it has earned more.

ASHA compares trials at its rungs (epochs ``grace·rfᵏ`` below ``max_t``, :func:`rung_milestones`,
computed as Ray's ``AsyncHyperBandScheduler`` does). With ``K`` rungs, the epochs up to the first
rung train on ``rf^-K`` of the train split, those up to the next on ``rf^-(K-1)``, …, and those
after the last rung on all of it (rf 3, two rungs: 1/9, 1/3, 1). The subsets are stratified,
seeded and nested (the 1/9 inside the 1/3: prefixes of one per-class permutation), with at least
:data:`MIN_PER_CLASS` samples of every class, and the same for every trial of the search, so the
trials are compared on the same data. Validation always uses the whole val split; the retraining
of the candidates always the whole train split. The engine keeps the LR schedule on a
fractional-epoch clock (``engine.fit(train_subset=…)``).

A trial's cost, in full-epoch equivalents, is the sum of its epochs' fractions (each epoch's
report carries ``data_fraction``). The resolved plan is kept in the run folder
(:data:`PLAN_FILE`) for ``trials.csv`` and the report. Nothing here imports Ray or Optuna.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tricksearch.tuning._config import SearchConfig

__all__ = [
    "AUTO_MIN_TRAIN",
    "FIDELITIES",
    "MIN_PER_CLASS",
    "PLAN_FILE",
    "FidelityPlan",
    "fidelity_line",
    "load_plan",
    "make_plan",
    "nested_subsets",
    "prepare_fidelity",
    "rung_milestones",
]

#: The values of ``--fidelity``: ``epochs`` (ASHA over epochs on the whole train split),
#: ``data`` (early rungs on a fraction of it), ``auto`` (``data`` from :data:`AUTO_MIN_TRAIN`).
FIDELITIES = ("epochs", "data", "auto")
#: ``auto`` is ``data`` for a train split of more images than this, else ``epochs``.
AUTO_MIN_TRAIN = 20_000
#: Every class keeps at least this many samples in a subset (all it has when it has fewer).
MIN_PER_CLASS = 8
#: The resolved plan in the run folder (only with data fidelity).
PLAN_FILE = "fidelity.json"


def rung_milestones(grace: int, reduction_factor: float, max_t: int) -> list[int]:
    """The epochs at which ASHA compares trials, ascending, below ``max_t`` (a rung at
    ``max_t`` itself stops nothing). As Ray's ``_Bracket`` (one bracket, ``s = 0``):
    ``int(log(max_t / grace) / log(rf) + 1)`` rungs at ``grace·rfᵏ``."""
    import numpy as np

    count = int(np.log(max_t / grace) / np.log(reduction_factor) + 1)
    milestones = [grace * reduction_factor**k for k in range(count)]
    return [int(m) for m in milestones if m < max_t]


def nested_subsets(
    labels: torch.Tensor, shares: Sequence[float], seed: int, min_per_class: int = MIN_PER_CLASS
) -> list[torch.Tensor]:
    """One sorted index tensor per share (ascending shares): the stratified subset holding
    ``ceil(share·n_c)`` samples of each class ``c`` (at least ``min_per_class``, at most
    ``n_c``), the first ones of a permutation of the class seeded by ``seed``; so a subset lies
    inside every larger one. ``labels``: the train split's labels."""
    import torch

    y = labels.cpu().long()
    gen = torch.Generator().manual_seed(seed)
    per_class = []
    for c in torch.unique(y).tolist():
        members = torch.nonzero(y == c).flatten()
        per_class.append(members[torch.randperm(len(members), generator=gen)])
    out = []
    for share in shares:
        taken = [
            order[: min(len(order), max(min_per_class, math.ceil(share * len(order))))]
            for order in per_class
        ]
        out.append(torch.sort(torch.cat(taken)).values if taken else y.new_zeros(0))
    return out


@dataclass(frozen=True)
class FidelityPlan:
    """What data fidelity does in a search: ``milestones`` (ASHA's rungs below ``max_t``), the
    ``shares`` asked for before each (``rf^-K`` … ``rf^-1``), and ``fractions``: the share of the
    train split each subset really holds (rounded up per class), with 1.0 after the last rung."""

    max_t: int
    reduction_factor: int
    milestones: tuple[int, ...]
    shares: tuple[float, ...]
    fractions: tuple[float, ...]
    train_size: int
    seed: int
    min_per_class: int = MIN_PER_CLASS

    def level(self, epoch: int) -> int:
        """The subset of epoch ``epoch`` (1-based): 0 the smallest, ``K`` the whole split."""
        return sum(m < epoch for m in self.milestones)

    def fraction(self, epoch: int) -> float:
        """The share of the train split that epoch ``epoch`` (1-based) trains on."""
        return self.fractions[self.level(epoch)]

    def cost(self, epochs: int) -> float:
        """Full-epoch equivalents of a trial that trained ``epochs`` epochs: Σ fractions."""
        return math.fsum(self.fraction(e) for e in range(1, epochs + 1))

    def train_subset(self, labels: torch.Tensor) -> Callable[[int], torch.Tensor | None]:
        """``engine.fit``'s ``train_subset``: 0-based epoch -> its indices (None: all)."""
        subsets = nested_subsets(labels, self.shares, self.seed, self.min_per_class)
        return lambda epoch: subsets[lvl] if (lvl := self.level(epoch + 1)) < len(subsets) else None

    def describe(self) -> str:
        """``rungs at epochs 3, 9 on 1/9, 1/3 of train``."""
        rungs = ", ".join(str(m) for m in self.milestones)
        parts = ", ".join(_share_label(s) for s in self.shares)
        return f"rungs at epochs {rungs} on {parts} of train"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FidelityPlan:
        lists = ("milestones", "shares", "fractions")
        return cls(**{k: tuple(v) if k in lists else v for k, v in raw.items()})


def _share_label(share: float) -> str:
    frac = Fraction(share).limit_denominator(10_000)
    return f"{frac.numerator}/{frac.denominator}" if frac.denominator != 1 else str(frac)


def resolved_fidelity(config: SearchConfig, train_size: int) -> str:
    """``epochs`` or ``data``: ``auto`` is ``data`` for a train split over
    :data:`AUTO_MIN_TRAIN` samples (and trials that are not data-parallel), else ``epochs``."""
    if config.fidelity != "auto":
        return config.fidelity
    return "data" if train_size > AUTO_MIN_TRAIN and config.workers == 1 else "epochs"


def make_plan(config: SearchConfig, labels: torch.Tensor) -> FidelityPlan | None:
    """The search's data-fidelity plan for the train split's ``labels``; ``None`` when the
    search runs over epochs (``--fidelity epochs``, ``auto`` on a small split, or no rung
    before the last epoch)."""
    if resolved_fidelity(config, len(labels)) != "data":
        return None
    rf = config.reduction_factor
    milestones = rung_milestones(config.grace, rf, config.epochs)
    if not milestones:
        return None
    k = len(milestones)
    shares = tuple(1.0 / rf ** (k - i) for i in range(k))
    n = max(len(labels), 1)
    subsets = nested_subsets(labels, shares, config.seed)
    return FidelityPlan(
        max_t=config.epochs,
        reduction_factor=rf,
        milestones=tuple(milestones),
        shares=shares,
        fractions=(*(len(s) / n for s in subsets), 1.0),
        train_size=len(labels),
        seed=config.seed,
    )


def prepare_fidelity(
    config: SearchConfig, labels: torch.Tensor, run_dir: Path
) -> FidelityPlan | None:
    """:func:`make_plan`, kept in ``run_dir/``:data:`PLAN_FILE` (removed with none)."""
    plan = make_plan(config, labels)
    path = Path(run_dir) / PLAN_FILE
    if plan is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
    return plan


def load_plan(run_dir: Path) -> FidelityPlan | None:
    """The plan a search kept in its folder; ``None`` for a search over epochs (or unreadable)."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        return FidelityPlan.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def fidelity_line(plan: FidelityPlan | None, epochs: Sequence[int]) -> str | None:
    """The closing summary's line for trials that trained ``epochs`` epochs each, e.g.
    ``fidelity: data (rungs at epochs 3, 9 on 1/9, 1/3 of train): 41.2 of 96 trial-epochs
    (cost saved 57 %)``; ``None`` for a search over epochs."""
    if plan is None:
        return None
    spent = sum(epochs)
    cost = math.fsum(plan.cost(e) for e in epochs)
    saved = 100 * (1 - cost / spent) if spent else 0.0
    return (
        f"fidelity: data ({plan.describe()}): {cost:.1f} of {spent} trial-epochs "
        f"(cost saved {saved:.0f} %)"
    )
