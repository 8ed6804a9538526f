"""SearchSpace: which tricks a search may switch on, and the range of each of their parameters.

A space holds, for every trick it includes, a *switch* (``search``: the sampler decides on/off;
``on``: forced on; ``off``: forced off) and, for every parameter of the trick, either a fixed value
or a :class:`~tricksearch.tricks.SearchSpec` range; plus the budget dimensions ``budget.lr`` and
``budget.batch_size``. Its instances are plain, picklable objects: Ray pickles the space and calls
it as the define-by-run function of ``OptunaSearch``.

Flat keys name every dimension, everywhere (Ray config keys, Optuna parameter names, trials.csv
columns):

- ``"{family}.{trick}"``: the switch of a trick, ``suggest_categorical(key, [False, True])``;
- ``"{family}.{group}"``: one categorical over the included members of an exclusive group (for
  example ``"schedule.decay"``), plus ``"none"`` when no included member is the group's required
  default;
- ``"{family}.{trick}.{param}"``: a parameter, suggested only when its trick is on;
- ``"budget.lr"``, ``"budget.batch_size"``.

List-valued parameters (``multiscale.scales``) are categoricals of strings (``"0.75,1,1.25"``),
decoded by :meth:`SearchSpace.to_recipe`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import _BUDGET_PARAMS, Recipe
from tricksearch.tricks._base import FAMILIES, Param, SearchSpec, TrickSpec, registered_tricks

if TYPE_CHECKING:  # pragma: no cover - optuna is only ever passed in
    import optuna

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LR",
    "NONE",
    "SWITCH_MODES",
    "SearchSpace",
    "TrickEntry",
    "decode_list",
    "encode_list",
    "make_entry",
    "resolve_budget",
]

#: The switch modes of a trick in a space.
SWITCH_MODES: tuple[str, ...] = ("search", "on", "off")
#: The choice of an exclusive-group categorical that means "no member of the group".
NONE = "none"
#: Default range of the base learning rate (before scaling rules).
DEFAULT_LR = SearchSpec(low=1e-3, high=1.0, log=True)
#: Default choices of the batch size.
DEFAULT_BATCH_SIZE = SearchSpec(choices=(64, 128, 256, 512))

_RANGE_KEYS = ("low", "high", "log", "step", "choices")
_BUDGET = {p.name: p for p in _BUDGET_PARAMS if p.name in ("lr", "batch_size")}
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# ------------------------------------------------------------------------------------------
# encoding of list values (Optuna categoricals hold only None, bool, int, float and str)


def _num_text(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def encode_list(values: Iterable[float]) -> str:
    """``[0.75, 1.0, 1.25]`` -> ``"0.75,1,1.25"`` (the categorical form of a list parameter)."""
    return ",".join(_num_text(v) for v in values)


def decode_list(text: Any, where: str = "value") -> list[float]:
    """``"0.75,1,1.25"`` -> ``[0.75, 1.0, 1.25]``; a list or tuple is returned as a list."""
    if isinstance(text, (list, tuple)):
        return [float(v) for v in text]
    if not isinstance(text, str):
        raise ConfigTypeError(f"{where}: got {text!r}, expected a comma-separated list of numbers.")
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"{where}: got {text!r}, expected a comma-separated list of numbers."
        ) from None


def _encode(param: Param, value: Any) -> Any:
    """A parameter value in the form Optuna stores."""
    if param.kind == "float_list" and isinstance(value, (list, tuple)):
        return encode_list(value)
    return value


def _decode(param: Param, value: Any, where: str) -> Any:
    """A sampled value back in the form a recipe holds."""
    if param.kind == "float_list" and value is not None:
        return decode_list(value, where)
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps ``True`` apart from ``1``."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


# ------------------------------------------------------------------------------------------
# validation of one parameter's entry: a fixed value or a range


def _coerce(param_kind: str, value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; accept numeric strings where a number is due."""
    if param_kind in ("int", "float") and isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if param_kind == "int" and number.is_integer() else number
    return value


def _check_range(param: Param, raw: Mapping[str, Any], where: str) -> SearchSpec:
    """Validate a range mapping (``low``/``high``/``log``/``step`` or ``choices``)."""
    for key in raw:
        if key not in _RANGE_KEYS:
            raise ConfigError(
                f"{where}.{key}: unknown key of a search range; allowed: " + ", ".join(_RANGE_KEYS)
            )
    if "choices" in raw:
        others = [k for k in raw if k != "choices"]
        if others:
            raise ConfigError(
                f"{where}: got both `choices` and {', '.join(f'`{k}`' for k in others)}; "
                "a range is either `choices: [...]` or `low`/`high` (with `log` or `step`)."
            )
        choices = raw["choices"]
        if isinstance(choices, tuple):
            choices = list(choices)
        if not isinstance(choices, list):
            raise ConfigTypeError(f"{where}.choices: got {choices!r}, expected a list of values.")
        if not choices:
            raise ConfigError(
                f"{where}.choices: got an empty list, expected at least one value "
                f"({param.allowed()})."
            )
        out: list[Any] = []
        for i, choice in enumerate(choices):
            value = param.validate(_coerce(param.kind, choice), f"{where}.choices[{i}]")
            if param.kind == "float_list":
                value = tuple(value)
            if any(_same(value, seen) for seen in out):
                raise ConfigError(
                    f"{where}.choices[{i}]: got {choice!r} twice; each choice may appear once."
                )
            out.append(value)
        return SearchSpec(choices=tuple(out))
    if param.kind not in ("int", "float"):
        raise ConfigError(
            f"{where}: got a range ({', '.join(raw)}), but parameter {param.name!r} is "
            f"{param.allowed()}; write `{{choices: [...]}}` or a fixed value."
        )
    for key in ("low", "high"):
        if key not in raw:
            raise ConfigError(
                f"{where}: the range has no `{key}`; expected `{{low: L, high: H}}` "
                "(with optional `log: true` or `step: S`) or `{choices: [...]}`."
            )
    low = _coerce(param.kind, raw["low"])
    high = _coerce(param.kind, raw["high"])
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"{where}.{key}: got {value!r}, expected a number.")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigTypeError(f"{where}.log: got {log!r}, expected true or false.")
    if low > high:
        raise ConfigError(f"{where}: `low <= high` must hold, but got (low={low}, high={high}).")
    if log and low <= 0:
        raise ConfigError(f"{where}.low: got {low} with `log: true`; a log range needs low > 0.")
    low = param.validate(low, f"{where}.low")
    high = param.validate(high, f"{where}.high")
    step = raw.get("step")
    if step is not None:
        step = _coerce(param.kind, step)
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
            raise ConfigError(f"{where}.step: got {step!r}, expected a number > 0.")
        if param.kind == "int":
            if float(step) != int(step):
                raise ConfigError(f"{where}.step: got {step!r}, expected an integer >= 1.")
            step = int(step)
        else:
            step = float(step)
        if log and not (param.kind == "int" and step == 1):
            raise ConfigError(
                f"{where}: got both `log: true` and `step: {step}`; a log range has no step "
                "(Optuna samples it continuously)."
            )
        k = (high - low) / step
        if abs(k - round(k)) > 1e-8:
            raise ConfigError(
                f"{where}.step: got {step}, but high - low = {high - low} is not a multiple "
                "of it; pick a step that divides the range."
            )
    return SearchSpec(low=low, high=high, log=log, step=step)


def resolve_param(param: Param, raw: Any, where: str) -> Any:
    """A space's entry for one parameter: a validated fixed value or a :class:`SearchSpec`.

    ``raw`` is a range (a mapping with ``low``/``high``/``log``/``step`` or ``choices``, or a
    SearchSpec) or a fixed value; fixed values and every end of a range must be values the recipe
    accepts for this parameter (``param.validate``).
    """
    if isinstance(raw, SearchSpec):
        raw = raw.as_dict()
    if isinstance(raw, Mapping):
        return _check_range(param, raw, where)
    if isinstance(raw, (list, tuple)) and param.kind != "float_list":
        raise ConfigTypeError(
            f"{where}: got the list {list(raw)!r}; a parameter takes a fixed value "
            f"({param.allowed()}) or a range; to search over values write "
            f"`{{choices: {list(raw)!r}}}`."
        )
    return param.validate(_coerce(param.kind, raw), where)


def resolve_budget(name: str, raw: Any, where: str) -> Any:
    """``budget.lr`` / ``budget.batch_size``: None (the base recipe's value), fixed, or a range."""
    if raw is None:
        return None
    return resolve_param(_BUDGET[name], raw, where)


def _check_switch(raw: Any, where: str) -> str:
    # YAML 1.1 reads the bare words on/off as booleans.
    if raw is True:
        return "on"
    if raw is False:
        return "off"
    if isinstance(raw, str) and raw in SWITCH_MODES:
        return raw
    raise ConfigError(f"{where}: got {raw!r}, expected one of on, off, search.")


# ------------------------------------------------------------------------------------------
# one trick in a space


@dataclass(frozen=True)
class TrickEntry:
    """One trick of a space: its switch and, per parameter, a fixed value or a SearchSpec.

    Build it with :func:`make_entry`, which validates; ``params`` names every parameter of the
    trick.
    """

    name: str
    family: str
    group: str | None
    switch: str = "search"
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The space-file form: ``{switch: ..., param: value-or-range}``."""
        out: dict[str, Any] = {"switch": self.switch}
        for name, value in self.params.items():
            out[name] = _value_to_file(value)
        return out


def _value_to_file(value: Any) -> Any:
    if isinstance(value, SearchSpec):
        out = value.as_dict()
        if "choices" in out:
            out["choices"] = [list(c) if isinstance(c, tuple) else c for c in out["choices"]]
        return out
    if isinstance(value, tuple):
        return list(value)
    return value


def _spec(name: str, where: str) -> TrickSpec:
    tricks = registered_tricks()
    spec = tricks.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"{where}: unknown trick {name!r}; known tricks: {', '.join(tricks)}")
    return spec


def make_entry(
    name: str,
    raw: Mapping[str, Any] | bool | str | None = None,
    where: str | None = None,
    *,
    base: TrickEntry | None = None,
) -> TrickEntry:
    """Validate the space-file form of one trick into a :class:`TrickEntry`.

    ``raw`` is ``None``/``{}`` (the trick's declared default ranges), a switch word (``on``,
    ``off``, ``search``, or YAML's booleans), or a mapping ``{switch: ..., param: value-or-range}``.
    Parameters not named keep their value in ``base`` (an entry this one overrides), else the
    trick's declared ``search`` range, else its default as a fixed value.
    """
    where = where or f"tricks.{name}"
    spec = _spec(name, where)
    if raw is None:
        raw = {}
    if isinstance(raw, (bool, str)):
        raw = {"switch": raw}
    if not isinstance(raw, Mapping):
        raise ConfigTypeError(
            f"{where}: got {raw!r}, expected a mapping of `switch` and parameters "
            f"({', '.join(p.name for p in spec.params) or 'none'}), or on/off/search."
        )
    allowed = ["switch", *(p.name for p in spec.params)]
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"{where}.{key}: unknown parameter of trick {name!r}; allowed: "
                + ", ".join(allowed)
            )
    switch = base.switch if base is not None else "search"
    if "switch" in raw:
        switch = _check_switch(raw["switch"], f"{where}.switch")
    params: dict[str, Any] = {}
    for p in spec.params:
        if p.name in raw:
            params[p.name] = resolve_param(p, raw[p.name], f"{where}.{p.name}")
        elif base is not None and p.name in base.params:
            params[p.name] = base.params[p.name]
        elif p.search is not None:
            params[p.name] = resolve_param(p, p.search, f"{where}.{p.name} (declared range)")
        else:
            params[p.name] = p.validate(p.default, f"{where}.{p.name} (declared default)")
    if spec.needs_teacher and switch != "off":
        teacher = params.get("teacher")
        missing = teacher is None or (
            isinstance(teacher, SearchSpec) and any(c is None for c in teacher.choices or ())
        )
        if missing:
            raise ConfigError(
                f"{where}.teacher: got null; trick {name!r} needs a teacher: a checkpoint path "
                "(*.pt) or a model name (e.g. resnet-cifar), e.g. "
                f"`tricks: {{{name}: {{teacher: resnet-cifar}}}}`, or switch it off."
            )
    return TrickEntry(name=name, family=spec.family, group=spec.group, switch=switch, params=params)


# ------------------------------------------------------------------------------------------
# the plan the define-by-run function walks


@dataclass(frozen=True)
class _Dim:
    """One dimension Optuna samples."""

    key: str
    kind: str  # "int" | "float" | "categorical"
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)

    def clip(self, value: Any, fallback: Any) -> Any:
        """``value`` moved into this dimension (nearest numeric choice, clamped, on the grid)."""
        if self.kind == "categorical":
            for choice in self.choices:
                if _same(choice, value):
                    return choice
            numeric = [
                c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)
            ]
            if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
                return min(numeric, key=lambda c: abs(c - value))
            for choice in self.choices:
                if _same(choice, fallback):
                    return choice
            return self.choices[0]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            value = fallback if isinstance(fallback, (int, float)) else self.low
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) > 1e-8:
                top = math.floor((self.high - self.low) / self.step + 1e-9)
                value = self.low + min(max(round(k), 0), top) * self.step
        return round(value) if self.kind == "int" else float(value)

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(
                repr(c) if isinstance(c, str) else str(c) for c in self.choices
            )
        noun = "int" if self.kind == "int" else "float"
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{noun} in [{self.low:g}, {self.high:g}]{extra}"


def _dim(key: str, param: Param, spec: SearchSpec) -> _Dim | None:
    """The dimension of a range, or None when the range holds a single value."""
    if spec.choices is not None:
        if len(spec.choices) == 1:
            return None
        return _Dim(key, "categorical", choices=tuple(_encode(param, c) for c in spec.choices))
    if spec.low == spec.high:
        return None
    kind = "int" if param.kind == "int" else "float"
    return _Dim(key, kind, low=spec.low, high=spec.high, log=spec.log, step=spec.step)


def _single(spec: SearchSpec) -> Any:
    """The one value of a range that holds a single value."""
    if spec.choices is not None:
        value = spec.choices[0]
        return list(value) if isinstance(value, tuple) else value
    return spec.low


@dataclass(frozen=True)
class _TrickNode:
    """A trick outside any exclusive group: an optional switch, then its parameters."""

    name: str
    family: str
    switch_key: str | None  # None: forced on
    dims: tuple[_Dim, ...]


@dataclass(frozen=True)
class _GroupNode:
    """An exclusive group: one member is chosen (or forced), then that member's parameters."""

    key: str
    family: str
    group: str
    choices: tuple[str, ...]
    forced: str | None
    dims: dict[str, tuple[_Dim, ...]]
    default_member: str | None  # the group's required default, when included

    @property
    def suggested(self) -> bool:
        return self.forced is None and len(self.choices) > 1

    def fixed_choice(self) -> str | None:
        if self.forced is not None:
            return self.forced
        return self.choices[0] if len(self.choices) == 1 else None


# ------------------------------------------------------------------------------------------


def _narrow_groups(
    entry: TrickEntry, allowed: tuple[int, ...], notes: list[str]
) -> TrickEntry | None:
    """``group_norm`` with its ``groups`` limited to ``allowed`` (see ``SearchSpace.for_model``);
    None (left out, with a note) when none of its choices is allowed."""
    value = entry.params["groups"]
    shown = ", ".join(map(str, allowed))
    if not isinstance(value, SearchSpec):
        if value not in allowed:
            raise ConfigError(
                f"space: group_norm.groups: got {value}, which does not divide every normalized "
                f"layer's channels of the model; allowed: {shown}"
            )
        return entry
    choices = tuple(c for c in value.choices or () if c in allowed)
    if choices == tuple(value.choices or ()):
        return entry
    if not choices:
        notes.append(
            f"group_norm left out: none of its group counts ({', '.join(map(str, value.choices))})"
            f" divides every normalized layer's channels of the model (those that do: {shown})."
        )
        return None
    notes.append(
        f"group_norm: groups searched over {', '.join(map(str, choices))} only (the divisors of "
        f"every normalized layer's channels of the model: {shown})"
    )
    narrowed = SearchSpec(choices=choices) if len(choices) > 1 else choices[0]
    return replace(entry, params={**entry.params, "groups": narrowed})


class SearchSpace:
    """A declared search space over tricks and budget; call it as the define-by-run function.

    Build one from a preset or a file with :func:`tricksearch.spaces.load_space`, or directly::

        SearchSpace({"warmup": {}, "cosine": {}, "constant": {},
                     "label_smoothing": {"epsilon": {"low": 0.0, "high": 0.2}}},
                    lr={"low": 0.01, "high": 0.5, "log": True}, batch_size=128)

    ``tricks`` maps trick name -> its space-file form (see :func:`make_entry`) or a TrickEntry.
    ``lr`` and ``batch_size`` are a range, a fixed value, or ``None`` (keep the base recipe's).
    ``notes`` records what was left out and why (shown by :meth:`describe`): the notes given
    (``given_notes``, e.g. by the space file or :meth:`for_model`) and those the space adds
    itself (a group member forced on).
    """

    def __init__(
        self,
        tricks: Mapping[str, TrickEntry | Mapping[str, Any] | bool | str | None] | None = None,
        *,
        lr: Any = DEFAULT_LR,
        batch_size: Any = DEFAULT_BATCH_SIZE,
        name: str = "custom",
        description: str = "",
        notes: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.description = description
        self.given_notes: list[str] = _unique(notes)
        self.notes: list[str] = list(self.given_notes)
        self.lr = resolve_budget("lr", lr, "budget.lr")
        self.batch_size = resolve_budget("batch_size", batch_size, "budget.batch_size")
        order = list(registered_tricks())
        entries: dict[str, TrickEntry] = {}
        for trick, raw in (tricks or {}).items():
            entry = raw if isinstance(raw, TrickEntry) else make_entry(trick, raw)
            entries[trick] = entry
        self.tricks: dict[str, TrickEntry] = {
            n: entries[n] for n in sorted(entries, key=order.index)
        }
        self._budget_dims: tuple[_Dim, ...] = ()
        self._plan: tuple[_TrickNode | _GroupNode, ...] = ()
        self._owner: dict[str, str] = {}
        self._fixed_budget: dict[str, Any] = {}
        self._build()
        self.notes = _unique(self.notes)

    # -- the plan -------------------------------------------------------------------------
    def _build(self) -> None:
        budget_dims = []
        for name in ("lr", "batch_size"):
            value = getattr(self, name)
            key = f"budget.{name}"
            if isinstance(value, SearchSpec):
                dim = _dim(key, _BUDGET[name], value)
                if dim is None:
                    self._fixed_budget[name] = _single(value)
                else:
                    budget_dims.append(dim)
                    self._owner[key] = "budget"
            elif value is not None:
                self._fixed_budget[name] = value
        self._budget_dims = tuple(budget_dims)

        tricks = registered_tricks()
        plan: list[_TrickNode | _GroupNode] = []
        groups_done: set[tuple[str, str]] = set()
        for name, entry in self.tricks.items():
            if entry.group is None:
                if entry.switch == "off":
                    continue
                key = f"{entry.family}.{name}"
                dims = self._param_dims(entry)
                switch_key = key if entry.switch == "search" else None
                if switch_key:
                    self._owner[key] = name
                plan.append(_TrickNode(name, entry.family, switch_key, dims))
                continue
            gid = (entry.family, entry.group)
            if gid in groups_done:
                continue
            groups_done.add(gid)
            members = [e for e in self.tricks.values() if (e.family, e.group) == gid]
            forced = [e.name for e in members if e.switch == "on"]
            if len(forced) > 1:
                raise ConfigError(
                    f"tricks: {' and '.join(repr(f) for f in forced)} are both forced on, but "
                    f"they are alternatives of the group {entry.group!r} (at most one is used); "
                    "force one of them, or let the search choose with `switch: search`."
                )
            live = [e for e in members if e.switch != "off"]
            if not live:
                continue
            searched = [e.name for e in live if e.switch == "search"]
            default_member = next(
                (e.name for e in members if tricks[e.name].required_default and e.switch != "off"),
                None,
            )
            choices = list(searched)
            if forced:
                choices = forced
                if searched:
                    self.notes.append(
                        f"{entry.family}.{entry.group}: {forced[0]!r} is forced on, so "
                        f"{', '.join(repr(s) for s in searched)} of the same group are not "
                        "searched."
                    )
            elif default_member is None:
                choices.append(NONE)
            key = f"{entry.family}.{entry.group}"
            if key in {f"{e.family}.{e.name}" for e in tricks.values()}:  # pragma: no cover
                raise ConfigError(f"{key}: group name collides with a trick name")
            node = _GroupNode(
                key=key,
                family=entry.family,
                group=entry.group,
                choices=tuple(choices),
                forced=forced[0] if forced else None,
                dims={e.name: self._param_dims(e) for e in live},
                default_member=default_member,
            )
            if node.suggested:
                self._owner[key] = entry.group
            plan.append(node)
        self._plan = tuple(plan)

    def _param_dims(self, entry: TrickEntry) -> tuple[_Dim, ...]:
        spec = registered_tricks()[entry.name]
        dims = []
        for p in spec.params:
            value = entry.params[p.name]
            if isinstance(value, SearchSpec):
                dim = _dim(f"{entry.family}.{entry.name}.{p.name}", p, value)
                if dim is not None:
                    dims.append(dim)
                    self._owner[dim.key] = entry.name
        return tuple(dims)

    # -- the define-by-run function -------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> None:
        """Sample one configuration: only ``trial.suggest_*`` calls, conditional on switches."""
        for dim in self._budget_dims:
            dim.suggest(trial)
        for node in self._plan:
            if isinstance(node, _TrickNode):
                on = True
                if node.switch_key is not None:
                    on = trial.suggest_categorical(node.switch_key, [False, True])
                if on:
                    for dim in node.dims:
                        dim.suggest(trial)
                continue
            chosen = node.fixed_choice()
            if chosen is None:
                chosen = trial.suggest_categorical(node.key, list(node.choices))
            for dim in node.dims.get(chosen, ()):
                dim.suggest(trial)

    # -- flat config <-> recipe -----------------------------------------------------------
    def to_recipe(self, base: Recipe, params: Mapping[str, Any]) -> Recipe:
        """Apply a flat sampled configuration onto ``base`` and validate the result.

        ``base`` gives data, model and budget (``budget.lr``/``budget.batch_size`` replaced when
        the space samples or fixes them) and the tricks the space does not include. Tricks of the
        space are set from ``params`` and the space's fixed values: switched off ones are
        removed, an exclusive group keeps only its chosen member. The group's required default
        (``constant``, ``sgd``) is left implicit when it holds its default parameters, so the
        baseline recipe comes back as it went in.
        """
        self._check_keys(params)
        raw = base.to_dict()
        budget = dict(raw["budget"])
        for name, value in self._fixed_budget.items():
            budget[name] = value
        for dim in self._budget_dims:
            budget[dim.key.split(".", 1)[1]] = self._get(params, dim.key)
        raw["budget"] = budget

        tricks = registered_tricks()
        sections = {fam: dict(raw.get(fam) or {}) for fam in FAMILIES}
        for entry in self.tricks.values():
            if entry.switch == "off":
                sections[entry.family].pop(entry.name, None)
        for node in self._plan:
            section = sections[node.family]
            if isinstance(node, _TrickNode):
                on = True
                if node.switch_key is not None:
                    on = self._get(params, node.switch_key)
                    if on not in (True, False):
                        raise ConfigError(
                            f"params.{node.switch_key}: got {on!r}, expected true or false."
                        )
                if on:
                    section[node.name] = self._trick_params(node.name, params)
                else:
                    section.pop(node.name, None)
                continue
            chosen = node.fixed_choice()
            if chosen is None:
                chosen = self._get(params, node.key)
                if chosen not in node.choices:
                    raise ConfigError(
                        f"params.{node.key}: got {chosen!r}, expected one of "
                        + ", ".join(node.choices)
                    )
            for member, spec in tricks.items():
                if spec.family == node.family and spec.group == node.group:
                    section.pop(member, None)
            if chosen != NONE:
                values = self._trick_params(chosen, params)
                spec = tricks[chosen]
                implicit = spec.required_default and all(
                    _same(values[p.name], p.default) for p in spec.params
                )
                if not implicit:
                    section[chosen] = values
        for fam in FAMILIES:
            raw[fam] = sections[fam]
        return Recipe.from_dict(raw)

    def _trick_params(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        entry = self.tricks[name]
        spec = registered_tricks()[name]
        out: dict[str, Any] = {}
        for p in spec.params:
            value = entry.params[p.name]
            key = f"{entry.family}.{name}.{p.name}"
            if isinstance(value, SearchSpec):
                value = _single(value) if _dim(key, p, value) is None else self._get(params, key)
            out[p.name] = _decode(p, value, f"params.{key}")
        return out

    @staticmethod
    def _get(params: Mapping[str, Any], key: str) -> Any:
        if key not in params:
            raise ConfigError(
                f"params: missing key {key!r}, which this space samples; pass the configuration "
                "the define-by-run function produced (or SearchSpace.point(recipe))."
            )
        return params[key]

    def _check_keys(self, params: Mapping[str, Any]) -> None:
        """Refuse keys that look like ours but are not dimensions of this space (typos)."""
        prefixes = (*(f"{fam}." for fam in FAMILIES), "budget.")
        for key in params:
            if isinstance(key, str) and key.startswith(prefixes) and key not in self._owner:
                raise ConfigError(
                    f"params.{key}: not a dimension of space {self.name!r}; its dimensions: "
                    + (", ".join(self.keys()) or "(none)")
                )

    def point(self, recipe: Recipe) -> dict[str, Any]:
        """The flat configuration that reproduces ``recipe`` within this space.

        Only the keys the define-by-run function would suggest for those values (conditional),
        each moved into its range (clamped, nearest choice). For ``enqueue_trial`` and Ray's
        ``points_to_evaluate``; ``to_recipe(base, point(r)) == r`` for a recipe inside the space.
        """
        out: dict[str, Any] = {}
        budget = recipe.budget
        for dim in self._budget_dims:
            name = dim.key.split(".", 1)[1]
            out[dim.key] = dim.clip(getattr(budget, name), _BUDGET[name].default)
        tricks = registered_tricks()
        for node in self._plan:
            section = recipe.section(node.family)
            if isinstance(node, _TrickNode):
                on = node.name in section
                if node.switch_key is not None:
                    out[node.switch_key] = on
                if on or node.switch_key is None:
                    self._point_params(node.name, node.dims, section, out)
                continue
            present = next((m for m in section if tricks[m].group == node.group), None)
            chosen = node.fixed_choice()
            if chosen is None:
                if present in node.choices:
                    chosen = present
                elif NONE in node.choices:
                    chosen = NONE
                elif node.default_member in node.choices:
                    chosen = node.default_member
                else:
                    chosen = node.choices[0]
                out[node.key] = chosen
            if chosen != NONE:
                self._point_params(chosen, node.dims[chosen], section, out)
        return out

    def _point_params(
        self,
        name: str,
        dims: tuple[_Dim, ...],
        section: Mapping[str, Mapping[str, Any]],
        out: dict[str, Any],
    ) -> None:
        spec = registered_tricks()[name]
        values = section.get(name) or spec.defaults()
        for dim in dims:
            p = spec.param(dim.key.rsplit(".", 1)[1])
            value = _encode(p, values.get(p.name, p.default))
            out[dim.key] = dim.clip(value, _encode(p, p.default))

    # -- queries --------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Every flat key this space may suggest, in the order they are suggested."""
        out = [d.key for d in self._budget_dims]
        for node in self._plan:
            if isinstance(node, _TrickNode):
                if node.switch_key is not None:
                    out.append(node.switch_key)
                out.extend(d.key for d in node.dims)
            else:
                if node.suggested:
                    out.append(node.key)
                for member in node.choices:
                    out.extend(d.key for d in node.dims.get(member, ()))
        return out

    def trick_of(self, key: str) -> str:
        """The trick a flat key belongs to (``"budget"`` for budget keys, the group's name for
        a group key)."""
        if key not in self._owner:
            raise ConfigError(
                f"key: got {key!r}, not a dimension of space {self.name!r}; its dimensions: "
                + (", ".join(self.keys()) or "(none)")
            )
        return self._owner[key]

    def tricks_included(self) -> list[str]:
        """The tricks the space may switch on (switch ``search`` or ``on``)."""
        return [n for n, e in self.tricks.items() if e.switch != "off"]

    def for_model(self, traits: Mapping[str, Any]) -> SearchSpace:
        """A copy without the tricks the model cannot take, with a note for each one dropped.

        ``traits`` comes from ``tricksearch.models.model_traits(name)``: ``residual`` (has
        residual blocks: zero-γ, ResNet variants) and ``adaptive_pool`` (accepts several input
        sizes: multi-scale training); optionally ``model_options``, the builder options the
        model takes (a trick whose ``model_option`` is not among them is left out), and
        ``norm_groups``, the GroupNorm group counts that divide every normalized layer of the
        model, to which ``group_norm.groups`` is narrowed (a fixed value outside them is refused).
        """
        tricks = registered_tricks()
        kept: dict[str, TrickEntry] = {}
        notes = list(self.given_notes)
        for name, entry in self.tricks.items():
            if name == "group_norm" and traits.get("norm_groups") and entry.switch != "off":
                narrowed = _narrow_groups(entry, tuple(traits["norm_groups"]), notes)
                if narrowed is None:
                    continue
                entry = narrowed
            spec = tricks[name]
            if spec.needs_residual and not traits.get("residual", False):
                if entry.switch != "off":
                    notes.append(
                        f"{name} left out: it acts on residual blocks and the model has none."
                    )
                continue
            options = traits.get("model_options")
            if spec.model_option and options is not None and spec.model_option not in options:
                if entry.switch != "off":
                    notes.append(
                        f"{name} left out: the model has no option {spec.model_option!r} "
                        "(it cannot take this trick)."
                    )
                continue
            if spec.needs_adaptive_pool and not traits.get("adaptive_pool", False):
                if entry.switch != "off":
                    notes.append(
                        f"{name} left out: it changes the input size and the model has a fixed "
                        "input size (no adaptive pooling)."
                    )
                continue
            kept[name] = entry
        return SearchSpace(
            kept,
            lr=self.lr,
            batch_size=self.batch_size,
            name=self.name,
            description=self.description,
            notes=_unique(notes),
        )

    # -- file form and display ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The space-file form (self-contained: no ``extends``); loads back to an equal space."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        out["budget"] = {
            "lr": _value_to_file(self.lr),
            "batch_size": _value_to_file(self.batch_size),
        }
        out["tricks"] = {name: entry.to_dict() for name, entry in self.tricks.items()}
        return out

    def dumps(self) -> str:
        """The space as YAML text."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def describe(self) -> str:
        """A human-readable listing: every dimension with its range, fixed values, notes."""
        lines = [f"space {self.name!r}" + (f": {self.description}" if self.description else "")]
        rows: list[tuple[str, str]] = []
        for name in ("lr", "batch_size"):
            value = getattr(self, name)
            key = f"budget.{name}"
            dim = next((d for d in self._budget_dims if d.key == key), None)
            if dim is not None:
                rows.append((key, dim.describe()))
            elif value is None:
                rows.append((key, "from the base recipe"))
            else:
                rows.append((key, f"fixed {self._fixed_budget[name]!r}"))
        for node in self._plan:
            if isinstance(node, _TrickNode):
                rows.append(
                    (f"{node.family}.{node.name}", "on/off" if node.switch_key else "forced on")
                )
                rows.extend(self._param_rows(node.name, node.dims, "  "))
                continue
            chosen = node.fixed_choice()
            if chosen is not None:
                rows.append((node.key, f"fixed {chosen!r}"))
            else:
                rows.append((node.key, "one of " + ", ".join(node.choices)))
            for member in node.choices:
                if member != NONE:
                    rows.extend(self._param_rows(member, node.dims[member], "  "))
        off = [n for n, e in self.tricks.items() if e.switch == "off"]
        if off:
            rows.append(("forced off", ", ".join(off)))
        width = max((len(k) for k, _ in rows), default=0)
        lines.extend(f"  {k.ljust(width)}  {v}" for k, v in rows)
        lines.append(f"  {len(self.keys())} dimensions")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

    def _param_rows(self, name: str, dims: tuple[_Dim, ...], indent: str) -> list[tuple[str, str]]:
        entry = self.tricks[name]
        rows = []
        dim_keys = {d.key: d for d in dims}
        for pname, value in entry.params.items():
            key = f"{entry.family}.{name}.{pname}"
            if key in dim_keys:
                rows.append((indent + key, dim_keys[key].describe()))
            else:
                fixed = _single(value) if isinstance(value, SearchSpec) else value
                rows.append((indent + key, f"fixed {fixed!r}"))
        return rows

    # -- python protocol ------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SearchSpace):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"SearchSpace(name={self.name!r}, tricks={len(self.tricks_included())}, "
            f"dimensions={len(self.keys())})"
        )


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
