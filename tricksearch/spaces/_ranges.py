"""One parameter's entry in a space: a fixed value or a range, validated; list encoding.

A range is a mapping ``{low, high}`` (with ``log: true`` or a ``step``) or ``{choices: [...]}``;
its ends and choices must be values the recipe accepts for the parameter (``Param.validate``).
List-valued parameters (``multiscale.scales``) are categoricals of strings (``"0.75,1,1.25"``),
because Optuna categoricals hold only None, bool, int, float and str.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tricksearch.recipe import _BUDGET_PARAMS
from tricksearch.spaces._errors import refuse, refuse_type, validate
from tricksearch.spaces._keys import BUDGET_NAMES
from tricksearch.tricks._base import Param, SearchSpec

__all__ = [
    "BUDGET_PARAMS",
    "admit_value",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LR",
    "decode_list",
    "decode_value",
    "encode_list",
    "encode_value",
    "resolve_budget",
    "resolve_param",
    "same",
    "value_to_file",
]

#: Default range of the base learning rate (before scaling rules).
DEFAULT_LR = SearchSpec(low=1e-3, high=1.0, log=True)
#: Default choices of the batch size.
DEFAULT_BATCH_SIZE = SearchSpec(choices=(64, 128, 256, 512))
#: The recipe's declaration of each budget field a space samples (``lr``, ``batch_size``).
BUDGET_PARAMS: dict[str, Param] = {p.name: p for p in _BUDGET_PARAMS if p.name in BUDGET_NAMES}

_RANGE_KEYS = ("low", "high", "log", "step", "choices")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


# ------------------------------------------------------------------------------------------
# encoding of list values


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
        refuse_type(where, f"got {text!r}, expected a comma-separated list of numbers.")
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        refuse(where, f"got {text!r}, expected a comma-separated list of numbers.")


def encode_value(param: Param, value: Any) -> Any:
    """A parameter value in the form Optuna stores."""
    if param.kind == "float_list" and isinstance(value, (list, tuple)):
        return encode_list(value)
    return value


def decode_value(param: Param, value: Any, where: str) -> Any:
    """A sampled value back in the form a recipe holds."""
    if param.kind == "float_list" and value is not None:
        return decode_list(value, where)
    return value


def same(a: Any, b: Any) -> bool:
    """Equality that keeps ``True`` apart from ``1``."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def value_to_file(value: Any) -> Any:
    """A fixed value or a range in the space-file form (lists, not tuples)."""
    if isinstance(value, SearchSpec):
        out = value.as_dict()
        if "choices" in out:
            out["choices"] = [list(c) if isinstance(c, tuple) else c for c in out["choices"]]
        return out
    if isinstance(value, tuple):
        return list(value)
    return value


# ------------------------------------------------------------------------------------------
# validation of a range


def _coerce(param_kind: str, value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; accept numeric strings where a number is due."""
    if param_kind in ("int", "float") and isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value)
        return int(number) if param_kind == "int" and number.is_integer() else number
    return value


def _check_range_keys(raw: Mapping[str, Any], where: str) -> None:
    for key in raw:
        if key not in _RANGE_KEYS:
            refuse(
                f"{where}.{key}",
                "unknown key of a search range; allowed: " + ", ".join(_RANGE_KEYS),
            )


def _check_choices(param: Param, raw: Mapping[str, Any], where: str) -> SearchSpec:
    """``{choices: [...]}``: a non-empty list of distinct values the parameter accepts."""
    others = [k for k in raw if k != "choices"]
    if others:
        refuse(
            where,
            f"got both `choices` and {', '.join(f'`{k}`' for k in others)}; "
            "a range is either `choices: [...]` or `low`/`high` (with `log` or `step`).",
        )
    choices = raw["choices"]
    if isinstance(choices, tuple):
        choices = list(choices)
    if not isinstance(choices, list):
        refuse_type(f"{where}.choices", f"got {choices!r}, expected a list of values.")
    if not choices:
        refuse(
            f"{where}.choices",
            f"got an empty list, expected at least one value ({param.allowed()}).",
        )
    out: list[Any] = []
    for i, choice in enumerate(choices):
        value = validate(param, _coerce(param.kind, choice), f"{where}.choices[{i}]")
        if param.kind == "float_list":
            value = tuple(value)
        if any(same(value, seen) for seen in out):
            refuse(f"{where}.choices[{i}]", f"got {choice!r} twice; each choice may appear once.")
        out.append(value)
    return SearchSpec(choices=tuple(out))


def _check_ends(param: Param, raw: Mapping[str, Any], where: str) -> tuple[Any, Any, bool]:
    """``low``, ``high`` and ``log`` of a numeric range: numbers, in order, valid for ``param``."""
    if param.kind not in ("int", "float"):
        refuse(
            where,
            f"got a range ({', '.join(raw)}), but parameter {param.name!r} is "
            f"{param.allowed()}; write `{{choices: [...]}}` or a fixed value.",
        )
    for key in ("low", "high"):
        if key not in raw:
            refuse(
                where,
                f"the range has no `{key}`; expected `{{low: L, high: H}}` "
                "(with optional `log: true` or `step: S`) or `{choices: [...]}`.",
            )
    low = _coerce(param.kind, raw["low"])
    high = _coerce(param.kind, raw["high"])
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse_type(f"{where}.{key}", f"got {value!r}, expected a number.")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        refuse_type(f"{where}.log", f"got {log!r}, expected true or false.")
    if low > high:
        refuse(where, f"`low <= high` must hold, but got (low={low}, high={high}).")
    if log and low <= 0:
        refuse(f"{where}.low", f"got {low} with `log: true`; a log range needs low > 0.")
    return validate(param, low, f"{where}.low"), validate(param, high, f"{where}.high"), log


def _check_step(param: Param, raw_step: Any, low: Any, high: Any, log: bool, where: str) -> Any:
    """The ``step`` of a numeric range: > 0, an integer for an int parameter, not with ``log``
    (except step 1 of an int), and dividing ``high - low``."""
    step = _coerce(param.kind, raw_step)
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not step > 0:
        refuse(f"{where}.step", f"got {step!r}, expected a number > 0.")
    if param.kind == "int":
        if float(step) != int(step):
            refuse(f"{where}.step", f"got {step!r}, expected an integer >= 1.")
        step = int(step)
    else:
        step = float(step)
    if log and not (param.kind == "int" and step == 1):
        refuse(
            where,
            f"got both `log: true` and `step: {step}`; a log range has no step "
            "(Optuna samples it continuously).",
        )
    k = (high - low) / step
    if abs(k - round(k)) > 1e-8:
        refuse(
            f"{where}.step",
            f"got {step}, but high - low = {high - low} is not a multiple "
            "of it; pick a step that divides the range.",
        )
    return step


def _check_range(param: Param, raw: Mapping[str, Any], where: str) -> SearchSpec:
    """Validate a range mapping (``low``/``high``/``log``/``step`` or ``choices``)."""
    _check_range_keys(raw, where)
    if "choices" in raw:
        return _check_choices(param, raw, where)
    low, high, log = _check_ends(param, raw, where)
    step = raw.get("step")
    if step is not None:
        step = _check_step(param, step, low, high, log, where)
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
        refuse_type(
            where,
            f"got the list {list(raw)!r}; a parameter takes a fixed value "
            f"({param.allowed()}) or a range; to search over values write "
            f"`{{choices: {list(raw)!r}}}`.",
        )
    return validate(param, _coerce(param.kind, raw), where)


def resolve_budget(name: str, raw: Any, where: str) -> Any:
    """``budget.lr`` / ``budget.batch_size``: None (the base recipe's value), fixed, or a range."""
    if raw is None:
        return None
    return resolve_param(BUDGET_PARAMS[name], raw, where)


# ------------------------------------------------------------------------------------------
# a value made an allowed point of a range

#: A stepped range of at most this many points becomes choices when a value off its grid is
#: admitted; a longer one loses its step.
_MAX_GRID = 64


def admit_value(entry: Any, value: Any, where: str) -> tuple[Any, str | None]:
    """``entry`` (a range, a fixed value or None) changed so that ``value`` is one of its points,
    and a note saying how (None: unchanged).

    Choices get ``value`` added (kept sorted when numeric); a ``low``/``high`` range is widened
    to contain it; a stepped range whose grid misses it becomes its grid points plus ``value``
    (at most 64 points) or else loses its step. A fixed value and None (the base recipe's
    value) are left as they are: the space's author fixed them.
    """
    if not isinstance(entry, SearchSpec) or value is None:
        return entry, None
    why = f"(the baseline's {value})"
    if entry.choices is not None:
        if any(same(value, c) for c in entry.choices):
            return entry, None
        return _with_choice(entry.choices, value), f"{where}: {value} added to the choices {why}"
    spec = entry
    if spec.step is not None and not _on_grid(value - spec.low, spec.step):
        n = round((spec.high - spec.low) / spec.step) + 1
        if n <= _MAX_GRID:
            grid = tuple(_like(value, spec.low + i * spec.step) for i in range(n))
            return _with_choice(grid, value), (
                f"{where}: the points of {_span(entry)} searched as choices, with {value} added "
                + why
            )
        spec = SearchSpec(low=spec.low, high=spec.high, log=spec.log)
    # On the grid (or none): the distance from a new end to the other end is a multiple of step.
    spec = SearchSpec(
        low=min(spec.low, value), high=max(spec.high, value), log=spec.log, step=spec.step
    )
    if spec == entry:
        return entry, None
    return spec, f"{where}: range {_span(entry)} widened to {_span(spec)} {why}"


def _on_grid(distance: float, step: float) -> bool:
    k = distance / step
    return abs(k - round(k)) <= 1e-8


def _like(value: Any, number: float) -> Any:
    """``number`` as an int when ``value`` is one (an int parameter's grid point); a float grid
    point without the rounding noise of ``low + i * step``."""
    return round(number) if isinstance(value, int) else float(f"{number:.12g}")


def _with_choice(choices: tuple[Any, ...], value: Any) -> SearchSpec:
    out = (*choices, value)
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in out):
        out = tuple(sorted(out))
    return SearchSpec(choices=out)


def _span(spec: SearchSpec) -> str:
    extra = " log" if spec.log else (f" step {spec.step:g}" if spec.step else "")
    return f"[{spec.low:g}, {spec.high:g}]{extra}"
