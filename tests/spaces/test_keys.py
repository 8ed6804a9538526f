"""The flat keys: every kind builds and parses back; unknown keys are refused; every key a space
suggests is one the scheme reads."""

from __future__ import annotations

import pytest

from tricksearch.errors import ConfigError
from tricksearch.spaces import (
    FlatKey,
    budget_key,
    exclusive_groups,
    group_key,
    list_presets,
    load_space,
    param_key,
    parse_key,
    switch_key,
)
from tricksearch.spaces._keys import BUDGET_NAMES, is_flat_key
from tricksearch.tricks import registered_tricks


def test_every_switch_and_param_key_round_trips() -> None:
    for name, spec in registered_tricks().items():
        key = switch_key(spec.family, name)
        assert parse_key(key) == FlatKey("switch", spec.family, name)
        assert str(parse_key(key)) == key
        for p in spec.params:
            key = param_key(spec.family, name, p.name)
            assert parse_key(key) == FlatKey("param", spec.family, name, p.name)
            assert str(parse_key(key)) == key


def test_every_group_key_round_trips() -> None:
    groups = exclusive_groups()
    assert ("schedule", "decay") in groups and "cosine" in groups[("schedule", "decay")]
    for family, group in groups:
        key = group_key(family, group)
        assert parse_key(key) == FlatKey("group", family, group)
        assert str(parse_key(key)) == key


def test_budget_keys_round_trip() -> None:
    for name in BUDGET_NAMES:
        key = budget_key(name)
        assert parse_key(key) == FlatKey("budget", "budget", name)
        assert str(parse_key(key)) == key
    assert budget_key("lr") == "budget.lr"


def test_the_written_forms() -> None:
    assert switch_key("loss", "label_smoothing") == "loss.label_smoothing"
    assert group_key("schedule", "decay") == "schedule.decay"
    assert param_key("loss", "label_smoothing", "epsilon") == "loss.label_smoothing.epsilon"


def test_no_group_key_is_also_a_switch_key() -> None:
    tricks = registered_tricks()
    switches = {switch_key(s.family, n) for n, s in tricks.items()}
    groups = {group_key(f, g) for f, g in exclusive_groups()}
    assert not switches & groups


@pytest.mark.parametrize(
    "key",
    [
        "label_smoothing",
        "loss.nope",
        "schedule.label_smoothing",  # a trick of another family
        "loss.label_smoothing.nope",
        "loss.label_smoothing.epsilon.more",
        "budget.epochs",
        "budget",
        "nofamily.cosine",
        "",
    ],
)
def test_unknown_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError, match="expected a flat key"):
        parse_key(key)


def test_is_flat_key_spots_keys_of_the_scheme_even_unknown_ones() -> None:
    assert is_flat_key("loss.label_smoothin") and is_flat_key("budget.epochs")
    assert not is_flat_key("lr") and not is_flat_key(3) and not is_flat_key("other.key")


@pytest.mark.parametrize("preset", sorted(list_presets()))
def test_every_key_a_preset_suggests_parses(preset: str) -> None:
    space = load_space(preset)
    for key in space.keys():
        parsed = parse_key(key)
        assert str(parsed) == key
        owner = "budget" if parsed.kind == "budget" else parsed.name
        assert space.trick_of(key) == owner
