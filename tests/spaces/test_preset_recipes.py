"""Preset recipes (baseline, bag-of-tricks, timm-like, sgd-cosine, adamw-cosine): valid,
faithful to the papers, inside the matching spaces."""

from __future__ import annotations

import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.spaces import PRESET_RECIPES, list_preset_recipes, load_space, preset_recipe


def _base(model: str = "cnn-small", epochs: int = 15) -> Recipe:
    return Recipe.from_dict(
        {
            "data": {"dataset": "digits"},
            "model": {"name": model},
            "budget": {"epochs": epochs, "batch_size": 128, "lr": 0.1},
        }
    )


@pytest.mark.parametrize("model", ["cnn-small", "resnet-cifar", "mlp"])
@pytest.mark.parametrize("name", list(PRESET_RECIPES))
def test_presets_are_valid_and_keep_data_model_budget(name: str, model: str) -> None:
    base = _base(model).with_trick("ricap", {})
    recipe = preset_recipe(name, base)
    assert recipe.data == base.data and recipe.model == base.model
    if name == "adamw-cosine":  # the base's LR at Adam's scale (TrickSpec.lr_scale)
        assert recipe.budget.lr == pytest.approx(base.budget.lr * 0.02)
        assert recipe.budget.to_dict() | {"lr": base.budget.lr} == base.budget.to_dict()
    else:
        assert recipe.budget == base.budget
    assert "ricap" not in recipe.mixing  # the base's tricks do not leak into a preset
    assert Recipe.loads(recipe.dumps()) == recipe


def test_baseline_has_every_trick_off() -> None:
    assert preset_recipe("baseline", _base().with_trick("mixup", {})).tricks_on() == {}


@pytest.mark.parametrize(
    ("epochs", "warmup"), [(1, 1.0), (3, 1.0), (8, 2.0), (15, 3.0), (20, 5.0), (200, 5.0)]
)
def test_bag_of_tricks_follows_he_et_al(epochs: int, warmup: float) -> None:
    recipe = preset_recipe("bag-of-tricks", _base("resnet-cifar", epochs))
    assert recipe.schedule["lr_scaling"]["rule"] == "linear"
    assert recipe.schedule["warmup"] == {
        **recipe.schedule["warmup"],
        "epochs": warmup,
        "kind": "linear",
    }
    assert "cosine" in recipe.schedule
    assert recipe.loss["label_smoothing"]["epsilon"] == 0.1
    assert recipe.mixing["mixup"]["alpha"] == 0.2
    assert "no_bias_decay" in recipe.optimizer
    assert "zero_gamma" in recipe.model_tweaks
    assert recipe.procedure["low_precision"]["dtype"] == "bf16"


def test_bag_of_tricks_skips_zero_gamma_without_residual_blocks() -> None:
    recipe = preset_recipe("bag-of-tricks", _base("cnn-small"))
    assert "zero_gamma" not in recipe.model_tweaks


def test_timm_like() -> None:
    recipe = preset_recipe("timm-like", _base())
    assert "cosine" in recipe.schedule and "warmup" in recipe.schedule
    assert recipe.loss["label_smoothing"]["epsilon"] == 0.1
    assert recipe.mixing["mixup"]["alpha"] == 0.8 and recipe.mixing["cutmix"]["alpha"] == 1.0
    assert recipe.augment["randaugment"] == {"num_ops": 2, "magnitude": 9}
    assert recipe.augment["random_erasing"]["prob"] == 0.25
    assert "ema" in recipe.procedure


@pytest.mark.parametrize("model", ["cnn-small", "resnet-cifar"])
def test_bag_of_tricks_recipe_is_inside_the_bag_of_tricks_space(model: str) -> None:
    from tricksearch.models import model_traits

    base = _base(model)
    space = load_space("bag-of-tricks").for_model(model_traits(model))
    recipe = preset_recipe("bag-of-tricks", base)
    assert space.to_recipe(base, space.point(recipe)) == recipe


def test_unknown_preset_recipe_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="baseline, bag-of-tricks, timm-like"):
        preset_recipe("fast", _base())
    assert set(list_preset_recipes()) == set(PRESET_RECIPES)


def test_presets_for_a_python_model_leave_the_model_checks_to_the_space() -> None:
    # A factory's traits are known once built: the preset keeps zero-γ, and the search's space
    # (fitted to the built model) drops it when the preset becomes a point.
    base = Recipe.from_dict({"model": {"name": "python:mymodels.make_net"}})
    bag = preset_recipe("bag-of-tricks", base)
    assert "zero_gamma" in bag.model_tweaks
    space = load_space("default").for_model({"residual": False, "adaptive_pool": True})
    assert not any(k.startswith("model_tweaks.zero_gamma") for k in space.point(bag))
