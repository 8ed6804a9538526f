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


#: Why a trick that needs unlabelled data is left out (``note: <trick>: left out: …``).
NO_POOL_REASON = (
    "needs unlabelled data and this data has none (pass --unlabeled or --labeled-fraction)"
)

#: Why :func:`fit_device` leaves the semi-supervised tricks out of data-parallel trials.
SEMI_DDP_WHY = (
    "semi-supervised training runs in one process, not data-parallel (1 worker per trial)"
)

#: Why :func:`fit_device` leaves ``sync_bn`` out of a search on a CPU or one GPU per trial.
SYNC_BN_WHY = (
    "torch's SyncBatchNorm needs a data-parallel trial on 2 or more CUDA GPUs "
    "(--gpus-per-trial 2 or more)"
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


def fit_device(
    tricks: Mapping[str, TrickEntry], device: str, replicas: int = 1, batch_norm: bool = True
) -> Fitted:
    """The entries that run on ``device``: on ``"cpu"``, ``low_precision.dtype`` is fixed to bf16
    when it would search fp16 (fp16 autocast is refused on CPU); ``sync_bn`` is left out unless
    a trial runs data-parallel on ``replicas`` >= 2 CUDA GPUs with a model that has BatchNorm
    (``batch_norm``): torch's SyncBatchNorm needs CUDA, and alone it changes nothing."""
    kept, notes = dict(tricks), []
    if replicas > 1:  # the semi trainers step one process (engine/distributed.attach refuses)
        specs = registered_tricks()
        for name in [n for n in kept if specs[n].family == "semi"]:
            if kept.pop(name).switch != "off":
                notes.append(f"{name} left out: {SEMI_DDP_WHY}")
    sync = kept.get("sync_bn")
    if sync is not None and (device == "cpu" or replicas < 2 or not batch_norm):
        del kept["sync_bn"]
        if sync.switch != "off":
            why = "the model has no BatchNorm layer" if batch_norm is False else SYNC_BN_WHY
            notes.append(f"sync_bn left out: {why}")
    entry = kept.get("low_precision")
    if device != "cpu" or entry is None or entry.switch == "off":
        return kept, notes
    dtype = entry.params["dtype"]
    choices = (dtype.choices or ()) if isinstance(dtype, SearchSpec) else (dtype,)
    if "fp16" not in choices:
        return kept, notes
    kept["low_precision"] = make_entry("low_precision", {"dtype": "bf16"}, base=entry)
    return kept, [*notes, FP16_ON_CPU_NOTE]


def fit_data(
    tricks: Mapping[str, TrickEntry],
    kind: str,
    image_size: tuple[int, ...] | None,
    unlabeled: int | None = None,
) -> Fitted:
    """The entries that work on data of ``kind`` (``"image"``, ``"signal"``, ``"features"``)
    and, for images, of ``image_size`` (see ``TrickSpec.works_on``); with ``unlabeled`` = 0 (no
    unlabelled pool), without the tricks that need one (``TrickSpec.needs_unlabeled``: the
    ``semi`` family). ``unlabeled`` None: not known, nothing left out for it."""
    if kind not in DATA_KINDS:
        raise ConfigError(f"kind: got {kind!r}, expected one of {', '.join(DATA_KINDS)}.")
    specs = registered_tricks()
    kept: dict[str, TrickEntry] = {}
    notes: list[str] = []
    for name, entry in tricks.items():
        reason = specs[name].works_on(kind, image_size)
        if reason is None and unlabeled == 0 and specs[name].needs_unlabeled:
            reason = NO_POOL_REASON
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
