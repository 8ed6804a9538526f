"""SearchSpace: which tricks a search may switch on, and the range of each of their parameters.

A space holds, for every trick it includes, a *switch* (``search``: the sampler decides on/off;
``on``: forced on; ``off``: forced off) and, for every parameter of the trick, either a fixed value
or a :class:`~tricksearch.tricks.SearchSpec` range; plus the budget dimensions ``budget.lr`` and
``budget.batch_size``. Its instances are plain, picklable objects: Ray pickles the space and calls
it as the define-by-run function of ``OptunaSearch``.

Every dimension is named by a flat key (:mod:`tricksearch.spaces._keys`): ``"{family}.{trick}"``
(a switch), ``"{family}.{group}"`` (one categorical over the included members of an exclusive
group, plus ``"none"`` when no included member is the group's required default),
``"{family}.{trick}.{param}"`` (a parameter, suggested only when its trick is on),
``"budget.lr"`` and ``"budget.batch_size"``. List-valued parameters are categoricals of strings,
decoded by :meth:`SearchSpace.to_recipe`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.spaces._entry import TrickEntry, make_entry
from tricksearch.spaces._fit import Fitted, fit_data, fit_device, fit_model
from tricksearch.spaces._keys import NONE, budget_key, is_flat_key, param_key, parse_key
from tricksearch.spaces._plan import (
    Dim,
    GroupNode,
    Plan,
    TrickNode,
    compile_plan,
    describe_plan,
    make_dim,
    single_value,
)
from tricksearch.spaces._ranges import (
    BUDGET_PARAMS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_LR,
    admit_value,
    decode_value,
    encode_value,
    resolve_budget,
    same,
    value_to_file,
)
from tricksearch.tricks._base import FAMILIES, SearchSpec, registered_tricks

if TYPE_CHECKING:  # pragma: no cover - optuna is only ever passed in
    import optuna

__all__ = ["SearchSpace"]


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
        self.lr = resolve_budget("lr", lr, budget_key("lr"))
        self.batch_size = resolve_budget("batch_size", batch_size, budget_key("batch_size"))
        order = list(registered_tricks())
        entries: dict[str, TrickEntry] = {}
        for trick, raw in (tricks or {}).items():
            entries[trick] = raw if isinstance(raw, TrickEntry) else make_entry(trick, raw)
        self.tricks: dict[str, TrickEntry] = {
            n: entries[n] for n in sorted(entries, key=order.index)
        }
        self._plan: Plan = compile_plan(self.tricks, {"lr": self.lr, "batch_size": self.batch_size})
        self.notes: list[str] = _unique([*self.given_notes, *self._plan.notes])

    # -- the define-by-run function -------------------------------------------------------
    def __call__(self, trial: optuna.Trial) -> None:
        """Sample one configuration: only ``trial.suggest_*`` calls, conditional on switches.
        When the optimizer group mixes LR scales (``Plan.lr_scales``), the LR is drawn after
        the optimizer, from the range for the chosen one."""
        plan = self._plan
        lr_key = budget_key("lr") if plan.lr_group is not None else None
        for dim in plan.budget_dims:
            if dim.key != lr_key:
                dim.suggest(trial)
        for node in plan.nodes:
            if isinstance(node, TrickNode):
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
            if node.key == plan.lr_group:
                lr = plan.lr_dim(chosen)
                assert lr is not None  # lr_group is only set when the LR is searched
                lr.suggest(trial)
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
        budget.update(self._plan.fixed_budget)
        for dim in self._plan.budget_dims:
            budget[parse_key(dim.key).name] = self._get(params, dim.key)
        raw["budget"] = budget
        sections = {fam: dict(raw.get(fam) or {}) for fam in FAMILIES}
        for entry in self.tricks.values():
            if entry.switch == "off":
                sections[entry.family].pop(entry.name, None)
        for node in self._plan.nodes:
            section = sections[node.family]
            if isinstance(node, TrickNode):
                self._apply_trick(node, section, params)
            else:
                self._apply_group(node, section, params)
        raw.update(sections)
        return Recipe.from_dict(raw)

    def _apply_trick(
        self, node: TrickNode, section: dict[str, Any], params: Mapping[str, Any]
    ) -> None:
        on = True
        if node.switch_key is not None:
            on = self._get(params, node.switch_key)
            if on not in (True, False):
                raise ConfigError(f"params.{node.switch_key}: got {on!r}, expected true or false.")
        if on:
            section[node.name] = self._trick_params(node.name, params)
        else:
            section.pop(node.name, None)

    def _apply_group(
        self, node: GroupNode, section: dict[str, Any], params: Mapping[str, Any]
    ) -> None:
        chosen = node.fixed_choice()
        if chosen is None:
            chosen = self._get(params, node.key)
            if chosen not in node.choices:
                raise ConfigError(
                    f"params.{node.key}: got {chosen!r}, expected one of " + ", ".join(node.choices)
                )
        tricks = registered_tricks()
        for member, spec in tricks.items():
            if spec.family == node.family and spec.group == node.group:
                section.pop(member, None)
        if chosen == NONE:
            return
        values = self._trick_params(chosen, params)
        spec = tricks[chosen]
        implicit = spec.required_default and all(
            same(values[p.name], p.default) for p in spec.params
        )
        if not implicit:
            section[chosen] = values

    def _trick_params(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        entry = self.tricks[name]
        spec = registered_tricks()[name]
        out: dict[str, Any] = {}
        for p in spec.params:
            value = entry.params[p.name]
            key = param_key(entry.family, name, p.name)
            if isinstance(value, SearchSpec):
                if make_dim(key, p, value) is None:
                    value = single_value(value)
                else:
                    value = self._get(params, key)
            out[p.name] = decode_value(p, value, f"params.{key}")
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
        for key in params:
            if is_flat_key(key) and key not in self._plan.owner:
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
        for dim in self._plan.budget_dims:
            name = parse_key(dim.key).name
            if name == "lr" and self._plan.lr_group is not None:
                dim = self._plan.lr_dim(self._lr_member(recipe)) or dim  # its optimizer's range
            out[dim.key] = dim.clip(getattr(recipe.budget, name), BUDGET_PARAMS[name].default)
        for node in self._plan.nodes:
            section = recipe.section(node.family)
            if isinstance(node, TrickNode):
                on = node.name in section
                if node.switch_key is not None:
                    out[node.switch_key] = on
                if on or node.switch_key is None:
                    self._point_params(node.name, node.dims, section, out)
                continue
            chosen = node.fixed_choice()
            if chosen is None:
                chosen = _group_point(node, section)
                out[node.key] = chosen
            if chosen != NONE:
                self._point_params(chosen, node.dims[chosen], section, out)
        return out

    def _lr_member(self, recipe: Recipe) -> str | None:
        """The member of the LR group (``Plan.lr_group``) that ``recipe`` uses."""
        for node in self._plan.nodes:
            if isinstance(node, GroupNode) and node.key == self._plan.lr_group:
                return node.fixed_choice() or _group_point(node, recipe.section(node.family))
        return None

    def _point_params(
        self,
        name: str,
        dims: tuple[Dim, ...],
        section: Mapping[str, Mapping[str, Any]],
        out: dict[str, Any],
    ) -> None:
        spec = registered_tricks()[name]
        values = section.get(name) or spec.defaults()
        declared = {param_key(spec.family, name, p.name): p for p in spec.params}
        for dim in dims:
            p = declared[dim.key]
            value = encode_value(p, values.get(p.name, p.default))
            out[dim.key] = dim.clip(value, encode_value(p, p.default))

    # -- queries --------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Every flat key this space may suggest, in the order they are suggested."""
        out = [d.key for d in self._plan.budget_dims]
        for node in self._plan.nodes:
            if isinstance(node, TrickNode):
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
        if key not in self._plan.owner:
            raise ConfigError(
                f"key: got {key!r}, not a dimension of space {self.name!r}; its dimensions: "
                + (", ".join(self.keys()) or "(none)")
            )
        return self._plan.owner[key]

    def tricks_included(self) -> list[str]:
        """The tricks the space may switch on (switch ``search`` or ``on``)."""
        return [n for n, e in self.tricks.items() if e.switch != "off"]

    # -- fitting (see _fit.py) ------------------------------------------------------------
    def for_model(self, traits: Mapping[str, Any]) -> SearchSpace:
        """A copy without the tricks the model cannot take, with a note for each one dropped.

        ``traits`` comes from ``tricksearch.models.model_traits(name)``: ``residual`` (has
        residual blocks: zero-γ, ResNet variants) and ``adaptive_pool`` (accepts several input
        sizes: multi-scale training); optionally ``model_options``, the builder options the
        model takes (a trick whose ``model_option`` is not among them is left out), and
        ``norm_groups``, the GroupNorm group counts that divide every normalized layer of the
        model, to which ``group_norm.groups`` is narrowed (a fixed value outside them is refused).
        The rules are :func:`tricksearch.compat.incompatibility`'s.
        """
        return self._fitted(fit_model(self.tricks, traits))

    def for_device(self, device: str, replicas: int = 1, batch_norm: bool = True) -> SearchSpace:
        """A copy that searches only what runs on ``device`` (``"cpu"``, ``"cuda"``, ...).

        fp16 autocast is not searched on CPU (it is refused there): ``low_precision.dtype`` is
        fixed to bf16, with a note. ``sync_bn`` is searched only when trials run data-parallel
        on ``replicas`` >= 2 GPUs with a model that has BatchNorm (``batch_norm``).
        """
        return self._fitted(fit_device(self.tricks, device, replicas, batch_norm))

    def for_data(
        self, kind: str, image_size: tuple[int, ...] | None = None, unlabeled: int | None = None
    ) -> SearchSpace:
        """A copy without the tricks that do not work on data of ``kind`` (``"image"``,
        ``"signal"``, ``"features"``) or, for images, of ``image_size`` (height, width), or that
        need an unlabelled pool when ``unlabeled`` is 0, with a note ``"<trick>: left out:
        <reason>"`` for each (``TrickSpec.works_on``, ``needs_unlabeled``)."""
        return self._fitted(fit_data(self.tricks, kind, image_size, unlabeled))

    def with_budget_points(
        self, *, lr: float | None = None, batch_size: int | None = None
    ) -> SearchSpace:
        """A copy whose ``budget.lr`` and ``budget.batch_size`` ranges hold ``lr`` and
        ``batch_size`` exactly (the baseline's values, so that its trial is the baseline itself,
        not its nearest point), with a note for each change: a value is added to choices, a
        range widened to contain it (see ``_ranges.admit_value``). A fixed value is kept."""
        budget = {"lr": self.lr, "batch_size": self.batch_size}
        notes: list[str] = []
        for name, value in (("lr", lr), ("batch_size", batch_size)):
            if value is not None:
                value = BUDGET_PARAMS[name].validate(value, budget_key(name))
            budget[name], note = admit_value(budget[name], value, budget_key(name))
            notes += [note] if note else []
        return SearchSpace(
            self.tricks,
            lr=budget["lr"],
            batch_size=budget["batch_size"],
            name=self.name,
            description=self.description,
            notes=[*self.given_notes, *notes],
        )

    def _fitted(self, fitted: Fitted) -> SearchSpace:
        """A copy of this space with the entries and the added notes of a fit."""
        tricks, notes = fitted
        return SearchSpace(
            tricks,
            lr=self.lr,
            batch_size=self.batch_size,
            name=self.name,
            description=self.description,
            notes=[*self.given_notes, *notes],
        )

    # -- file form and display ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The space-file form (self-contained: no ``extends``); loads back to an equal space."""
        out: dict[str, Any] = {}
        if self.description:
            out["description"] = self.description
        out["budget"] = {
            "lr": value_to_file(self.lr),
            "batch_size": value_to_file(self.batch_size),
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
        rows = describe_plan(self._plan, self.tricks)
        width = max((len(k) for k, _ in rows), default=0)
        lines.extend(f"  {k.ljust(width)}  {v}" for k, v in rows)
        lines.append(f"  {len(self.keys())} dimensions")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)

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


def _group_point(node: GroupNode, section: Mapping[str, Any]) -> str:
    """The member of a suggested group that reproduces ``section``: the member it holds, else
    none, else the group's default, else the first choice."""
    tricks = registered_tricks()
    present = next((m for m in section if tricks[m].group == node.group), None)
    if present in node.choices:
        return present
    if NONE in node.choices:
        return NONE
    if node.default_member in node.choices:
        return node.default_member
    return node.choices[0]


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
