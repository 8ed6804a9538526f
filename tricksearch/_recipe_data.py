"""The recipe's ``data`` section, and the field checks every recipe section shares.

Kept apart from :mod:`tricksearch.recipe` (which re-exports :class:`DataSection`) so that the
recipe module stays short. Imports nothing heavy (no torch): the data readers use
:func:`parse_unlabeled` to read the ``unlabeled`` field's forms the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks._base import DATA_KINDS, BoundedParam, Param

__all__ = ["UNLABELED_FORMS", "DataSection", "parse_unlabeled"]

#: The forms of an unlabelled pool (``data.unlabeled``, ``--unlabeled``), for messages.
UNLABELED_FORMS = (
    "imagefolder:PATH (a folder of images, searched recursively, no class folders needed) or "
    "npz:PATH (a .npz file holding an array x_unlabeled)"
)


def parse_unlabeled(spec: Any, where: str = "unlabeled") -> tuple[str, str]:
    """``("imagefolder" | "npz", PATH)`` from ``imagefolder:PATH`` / ``npz:PATH``; anything else
    raises naming ``where``, the value and the forms allowed."""
    if not isinstance(spec, str):
        raise ConfigTypeError(f"{where}: got {spec!r}, expected {UNLABELED_FORMS}.")
    prefix, sep, path = spec.partition(":")
    prefix = prefix.strip().lower()
    if not sep or prefix not in ("imagefolder", "npz") or not path.strip():
        raise ConfigError(f"{where}: got {spec!r}, expected {UNLABELED_FORMS}.")
    return prefix, path


def _check_mapping(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigTypeError(f"{where}: got {raw!r}, expected a mapping.")
    return raw


def _check_keys(raw: dict[str, Any], allowed: list[str], where: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key; allowed: {', '.join(allowed)}")


def _validate_fields(raw: Any, params: tuple[Param, ...], where: str) -> dict[str, Any]:
    raw = _check_mapping(raw, where)
    _check_keys(raw, [p.name for p in params], where)
    return {p.name: p.validate(raw.get(p.name, p.default), f"{where}.{p.name}") for p in params}


_DATA_PARAMS = (
    Param("dataset", "str", "digits", "dataset name, `imagefolder:PATH` or `npz:PATH`"),
    Param("data_root", "str", None, "folder holding the dataset files", nullable=True),
    Param("val_fraction", "float", 0.15, "fraction of train held out for validation", 0.0, 0.9),
    Param(
        "test_fraction", "float", 0.2, "test fraction when the dataset has no test set", 0.01, 0.9
    ),
    Param("split_seed", "int", 0, "seed of the train/val/test split", 0),
    Param("skip_corrupt", "bool", False, "skip unreadable image files (counted), not fail"),
    Param(
        "kind",
        "choice",
        "image",
        "data kind: image, signal (float [N, C, L]) or features (float [N, F])",
        choices=DATA_KINDS,
    ),
    Param(
        "unlabeled",
        "str",
        None,
        "an unlabelled pool: `imagefolder:PATH` (no class folders) or `npz:PATH` (x_unlabeled)",
        nullable=True,
    ),
    BoundedParam(
        "labeled_fraction",
        "float",
        1.0,
        "stratified fraction of the train split's labels kept; the other train images become "
        "unlabelled",
        0.0,
        1.0,
        low_open=True,
    ),
)

#: Fields written to a file only when they differ from their default (older recipes, which
#: lack them, stay byte-identical).
_OPTIONAL = {"unlabeled": None, "labeled_fraction": 1.0}


@dataclass(frozen=True)
class DataSection:
    """Which dataset and how it is split (val is carved from train; test is never searched on).

    ``unlabeled`` adds an unlabelled pool (``imagefolder:PATH`` or ``npz:PATH``);
    ``labeled_fraction`` < 1 keeps that stratified fraction of the train split's labels and
    makes the other train images unlabelled (their labels are dropped). Val and test stay
    labelled.
    """

    dataset: str = "digits"
    data_root: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    split_seed: int = 0
    skip_corrupt: bool = False
    kind: str = "image"  # of the data the recipe was made for (``tricksearch.data.DATA_KINDS``)
    unlabeled: str | None = None
    labeled_fraction: float = 1.0

    @classmethod
    def from_dict(cls, raw: Any) -> DataSection:
        values = _validate_fields(raw, _DATA_PARAMS, "data")
        if values["val_fraction"] + values["test_fraction"] >= 1.0:
            raise ConfigError(
                f"data.val_fraction + data.test_fraction: got {values['val_fraction']} + "
                f"{values['test_fraction']}, expected a sum below 1."
            )
        if values["unlabeled"] is not None:
            parse_unlabeled(values["unlabeled"], "data.unlabeled")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except ``unlabeled`` and ``labeled_fraction`` when at their default."""
        return {
            p.name: getattr(self, p.name)
            for p in _DATA_PARAMS
            if p.name not in _OPTIONAL or getattr(self, p.name) != _OPTIONAL[p.name]
        }
