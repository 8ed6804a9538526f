"""Warm start (``--warm-start DIR``): an earlier search's finished trials as the sampler's prior.

The earlier search (another dataset or model) is read from its run folder
(``_warmprior.load_prior``: its COMPLETE trials, and its PRUNED ones with their intermediate
values). The prior never enters
the new study: :class:`WarmStartSampler` shows it to the base sampler next to the study's own
trials each time the base sampler samples (a view of the study, :class:`_StudyWithPrior`), and
sends ``before_trial``/``after_trial`` to the real study. So the prior is not in the study, in
trials.csv, among the candidates, in ``--trials`` or in the importance analysis.

The rules, in order:

- **Parameters.** A prior trial keeps the parameters whose name is in the new space with the same
  kind of distribution (float, int, categorical) and whose value lies in the new range or choices
  (otherwise that parameter is dropped for that trial); kept ones take the new distribution. A
  prior trial that keeps nothing is dropped. The new space is learned from the new study's trials
  and from the parameters the base sampler is asked for (or given as ``space``).
- **Values, by rank.** Each prior trial's value (a PRUNED one: its value at its furthest epoch) is
  replaced by its goodness quantile ``q`` among the prior's values (0 the worst, 1 the best, in
  the prior's direction; ties share their mean rank), mapped onto the same quantile of the new
  study's own finished values (COMPLETE values and PRUNED trials' last values, interpolated). With
  one own value it stands for the prior's median; with none, the value is ``q`` (``-q`` when the
  new study minimises). States and epochs stay: a PRUNED prior ranks by its furthest epoch, then
  by value, as TPE ranks pruned trials.
- **Startup.** The prior counts as finished trials, so TPE's random startup
  (``n_startup_trials``) is shortened by the prior's size, and skipped when the prior is as large.
- **Fading.** The whole prior counts until the new study has ``n0`` finished trials of its own
  (``n0``: the base sampler's startup count, 10 when it has none); from then on only the prior's
  best ``ceil(P * n0 / n)`` of its ``P`` trials count (``n``: own finished trials), best in TPE's
  order (COMPLETE by value, then PRUNED by furthest epoch and value). Prior trials are numbered
  below 0, so TPE's weights (which favour newer trials past 25) also count them as the oldest.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tricksearch.tuning._warmprior import (
    DIRECTION_ATTR,
    check_prior_folder,
    load_prior,
    outcome,
    prior_line,
)

if TYPE_CHECKING:
    from tricksearch.tuning._config import SearchConfig

__all__ = [
    "DIRECTION_ATTR",
    "WarmStartSampler",
    "check_prior_folder",
    "load_prior",
    "prior_line",
    "warm_start",
    "warm_start_sampler",
]


def warm_start(
    sampler: BaseSampler, config: SearchConfig, stream: IO[str] | None = None
) -> BaseSampler:
    """The search's sampler: ``sampler`` itself, or, with ``config.warm_start``, wrapped with the
    prior read from that folder (said on ``stream``)."""
    from tricksearch.tuning._console import say

    if not config.warm_start:
        return sampler
    prior = load_prior(Path(config.warm_start))
    say(stream, prior_line(config.warm_start, prior))
    return warm_start_sampler(sampler, prior)


def warm_start_sampler(
    base: BaseSampler,
    prior: Sequence[FrozenTrial],
    *,
    direction: str | StudyDirection | None = None,
    space: Mapping[str, BaseDistribution] | None = None,
) -> BaseSampler:
    """``base`` seeing ``prior`` (finished trials of another study) next to the study's own trials
    when it samples; the rules are in this module's docstring.

    ``direction``: the prior study's (``"maximize"``/``"minimize"``), for trials that do not
    carry it (``DIRECTION_ATTR``, set by :func:`load_prior`); otherwise the new study's is
    assumed. ``space``: the new study's distributions when known in advance (otherwise learned
    from its trials and from the parameters the base sampler is asked for)."""
    if isinstance(direction, StudyDirection):
        direction = "maximize" if direction == StudyDirection.MAXIMIZE else "minimize"
    if direction is not None and direction not in ("maximize", "minimize"):
        raise ValueError(f"direction: got {direction!r}, expected 'maximize' or 'minimize'.")
    if direction is not None:
        prior = [_with_direction(t, direction) for t in prior]
    return WarmStartSampler(base, prior, space=space)


def _with_direction(trial: FrozenTrial, direction: str) -> FrozenTrial:
    """``trial`` marked as coming from a study with ``direction`` (unless it says already)."""
    if DIRECTION_ATTR in trial.system_attrs:
        return trial
    marked = copy.copy(trial)
    marked.system_attrs = {**trial.system_attrs, DIRECTION_ATTR: direction}
    return marked


def _quantiles(goodness: Sequence[float]) -> list[float]:
    """Each value's rank among ``goodness`` as a fraction (0 the lowest, 1 the highest; ties share
    their mean rank; 0.5 for a single value)."""
    n = len(goodness)
    if n == 1:
        return [0.5]
    order = sorted(range(n), key=lambda i: goodness[i])
    ranks = [0.0] * n
    i = 0
    while i < n:
        j = i
        while j + 1 < n and goodness[order[j + 1]] == goodness[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return [r / (n - 1) for r in ranks]


def mapped_value(q: float, own: Sequence[float], maximize: bool) -> float:
    """The value at goodness quantile ``q`` of the study's own values ``own`` (interpolated; one
    own value stands for the median; none: ``q``, or ``-q`` when the study minimises)."""
    sign = 1.0 if maximize else -1.0
    ranked = sorted(own, key=lambda v: sign * v)  # worst first
    if not ranked:
        return sign * q
    if len(ranked) == 1:
        return ranked[0] + sign * (q - 0.5) * max(abs(ranked[0]), 1.0)
    x = q * (len(ranked) - 1)
    i = min(math.floor(x), len(ranked) - 2)
    return ranked[i] + (ranked[i + 1] - ranked[i]) * (x - i)


def _kind(dist: BaseDistribution) -> str:
    """``float``, ``int``, ``categorical`` (or the class name of another distribution)."""
    for kind, cls in (("float", FloatDistribution), ("int", IntDistribution)):
        if isinstance(dist, cls):
            return kind
    return "categorical" if isinstance(dist, CategoricalDistribution) else type(dist).__name__


def _fits(value: Any, dist: BaseDistribution) -> bool:
    """Whether ``value`` lies in ``dist`` (its range, grid or choices)."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


class _Prior:
    """One prior trial: the trial, its (furthest epoch, value), its quantile, its TPE rank."""

    __slots__ = ("number", "q", "rank", "step", "trial", "value")

    def __init__(self, trial: FrozenTrial, number: int, step: int | None, value: float) -> None:
        self.trial, self.number, self.step, self.value = trial, number, step, value
        self.q = 0.5
        self.rank = 0


class WarmStartSampler(BaseSampler):
    """``base`` sampling with the prior trials in view (module docstring); every trial, its
    ``before_trial`` and ``after_trial`` belong to the real study."""

    def __init__(
        self,
        base: BaseSampler,
        prior: Sequence[FrozenTrial],
        *,
        space: Mapping[str, BaseDistribution] | None = None,
    ) -> None:
        self._base = base
        self._known: dict[str, BaseDistribution] = dict(space or {})
        self._startup = max(1, int(getattr(base, "_n_startup_trials", 10)))
        usable = [(t, outcome(t)) for t in prior]
        kept = [(t, o) for t, o in usable if o is not None]
        # numbered -P … -1 in the order given: older than every trial of the study
        self._prior = [_Prior(t, i - len(kept), o[0], o[1]) for i, (t, o) in enumerate(kept)]
        self._ranked_for: bool | None = None  # the direction the prior was ranked for

    @property
    def base(self) -> BaseSampler:
        return self._base

    @property
    def prior_size(self) -> int:
        """Prior trials with a value (before any parameter is dropped)."""
        return len(self._prior)

    def __str__(self) -> str:
        return f"WarmStartSampler({self._base}, {len(self._prior)} prior trials)"

    # -- the sampler's interface -----------------------------------------------------------
    def reseed_rng(self) -> None:
        self._base.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        view = self.view(study)
        self._forget_search_space()
        return self._base.infer_relative_search_space(view, trial)  # type: ignore[arg-type]

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._base.sample_relative(self.view(study), trial, search_space)  # type: ignore[arg-type]

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        view = self.view(study, asked={param_name: param_distribution})
        return self._base.sample_independent(view, trial, param_name, param_distribution)  # type: ignore[arg-type]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._base.after_trial(study, trial, state, values)

    # -- the view ------------------------------------------------------------------------------
    def view(
        self, study: optuna.Study, asked: Mapping[str, BaseDistribution] | None = None
    ) -> _StudyWithPrior:
        """``study`` with the prior trials it should see now (rules: the module docstring);
        ``asked``: the distribution being sampled (the newest of its name)."""
        if study._is_multi_objective():
            return _StudyWithPrior(study, [])
        maximize = study.direction == StudyDirection.MAXIMIZE
        self._rank(maximize)
        own = study._get_trials(deepcopy=False, use_cache=False)
        for t in own:
            self._known.update(t.distributions)
        self._known.update(asked or {})
        values = [o[1] for o in map(outcome, own) if o is not None]
        n_own = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in own)
        shown = self._prior
        if n_own >= self._startup:
            keep = math.ceil(len(self._prior) * self._startup / n_own)
            shown = [p for p in self._prior if p.rank < keep]
        trials = []
        for p in shown:
            params, dists = {}, {}
            for name, value in p.trial.params.items():
                dist = self._known.get(name)
                old = p.trial.distributions.get(name)
                if dist is None or old is None or _kind(dist) != _kind(old):
                    continue
                if not _fits(value, dist):
                    continue
                params[name], dists[name] = value, dist
            if not params:
                continue
            value = mapped_value(p.q, values, maximize)
            complete = p.step is None
            trials.append(
                FrozenTrial(
                    number=p.number,
                    state=TrialState.COMPLETE if complete else TrialState.PRUNED,
                    value=value if complete else None,
                    datetime_start=p.trial.datetime_start,
                    datetime_complete=p.trial.datetime_complete,
                    params=params,
                    distributions=dists,
                    user_attrs={},
                    system_attrs={},
                    intermediate_values={} if complete else {p.step: value},
                    trial_id=p.number,
                )
            )
        return _StudyWithPrior(study, trials)

    def _rank(self, maximize: bool) -> None:
        """Quantiles and TPE ranks of the prior for a new study that maximises or not."""
        if self._ranked_for is maximize:
            return
        self._ranked_for = maximize

        def goodness(p: _Prior) -> float:
            source = p.trial.system_attrs.get(DIRECTION_ATTR)
            up = maximize if source is None else source == "maximize"
            return p.value if up else -p.value

        good = [goodness(p) for p in self._prior]
        for p, q in zip(self._prior, _quantiles(good) if good else [], strict=True):
            p.q = q
        order = sorted(
            range(len(self._prior)),
            key=lambda i: (
                self._prior[i].step is not None,  # COMPLETE first
                -(self._prior[i].step or 0),  # then PRUNED by furthest epoch
                -good[i],
            ),
        )
        for rank, i in enumerate(order):
            self._prior[i].rank = rank

    def _forget_search_space(self) -> None:
        """Samplers keep the search space they inferred from the trials seen so far (TPE, GP,
        CMA-ES: an intersection or a group decomposition, extended by newer trial numbers); the
        prior's trials change as the space is learned and the prior fades, so it is inferred
        afresh (the same result as their cache when the trials only grow)."""
        from optuna.search_space import IntersectionSearchSpace
        from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

        base = self._base
        with suppress(Exception):
            for name, kept in list(vars(base).items()):
                if isinstance(kept, IntersectionSearchSpace):
                    fresh: Any = IntersectionSearchSpace(include_pruned=kept._include_pruned)
                    # it stops at the trial numbers it has seen (-1 when fresh): see all
                    fresh._cached_trial_number = -sys.maxsize
                elif isinstance(kept, _GroupDecomposedSearchSpace):
                    fresh = _GroupDecomposedSearchSpace(kept._include_pruned)
                else:
                    continue
                setattr(base, name, fresh)


class _StudyWithPrior:
    """A study as its sampler sees it: the prior trials (numbered below 0) before its own ones;
    everything else (storage, directions, ids) is the real study's."""

    def __init__(self, study: optuna.Study, prior: list[FrozenTrial]) -> None:
        self._study = study
        self._prior = prior

    def __getattr__(self, name: str) -> Any:
        if name in ("_study", "_prior") or name.startswith("__"):  # half-built (copy, pickle)
            raise AttributeError(name)
        return getattr(self._study, name)

    @property
    def prior(self) -> list[FrozenTrial]:
        return list(self._prior)

    def _chosen(self, deepcopy: bool, states: Any) -> list[FrozenTrial]:
        chosen = [t for t in self._prior if states is None or t.state in states]
        return copy.deepcopy(chosen) if deepcopy else chosen

    def _get_trials(
        self, deepcopy: bool = True, states: Any = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        own = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return self._chosen(deepcopy, states) + own

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        own = self._study.get_trials(deepcopy=deepcopy, states=states)
        return self._chosen(deepcopy, states) + own

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()
