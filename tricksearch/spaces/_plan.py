"""The compiled plan of a space: what the define-by-run function suggests, in which order.

A space's entries compile to the budget dimensions, then one node per trick outside any
exclusive group (an optional switch, then its parameters) and one node per exclusive group (the
choice of a member, then that member's parameters). A range that holds a single value is no
dimension: it is a fixed value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tricksearch.spaces._entry import TrickEntry
from tricksearch.spaces._errors import refuse
from tricksearch.spaces._keys import (
    BUDGET,
    BUDGET_NAMES,
    NONE,
    budget_key,
    group_key,
    param_key,
    switch_key,
)
from tricksearch.spaces._ranges import BUDGET_PARAMS, encode_value, same
from tricksearch.tricks._base import Param, SearchSpec, registered_tricks

if TYPE_CHECKING:  # pragma: no cover - optuna is only ever passed in
    import optuna

__all__ = [
    "Dim",
    "GroupNode",
    "Plan",
    "TrickNode",
    "compile_plan",
    "describe_plan",
    "make_dim",
    "single_value",
]


@dataclass(frozen=True)
class Dim:
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
            return self._nearest_choice(value, fallback)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            value = fallback if isinstance(fallback, (int, float)) else self.low
        value = min(max(value, self.low), self.high)
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) > 1e-8:
                top = math.floor((self.high - self.low) / self.step + 1e-9)
                value = self.low + min(max(round(k), 0), top) * self.step
        return round(value) if self.kind == "int" else float(value)

    def _nearest_choice(self, value: Any, fallback: Any) -> Any:
        for choice in self.choices:
            if same(choice, value):
                return choice
        numeric = [
            c for c in self.choices if isinstance(c, (int, float)) and not isinstance(c, bool)
        ]
        if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
            return min(numeric, key=lambda c: abs(c - value))
        for choice in self.choices:
            if same(choice, fallback):
                return choice
        return self.choices[0]

    def scaled(self, factor: float) -> Dim:
        """This float range times ``factor`` (an LR range for another optimizer family)."""
        if factor == 1.0 or self.kind != "float":
            return self
        return replace(self, low=self.low * factor, high=self.high * factor, step=None)

    def describe(self) -> str:
        if self.kind == "categorical":
            return "one of " + ", ".join(
                repr(c) if isinstance(c, str) else str(c) for c in self.choices
            )
        noun = "int" if self.kind == "int" else "float"
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{noun} in [{self.low:g}, {self.high:g}]{extra}"


def make_dim(key: str, param: Param, spec: SearchSpec) -> Dim | None:
    """The dimension of a range, or None when the range holds a single value."""
    if spec.choices is not None:
        if len(spec.choices) == 1:
            return None
        return Dim(key, "categorical", choices=tuple(encode_value(param, c) for c in spec.choices))
    if spec.low == spec.high:
        return None
    kind = "int" if param.kind == "int" else "float"
    return Dim(key, kind, low=spec.low, high=spec.high, log=spec.log, step=spec.step)


def single_value(spec: SearchSpec) -> Any:
    """The one value of a range that holds a single value."""
    if spec.choices is not None:
        value = spec.choices[0]
        return list(value) if isinstance(value, tuple) else value
    return spec.low


@dataclass(frozen=True)
class TrickNode:
    """A trick outside any exclusive group: an optional switch, then its parameters."""

    name: str
    family: str
    switch_key: str | None  # None: forced on
    dims: tuple[Dim, ...]


@dataclass(frozen=True)
class GroupNode:
    """An exclusive group: one member is chosen (or forced), then that member's parameters."""

    key: str
    family: str
    group: str
    choices: tuple[str, ...]
    forced: str | None
    dims: dict[str, tuple[Dim, ...]]
    default_member: str | None  # the group's required default, when included

    @property
    def suggested(self) -> bool:
        return self.forced is None and len(self.choices) > 1

    def fixed_choice(self) -> str | None:
        if self.forced is not None:
            return self.forced
        return self.choices[0] if len(self.choices) == 1 else None


@dataclass
class Plan:
    """A compiled space: the budget dimensions and fixed budget values, the nodes in the order
    they are suggested, the owner of each key (trick, group, or ``"budget"``) and the notes the
    compilation adds (a group member forced on)."""

    budget_dims: tuple[Dim, ...] = ()
    fixed_budget: dict[str, Any] = field(default_factory=dict)
    nodes: tuple[TrickNode | GroupNode, ...] = ()
    owner: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The LR follows the optimizer: the key of the searched group whose members train at other
    # LR scales (``TrickSpec.lr_scale``), and member -> factor on the LR range (SGD's) for the
    # members whose scale is not 1; None/empty: the LR range is used as written.
    lr_group: str | None = None
    lr_scales: dict[str, float] = field(default_factory=dict)

    def lr_dim(self, member: str | None) -> Dim | None:
        """The LR dimension for a configuration whose LR group chose ``member``."""
        dim = next((d for d in self.budget_dims if d.key == budget_key("lr")), None)
        if dim is None:
            return None
        return dim.scaled(self.lr_scales.get(member or "", 1.0))


def compile_plan(tricks: Mapping[str, TrickEntry], budget: Mapping[str, Any]) -> Plan:
    """Compile the entries ``tricks`` (in registry order) and the ``budget`` entries (``lr``,
    ``batch_size``: a range, a fixed value, or None) into a :class:`Plan`."""
    plan = Plan()
    _compile_budget(plan, budget)
    nodes: list[TrickNode | GroupNode] = []
    groups_done: set[tuple[str, str]] = set()
    for entry in tricks.values():
        if entry.group is None:
            if entry.switch != "off":
                nodes.append(_trick_node(plan, entry))
            continue
        gid = (entry.family, entry.group)
        if gid in groups_done:
            continue
        groups_done.add(gid)
        members = [e for e in tricks.values() if (e.family, e.group) == gid]
        node = _group_node(plan, entry.family, entry.group, members)
        if node is not None:
            nodes.append(node)
    plan.nodes = tuple(nodes)
    _link_lr(plan)
    return plan


def _link_lr(plan: Plan) -> None:
    """When the LR is searched and an exclusive group chooses among members of different LR
    scales (SGD and AdamW), the LR is drawn after that choice, from the range times the chosen
    member's scale relative to the group's default member (SGD): ``Plan.lr_scales``."""
    if not any(d.key == budget_key("lr") for d in plan.budget_dims):
        return
    specs = registered_tricks()
    for node in plan.nodes:
        if not isinstance(node, GroupNode) or not node.suggested:
            continue
        members = [c for c in node.choices if c in specs]
        scales = {m: specs[m].lr_scale for m in members}
        if len(set(scales.values())) < 2:
            continue
        reference = specs[node.default_member].lr_scale if node.default_member else 1.0
        plan.lr_group = node.key
        plan.lr_scales = {m: s / reference for m, s in scales.items() if s != reference}
        return


def _compile_budget(plan: Plan, budget: Mapping[str, Any]) -> None:
    dims = []
    for name in BUDGET_NAMES:
        value = budget.get(name)
        if isinstance(value, SearchSpec):
            dim = make_dim(budget_key(name), BUDGET_PARAMS[name], value)
            if dim is None:
                plan.fixed_budget[name] = single_value(value)
            else:
                dims.append(dim)
                plan.owner[dim.key] = BUDGET
        elif value is not None:
            plan.fixed_budget[name] = value
    plan.budget_dims = tuple(dims)


def _trick_node(plan: Plan, entry: TrickEntry) -> TrickNode:
    key = switch_key(entry.family, entry.name)
    switch = key if entry.switch == "search" else None
    if switch:
        plan.owner[key] = entry.name
    return TrickNode(entry.name, entry.family, switch, _param_dims(plan, entry))


def _group_node(plan: Plan, family: str, group: str, members: list[TrickEntry]) -> GroupNode | None:
    """The node of an exclusive group; None when every member is switched off."""
    forced = [e.name for e in members if e.switch == "on"]
    if len(forced) > 1:
        refuse(
            "tricks",
            f"{' and '.join(repr(f) for f in forced)} are both forced on, but "
            f"they are alternatives of the group {group!r} (at most one is used); "
            "force one of them, or let the search choose with `switch: search`.",
        )
    live = [e for e in members if e.switch != "off"]
    if not live:
        return None
    specs = registered_tricks()
    searched = [e.name for e in live if e.switch == "search"]
    default_member = next((e.name for e in live if specs[e.name].required_default), None)
    choices = list(searched)
    if forced:
        choices = forced
        if searched:
            plan.notes.append(
                f"{family}.{group}: {forced[0]!r} is forced on, so "
                f"{', '.join(repr(s) for s in searched)} of the same group are not searched."
            )
    elif default_member is None:
        choices.append(NONE)
    node = GroupNode(
        key=group_key(family, group),
        family=family,
        group=group,
        choices=tuple(choices),
        forced=forced[0] if forced else None,
        dims={e.name: _param_dims(plan, e) for e in live},
        default_member=default_member,
    )
    if node.suggested:
        plan.owner[node.key] = group
    return node


def _param_dims(plan: Plan, entry: TrickEntry) -> tuple[Dim, ...]:
    spec = registered_tricks()[entry.name]
    dims = []
    for p in spec.params:
        value = entry.params[p.name]
        if isinstance(value, SearchSpec):
            dim = make_dim(param_key(entry.family, entry.name, p.name), p, value)
            if dim is not None:
                dims.append(dim)
                plan.owner[dim.key] = entry.name
    return tuple(dims)


def describe_plan(plan: Plan, tricks: Mapping[str, TrickEntry]) -> list[tuple[str, str]]:
    """(key, what it is) for every budget field, switch, group and parameter of the plan, in
    the order they are suggested; then the tricks forced off."""
    rows = _budget_rows(plan)
    for node in plan.nodes:
        if isinstance(node, TrickNode):
            key = switch_key(node.family, node.name)
            rows.append((key, "on/off" if node.switch_key else "forced on"))
            rows.extend(_param_rows(tricks[node.name], node.dims))
            continue
        chosen = node.fixed_choice()
        if chosen is not None:
            rows.append((node.key, f"fixed {chosen!r}"))
        else:
            rows.append((node.key, "one of " + ", ".join(node.choices)))
        for member in node.choices:
            if member != NONE:
                rows.extend(_param_rows(tricks[member], node.dims[member]))
    off = [n for n, e in tricks.items() if e.switch == "off"]
    if off:
        rows.append(("forced off", ", ".join(off)))
    return rows


def _budget_rows(plan: Plan) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    dims = {d.key: d for d in plan.budget_dims}
    for name in BUDGET_NAMES:
        key = budget_key(name)
        if key in dims:
            text = dims[key].describe()
            if name == "lr" and plan.lr_scales:
                text += "; " + ", ".join(
                    f"× {f:g} with {m}" for m, f in sorted(plan.lr_scales.items())
                )
            rows.append((key, text))
        elif name in plan.fixed_budget:
            rows.append((key, f"fixed {plan.fixed_budget[name]!r}"))
        else:
            rows.append((key, "from the base recipe"))
    return rows


def _param_rows(entry: TrickEntry, dims: tuple[Dim, ...]) -> list[tuple[str, str]]:
    """The rows of a trick's parameters, indented under its switch or group."""
    rows = []
    dim_keys = {d.key: d for d in dims}
    for pname, value in entry.params.items():
        key = param_key(entry.family, entry.name, pname)
        if key in dim_keys:
            rows.append(("  " + key, dim_keys[key].describe()))
        else:
            fixed = single_value(value) if isinstance(value, SearchSpec) else value
            rows.append(("  " + key, f"fixed {fixed!r}"))
    return rows
