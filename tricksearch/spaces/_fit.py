"""Fitting a space's tricks to the model, the device and the data.

Each function takes the entries of a space and returns the entries kept, with a note for every
trick left out or narrowed (a trick already switched off is dropped without a note). The
:class:`~tricksearch.spaces.SearchSpace` methods ``for_model``, ``for_device`` and ``for_data``
wrap them into a new space, so that no trial of a search fails for an incompatibility.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tricksearch.compat import incompatibility
from tricksearch.errors import ConfigError
from tricksearch.spaces._entry import TrickEntry, make_entry
from tricksearch.tricks._base import DATA_KINDS, SearchSpec, registered_tricks

__all__ = ["fit_data", "fit_device", "fit_model"]

Fitted = tuple[dict[str, TrickEntry], list[str]]

#: What :func:`fit_device` notes when it fixes ``low_precision.dtype`` to bf16 on a CPU.
FP16_ON_CPU_NOTE = (
    "low_precision: fp16 is not searched on CPU (only bf16 runs there); give "
    "--gpus-per-trial to search it"
)


def fit_model(tricks: Mapping[str, TrickEntry], traits: Mapping[str, Any]) -> Fitted:
    """The entries a model with ``traits`` can take (see :func:`tricksearch.compat.
    incompatibility`), with ``group_norm.groups`` narrowed to ``traits["norm_groups"]`` (the
    group counts that divide every normalized layer of the model) when given."""
    specs = registered_tricks()
    kept: dict[str, TrickEntry] = {}
    notes: list[str] = []
    for name, entry in tricks.items():
        if name == "group_norm" and traits.get("norm_groups") and entry.switch != "off":
            narrowed = _narrow_groups(entry, tuple(traits["norm_groups"]), notes)
            if narrowed is None:
                continue
            entry = narrowed
        reason = incompatibility(specs[name], traits)
        if reason is not None:
            if entry.switch != "off":
                notes.append(f"{name} left out: {reason.note}")
            continue
        kept[name] = entry
    return kept, notes


def fit_device(tricks: Mapping[str, TrickEntry], device: str) -> Fitted:
    """The entries that run on ``device``: on ``"cpu"``, ``low_precision.dtype`` is fixed to bf16
    when it would search fp16 (fp16 autocast is refused on CPU)."""
    entry = tricks.get("low_precision")
    if device != "cpu" or entry is None or entry.switch == "off":
        return dict(tricks), []
    dtype = entry.params["dtype"]
    choices = (dtype.choices or ()) if isinstance(dtype, SearchSpec) else (dtype,)
    if "fp16" not in choices:
        return dict(tricks), []
    kept = dict(tricks)
    kept["low_precision"] = make_entry("low_precision", {"dtype": "bf16"}, base=entry)
    return kept, [FP16_ON_CPU_NOTE]


def fit_data(
    tricks: Mapping[str, TrickEntry], kind: str, image_size: tuple[int, ...] | None
) -> Fitted:
    """The entries that work on data of ``kind`` (``"image"``, ``"signal"``, ``"features"``)
    and, for images, of ``image_size`` (see ``TrickSpec.works_on``)."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"kind: got {kind!r}, expected one of {', '.join(DATA_KINDS)}.")
    specs = registered_tricks()
    kept: dict[str, TrickEntry] = {}
    notes: list[str] = []
    for name, entry in tricks.items():
        reason = specs[name].works_on(kind, image_size)
        if reason is not None:
            if entry.switch != "off":
                notes.append(f"{name}: left out: {reason}")
            continue
        kept[name] = entry
    return kept, notes


def _narrow_groups(
    entry: TrickEntry, allowed: tuple[int, ...], notes: list[str]
) -> TrickEntry | None:
    """``group_norm`` with its ``groups`` limited to ``allowed``; None (left out, with a note)
    when none of its choices is allowed. A fixed value outside ``allowed`` is refused."""
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
