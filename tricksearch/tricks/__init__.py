"""The trick library: one module per trick family (recipe section), plus the registry.

Each family module (``schedule``, ``loss``, ``mixing``, ``augment``, ``optimizer``,
``model_tweaks``, ``procedure``) declares its tricks, holds their maths and a dispatch table
``BUILDERS`` (trick name -> builder); ``tricksearch.build`` composes the families' builders from
a Recipe into the pieces of a training loop. The registry functions import every family module
(which registers its tricks) whenever they are read, so importing this package alone does
not import torch.
"""

from __future__ import annotations

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
