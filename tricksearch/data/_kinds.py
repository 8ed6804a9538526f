"""The three kinds of input data, and the rule that matches a recipe's kind to the data given.

- ``"image"``: ``uint8`` ``[N, C, H, W]`` on the device, scaled by 1/255 and normalised per
  channel right before the forward pass (:func:`tricksearch.data.to_float`).
- ``"signal"``: 1-D signals, float ``[N, C, L]`` (``C`` channels of ``L`` samples).
- ``"features"``: feature vectors, float ``[N, F]``.

Signals and features are kept as float32 and standardised per channel (per feature) with the
mean and std of the training split. This module imports nothing heavy (no torch): the recipe and
the CLI's help use it.
"""

from __future__ import annotations

from typing import Any

from tricksearch.errors import ConfigError, ConfigTypeError, DataError

__all__ = ["DATA_KINDS", "KIND_LAYOUTS", "check_kind", "reconcile_kind"]

#: The kinds of input data (the same tuple as ``tricksearch.tricks._base.DATA_KINDS``).
DATA_KINDS: tuple[str, ...] = ("image", "signal", "features")

#: What each kind looks like, for error messages.
KIND_LAYOUTS: dict[str, str] = {
    "image": "uint8 (or float in [0, 1]) images [N, C, H, W], [N, H, W, C] or [N, H, W]",
    "signal": "float signals [N, C, L]",
    "features": "float feature vectors [N, F]",
}


def check_kind(value: Any, field: str = "kind") -> str:
    """Return ``value`` if it is one of :data:`DATA_KINDS`, else raise naming ``field``."""
    if not isinstance(value, str):
        raise ConfigTypeError(
            f"{field}: got {value!r} ({type(value).__name__}), expected one of "
            f"{', '.join(DATA_KINDS)}"
        )
    if value not in DATA_KINDS:
        raise ConfigError(f"{field}: got {value!r}, expected one of {', '.join(DATA_KINDS)}")
    return value


def reconcile_kind(recipe_kind: str, data_kind: str, *, dataset: str = "the data") -> str:
    """The data kind a recipe takes when it is run on data of ``data_kind``.

    ``"image"`` is the recipe's default, so a recipe that says ``image`` takes the kind of the
    data it is given (the baseline recipe runs on signals as well). A recipe that says
    ``signal`` or ``features`` was made for that kind: other data is refused with a
    ``DataError``.
    """
    check_kind(recipe_kind, "data.kind")
    check_kind(data_kind, "the data's kind")
    if recipe_kind == data_kind or recipe_kind == "image":
        return data_kind
    raise DataError(
        f"data.kind: the recipe was made for {recipe_kind} data ({KIND_LAYOUTS[recipe_kind]}), "
        f"but {dataset} holds {data_kind} data ({KIND_LAYOUTS[data_kind]}); give it "
        f"{recipe_kind} data, or set data.kind to {data_kind!r} in the recipe"
    )
