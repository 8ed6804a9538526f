"""Search spaces: per-trick switches and ranges, preset space files, user space files.

A :class:`SearchSpace` is the define-by-run function handed to Optuna (through Ray Tune): it only
calls ``trial.suggest_*``, conditionally. :func:`load_space` reads a preset or a YAML file,
validated completely before anything runs; :func:`preset_recipe` gives the recipes every search
is seeded with. The flat keys that name every dimension are built and read by
:func:`switch_key`, :func:`group_key`, :func:`param_key`, :func:`budget_key` and
:func:`parse_key`. This package imports neither ray nor optuna.
"""

from __future__ import annotations

from tricksearch.spaces._entry import SWITCH_MODES, TrickEntry, make_entry
from tricksearch.spaces._file import PRESETS_DIR, list_presets, load_space, space_from_dict
from tricksearch.spaces._keys import (
    NONE,
    FlatKey,
    budget_key,
    exclusive_groups,
    group_key,
    param_key,
    parse_key,
    switch_key,
)
from tricksearch.spaces._presets import PRESET_RECIPES, list_preset_recipes, preset_recipe
from tricksearch.spaces._ranges import DEFAULT_BATCH_SIZE, DEFAULT_LR, decode_list, encode_list
from tricksearch.spaces._space import SearchSpace

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LR",
    "NONE",
    "PRESETS_DIR",
    "PRESET_RECIPES",
    "SWITCH_MODES",
    "FlatKey",
    "SearchSpace",
    "TrickEntry",
    "budget_key",
    "decode_list",
    "encode_list",
    "exclusive_groups",
    "group_key",
    "list_preset_recipes",
    "list_presets",
    "load_space",
    "make_entry",
    "param_key",
    "parse_key",
    "preset_recipe",
    "space_from_dict",
    "switch_key",
]
