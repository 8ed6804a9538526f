"""Search spaces: per-trick switches and ranges, preset space files, user space files.

A :class:`SearchSpace` is the define-by-run function handed to Optuna (through Ray Tune): it only
calls ``trial.suggest_*``, conditionally. :func:`load_space` reads a preset or a YAML file,
validated completely before anything runs; :func:`preset_recipe` gives the recipes every search
is seeded with. This package imports neither ray nor optuna.
"""

from __future__ import annotations

from tricksearch.spaces._file import PRESETS_DIR, list_presets, load_space, space_from_dict
from tricksearch.spaces._presets import PRESET_RECIPES, list_preset_recipes, preset_recipe
from tricksearch.spaces._space import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LR,
    NONE,
    SWITCH_MODES,
    SearchSpace,
    TrickEntry,
    decode_list,
    encode_list,
    make_entry,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LR",
    "NONE",
    "PRESETS_DIR",
    "PRESET_RECIPES",
    "SWITCH_MODES",
    "SearchSpace",
    "TrickEntry",
    "decode_list",
    "encode_list",
    "list_preset_recipes",
    "list_presets",
    "load_space",
    "make_entry",
    "preset_recipe",
    "space_from_dict",
]
