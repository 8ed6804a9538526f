"""The trick library: one module per family of ../shared/TRICKS.md, plus the registry.

Importing this package registers every trick. ``build`` turns a Recipe into the pieces of a
training loop (optimizer, per-step LR, loss, batch transforms, init hooks, EMA).
"""

from __future__ import annotations

from tricksearch.tricks import (  # noqa: F401  (imported for registration)
    augment,
    loss,
    mixing,
    model_tweaks,
    optimizer,
    procedure,
    schedule,
)
from tricksearch.tricks._base import (
    FAMILIES,
    Param,
    SearchSpec,
    TrickSpec,
    get_trick,
    register,
    registered_tricks,
    tricks_in_family,
)

__all__ = [
    "FAMILIES",
    "Param",
    "SearchSpec",
    "TrickSpec",
    "get_trick",
    "register",
    "registered_tricks",
    "tricks_in_family",
]
