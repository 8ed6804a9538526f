"""Recipe: round trips, defaults, and every refusal naming field, value and what is allowed."""

from __future__ import annotations

import json
import re

import pytest

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import SCHEMA_VERSION, Recipe, load_recipe
from tricksearch.tricks import registered_tricks

FULL = {
    "schema_version": 1,
    "data": {"dataset": "digits", "val_fraction": 0.1, "test_fraction": 0.2, "split_seed": 3},
    "model": {"name": "resnet-cifar", "options": {"depth": 8}},
    "budget": {"epochs": 3, "batch_size": 64, "lr": 0.1, "seed": 7},
    "schedule": {"warmup": {"epochs": 1.0}, "cosine": {"min_lr_factor": 0.01}},
    "loss": {"label_smoothing": {"epsilon": 0.1}},
    "mixing": {"mixup": {"alpha": 0.2}},
    "optimizer": {"adamw": {}, "weight_decay": {"value": 1e-4}},
    "model_tweaks": {"zero_gamma": {}},
    "procedure": {"ema": {"decay": 0.999}},
    "provenance": {"note": "made by hand", "scores": [0.9, 0.91]},
}


def test_defaults_are_the_baseline() -> None:
    r = Recipe()
    assert r.tricks_on() == {}
    assert r.data.dataset == "digits" and r.model.name == "cnn-small"
    assert Recipe.from_dict({}) == r
    assert r.to_dict()["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_is_identical(tmp_path, fmt: str) -> None:
    r = Recipe.from_dict(FULL)
    path = r.save(tmp_path / f"r.{fmt}")
    first = path.read_bytes()
    again = load_recipe(path)
    assert again == r
    again.save(path)
    assert path.read_bytes() == first
    # defaults were filled in and written out
    assert again.schedule["warmup"]["kind"] == "linear"
    assert again.loss["label_smoothing"]["epsilon"] == 0.1


def test_float_values_survive_round_trip(tmp_path) -> None:
    r = Recipe.from_dict(
        {"budget": {"lr": 0.1 + 0.2}, "loss": {"label_smoothing": {"epsilon": 1 / 3}}}
    )
    assert load_recipe(r.save(tmp_path / "r.yaml")) == r
    assert json.loads(r.dumps("json"))["budget"]["lr"] == 0.1 + 0.2


@pytest.mark.parametrize(
    ("raw", "exc", "fragments"),
    [
        ({"budgt": {}}, ConfigError, ["budgt", "allowed", "budget"]),
        ({"budget": {"epochs": -3}}, ConfigError, ["budget.epochs", "-3", "integer in [1,"]),
        ({"budget": {"epochs": "ten"}}, ConfigTypeError, ["budget.epochs", "'ten'", "integer"]),
        ({"budget": {"epochs": 2.5}}, ConfigTypeError, ["budget.epochs", "2.5"]),
        ({"budget": {"lr": 0}}, ConfigError, ["budget.lr", "0"]),
        ({"budget": {"lr": float("nan")}}, ConfigError, ["budget.lr", "nan"]),
        ({"budget": {"lrate": 0.1}}, ConfigError, ["budget.lrate", "allowed", "lr"]),
        ({"data": {"val_fraction": 1.5}}, ConfigError, ["data.val_fraction", "1.5"]),
        (
            {"data": {"val_fraction": 0.6, "test_fraction": 0.5}},
            ConfigError,
            ["val_fraction", "test_fraction", "below 1"],
        ),
        ({"loss": {"label_smothing": {}}}, ConfigError, ["loss.label_smothing", "label_smoothing"]),
        ({"loss": {"mixup": {}}}, ConfigError, ["loss.mixup", "section 'mixing'"]),
        (
            {"loss": {"label_smoothing": {"epsilon": 2}}},
            ConfigError,
            ["loss.label_smoothing.epsilon", "2"],
        ),
        (
            {"loss": {"label_smoothing": {"eps": 0.1}}},
            ConfigError,
            ["loss.label_smoothing.eps", "epsilon"],
        ),
        ({"loss": {"label_smoothing": 0.1}}, ConfigTypeError, ["loss.label_smoothing", "0.1"]),
        ({"optimizer": {"sgd": {}, "adamw": {}}}, ConfigError, ["'adamw'", "'sgd'", "clash"]),
        ({"schema_version": 99}, ConfigError, ["schema_version", "99", "upgrade"]),
        ({"schema_version": "one"}, ConfigError, ["schema_version", "'one'"]),
        (
            {"model_tweaks": {"zero_gamma": {}}},
            ConfigError,
            ["zero_gamma", "residual", "cnn-small"],
        ),
        (
            {"model": {"name": "mlp"}, "augment": {"multiscale": {}}},
            ConfigError,
            ["multiscale", "adaptive pooling", "mlp"],
        ),
        (
            {"loss": {"distillation": {"teacher": None}}},
            ConfigError,
            ["loss.distillation.teacher", "needs a teacher"],
        ),
        ([1, 2], ConfigTypeError, ["recipe", "mapping"]),
    ],
)
def test_refusals_name_field_value_and_allowed(raw, exc, fragments) -> None:
    with pytest.raises(exc) as info:
        Recipe.from_dict(raw)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_false_switches_a_trick_off() -> None:
    r = Recipe.from_dict({"mixing": {"mixup": False}})
    assert r.mixing == {}


def test_load_errors_name_the_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("budget: {epochs: -1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: budget\.epochs"):
        load_recipe(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("budget: {epochs: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(broken)
    with pytest.raises(ConfigError, match="no file"):
        load_recipe(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_recipe(empty)


def test_with_and_without_trick() -> None:
    r = Recipe().with_trick("adamw").with_trick("label_smoothing", {"epsilon": 0.2})
    assert "adamw" in r.optimizer and r.loss["label_smoothing"]["epsilon"] == 0.2
    # another member of the same group replaces it
    r2 = r.with_trick("radam")
    assert "radam" in r2.optimizer and "adamw" not in r2.optimizer
    assert r2.without_trick("label_smoothing").loss == {}
    assert r.baseline().tricks_on() == {}
    with pytest.raises(ConfigError, match="unknown trick 'nope'"):
        r.with_trick("nope")


def test_missing_schema_version_reads_as_current() -> None:
    assert Recipe.from_dict({"budget": {"epochs": 2}}).schema_version == SCHEMA_VERSION


def test_model_compatibility_rules_are_the_same_for_recipes_and_spaces() -> None:
    from tricksearch.compat import incompatibility
    from tricksearch.spaces import SearchSpace

    tricks = registered_tricks()
    every = {"residual": True, "adaptive_pool": True, "model_options": ("variant",)}
    assert incompatibility(tricks["resnet_variant"], every) is None
    cases = [
        ("zero_gamma", {"residual": False, "adaptive_pool": True}, "residual"),
        ("multiscale", {"residual": True, "adaptive_pool": False}, "adaptive_pool"),
        ("resnet_variant", every | {"model_options": ("dropout",)}, "model_option"),
    ]
    for name, traits, need in cases:
        reason = incompatibility(tricks[name], traits)
        assert reason is not None and reason.need == need
        fitted = SearchSpace({name: {}}).for_model(traits)
        assert fitted.notes == [f"{name} left out: {reason.note}"]
        assert f"but model 'm' {reason.lacks}" in reason.refusal("m")
    assert incompatibility(tricks["label_smoothing"], {}) is None


# --- runtime: the torch thread count ------------------------------------------------------------
def test_runtime_threads_round_trip_and_are_left_out_when_unset(tmp_path) -> None:
    r = Recipe.from_dict({"runtime": {"threads": 2}})
    assert r.runtime.threads == 2
    assert r.to_dict()["runtime"] == {"threads": 2}
    assert load_recipe(r.save(tmp_path / "r.yaml")) == r
    assert "runtime:\n  threads: 2\n" in r.dumps()
    assert "runtime" not in Recipe().to_dict()  # None: torch's default, nothing written
    assert Recipe.from_dict({"runtime": {"threads": None}}) == Recipe()
    # the baseline and with_changes keep it
    assert r.with_trick("cosine").baseline().runtime.threads == 2


@pytest.mark.parametrize(
    ("value", "error", "fragment"),
    [
        (0, ConfigError, "runtime.threads: got 0, expected an integer >= 1 or null"),
        (1.5, ConfigTypeError, "runtime.threads: got 1.5"),
        ("4", ConfigTypeError, "runtime.threads: got '4'"),
    ],
)
def test_runtime_threads_refused(value, error, fragment: str) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        Recipe.from_dict({"runtime": {"threads": value}})


def test_runtime_unknown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"runtime\.cores: unknown key; allowed: threads"):
        Recipe.from_dict({"runtime": {"cores": 2}})


def test_a_python_model_name_is_a_valid_recipe_whatever_its_tricks() -> None:
    # A user's factory: what it takes is known once built (a search fits its space to it), so
    # zero-γ is not refused by a guess at the model.
    r = Recipe.from_dict(
        {"model": {"name": "python:mymodels.make_net"}, "model_tweaks": {"zero_gamma": {}}}
    )
    assert r.model.name == "python:mymodels.make_net"
    assert Recipe.loads(r.dumps()) == r


def test_data_kind_round_trips() -> None:
    r = Recipe.from_dict({"data": {"kind": "signal"}})
    assert r.to_dict()["data"]["kind"] == "signal"
    with pytest.raises(ConfigError, match=r"data\.kind: got 'audio'"):
        Recipe.from_dict({"data": {"kind": "audio"}})
