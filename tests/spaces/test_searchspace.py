"""SearchSpace: the define-by-run function, flat keys, to_recipe / point, for_model, pickling.

Driven by ``optuna.create_study().ask()`` and ``optuna.trial.FixedTrial``; no Ray. Every test that
can loops over the trick registry and the preset spaces, so new tricks are covered for free.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import optuna
import pytest

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.spaces import (
    NONE,
    SearchSpace,
    decode_list,
    encode_list,
    list_presets,
    load_space,
    preset_recipe,
)
from tricksearch.tricks import registered_tricks

optuna.logging.set_verbosity(optuna.logging.WARNING)

PRESETS = sorted(list_presets())
N_TRIALS = 50


def _model_traits(name: str) -> dict[str, bool]:
    try:
        from tricksearch.models import model_traits
    except ImportError:  # pragma: no cover - models package not there yet
        return {"residual": True, "adaptive_pool": True}
    return model_traits(name)


@pytest.fixture(scope="module")
def base() -> Recipe:
    """A base recipe whose model takes every trick (residual blocks, adaptive pooling)."""
    return Recipe.from_dict({"model": {"name": "resnet-cifar"}, "budget": {"epochs": 15}})


def _sample(space: SearchSpace, n: int = N_TRIALS, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        assert space(trial) is None
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def _is_on(space: SearchSpace, params: dict, trick: str) -> bool:
    """Whether ``trick`` is on in a sampled configuration, by the naming rules alone."""
    entry = space.tricks[trick]
    if entry.switch == "off":
        return False
    if entry.group is None:
        return entry.switch == "on" or params.get(f"{entry.family}.{trick}") is True
    members = [
        e for e in space.tricks.values() if (e.family, e.group) == (entry.family, entry.group)
    ]
    forced = [e.name for e in members if e.switch == "on"]
    if forced:
        return forced[0] == trick
    key = f"{entry.family}.{entry.group}"
    if key in params:
        return params[key] == trick
    live = [e.name for e in members if e.switch == "search"]
    return live == [trick]


# -- naming ---------------------------------------------------------------------------------


def test_group_keys_do_not_collide_with_switch_keys() -> None:
    tricks = registered_tricks()
    switch_keys = {f"{s.family}.{n}" for n, s in tricks.items()}
    group_keys = {f"{s.family}.{s.group}" for s in tricks.values() if s.group}
    assert not switch_keys & group_keys


def test_flat_key_naming_on_default_space() -> None:
    space = load_space("default")
    keys = space.keys()
    assert keys[:2] == ["budget.lr", "budget.batch_size"]
    assert "schedule.warmup" in keys and "schedule.warmup.epochs" in keys
    assert "schedule.decay" in keys and "optimizer.optimizer" in keys
    assert "loss.label_smoothing.epsilon" in keys
    assert len(keys) == len(set(keys))
    assert space.trick_of("schedule.warmup.epochs") == "warmup"
    assert space.trick_of("schedule.warmup") == "warmup"
    assert space.trick_of("schedule.decay") == "decay"
    assert space.trick_of("budget.lr") == "budget"
    with pytest.raises(ConfigError, match="not a dimension"):
        space.trick_of("schedule.nope")


# -- the define-by-run function -------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_conditional_params_appear_only_when_their_trick_is_on(preset: str) -> None:
    space = load_space(preset)
    dims_of: dict[str, list[str]] = {}
    for key in space.keys():
        if key.count(".") == 2:
            dims_of.setdefault(space.trick_of(key), []).append(key)
    for params in _sample(space):
        for key in params:
            assert key in space.keys()
            if key.count(".") == 2:
                assert _is_on(space, params, space.trick_of(key)), (key, params)
        for trick, keys in dims_of.items():
            if _is_on(space, params, trick):
                assert all(k in params for k in keys), (trick, params)
            else:
                assert not any(k in params for k in keys), (trick, params)


def test_group_categorical_lists_the_included_members() -> None:
    space = load_space("default")
    study = optuna.create_study()
    trial = study.ask()
    space(trial)
    dists = trial.distributions
    groups: dict[str, list] = {}
    for name, spec in registered_tricks().items():
        if spec.group and name in space.tricks:
            groups.setdefault(f"{spec.family}.{spec.group}", []).append(spec)
    assert groups, "the registry declares exclusive groups"
    for key, members in groups.items():
        has_default = any(s.required_default for s in members)
        expected = [s.name for s in members] + ([] if has_default else [NONE])
        assert list(dists[key].choices) == expected, key
        # members get no switch of their own
        for s in members:
            assert f"{s.family}.{s.name}" not in space.keys()


def test_switches_are_false_true_categoricals() -> None:
    space = load_space("minimal")
    trial = optuna.create_study().ask()
    space(trial)
    assert list(trial.distributions["schedule.warmup"].choices) == [False, True]
    assert list(trial.distributions["loss.label_smoothing"].choices) == [False, True]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_sampled_config_is_a_valid_recipe(preset: str, base: Recipe) -> None:
    space = load_space(preset)
    for params in _sample(space, seed=1):
        recipe = space.to_recipe(base, params)
        assert isinstance(recipe, Recipe)
        assert recipe.data == base.data and recipe.model == base.model
        assert recipe.budget.epochs == base.budget.epochs
        if "budget.lr" in params:
            assert recipe.budget.lr == pytest.approx(params["budget.lr"])
        on = recipe.tricks_on()
        for trick in space.tricks_included():
            spec = registered_tricks()[trick]
            implicit = spec.required_default and not spec.params
            if _is_on(space, params, trick) and not implicit:
                assert trick in on, (trick, params)
            elif not _is_on(space, params, trick):
                assert trick not in on, (trick, params)
        # a recipe written out and loaded again is the same recipe
        assert Recipe.loads(recipe.dumps()) == recipe


def test_sampled_values_are_written_into_the_recipe(base: Recipe) -> None:
    space = load_space("minimal")
    for params in _sample(space, n=20):
        recipe = space.to_recipe(base, params)
        if params["loss.label_smoothing"]:
            eps = recipe.loss["label_smoothing"]["epsilon"]
            assert eps == params["loss.label_smoothing.epsilon"]
        if params["schedule.decay"] == "cosine":
            assert "cosine" in recipe.schedule
        else:
            assert "cosine" not in recipe.schedule and "constant" not in recipe.schedule


def test_fixed_values_are_never_suggested(base: Recipe) -> None:
    space = SearchSpace(
        {
            "mixup": {"switch": "on", "alpha": 0.3},
            "warmup": {"kind": {"choices": ["linear"]}, "epochs": {"low": 2.0, "high": 2.0}},
            "label_smoothing": {"switch": "search", "epsilon": 0.05},
        },
        lr=0.07,
        batch_size={"choices": [64]},
    )
    assert space.keys() == [
        "schedule.warmup",
        "schedule.warmup.start_factor",
        "loss.label_smoothing",
        "mixing.mixup.prob",
    ]
    for params in _sample(space, n=20):
        for key in (
            "budget.lr",
            "budget.batch_size",
            "mixing.mixup",
            "mixing.mixup.alpha",
            "schedule.warmup.kind",
            "schedule.warmup.epochs",
            "loss.label_smoothing.epsilon",
        ):
            assert key not in params
        recipe = space.to_recipe(base, params)
        assert recipe.budget.lr == 0.07 and recipe.budget.batch_size == 64
        assert recipe.mixing["mixup"]["alpha"] == 0.3
        if params["schedule.warmup"]:
            assert recipe.schedule["warmup"]["kind"] == "linear"
            assert recipe.schedule["warmup"]["epochs"] == 2.0
        if params["loss.label_smoothing"]:
            assert recipe.loss["label_smoothing"]["epsilon"] == 0.05


def test_budget_none_keeps_the_base_values(base: Recipe) -> None:
    space = SearchSpace({"warmup": {}}, lr=None, batch_size=None)
    assert space.keys()[0] == "schedule.warmup"
    recipe = space.to_recipe(base, {"schedule.warmup": False})
    assert recipe.budget == base.budget


# -- to_recipe ------------------------------------------------------------------------------


def test_to_recipe_keeps_tricks_outside_the_space_and_removes_off_ones(base: Recipe) -> None:
    start = base.with_trick("ema", {}).with_trick("mixup", {}).with_trick("step", {})
    space = SearchSpace(
        {"mixup": "off", "cosine": {}, "label_smoothing": {}}, lr=None, batch_size=None
    )
    params = {
        "schedule.decay": "cosine",
        "schedule.cosine.min_lr_factor": 0.01,
        "loss.label_smoothing": False,
    }
    recipe = space.to_recipe(start, params)
    assert "ema" in recipe.procedure  # not in the space: kept from the base
    assert "mixup" not in recipe.mixing  # off in the space: removed
    assert set(recipe.schedule) == {"cosine"}  # the group's choice replaces `step`
    recipe = space.to_recipe(start, {**params, "schedule.decay": NONE})
    assert "step" not in recipe.schedule and "cosine" not in recipe.schedule


def test_to_recipe_refuses_missing_and_unknown_keys(base: Recipe) -> None:
    space = load_space("minimal")
    params = space.point(base)
    with pytest.raises(ConfigError, match=r"missing key 'budget\.lr'"):
        space.to_recipe(base, {k: v for k, v in params.items() if k != "budget.lr"})
    with pytest.raises(ConfigError, match=r"loss\.label_smoothin\.epsilon"):
        space.to_recipe(base, {**params, "loss.label_smoothin.epsilon": 0.1})
    with pytest.raises(ConfigError, match=r"schedule\.decay: got 'step'"):
        space.to_recipe(base, {**params, "schedule.decay": "step"})
    # keys that are not ours (a Ray config may carry constants) are ignored
    assert space.to_recipe(base, {**params, "trial_note": 1}) == space.to_recipe(base, params)


def test_forced_group_member_and_clash() -> None:
    space = SearchSpace({"cosine": {"switch": "on"}, "step": {}, "constant": {}})
    assert "schedule.decay" not in space.keys()
    assert "schedule.cosine.min_lr_factor" in space.keys()
    assert any("forced on" in n for n in space.notes)
    with pytest.raises(ConfigError, match="both forced on"):
        SearchSpace({"cosine": {"switch": "on"}, "step": {"switch": "on"}})


def test_single_member_group_without_required_default_gets_none() -> None:
    space = SearchSpace({"randaugment": {}})
    trial = optuna.create_study().ask()
    space(trial)
    assert list(trial.distributions["augment.policy"].choices) == ["randaugment", NONE]


# -- point ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["cnn-small", "resnet-cifar"])
@pytest.mark.parametrize("space_name", ["default", "bag-of-tricks"])
@pytest.mark.parametrize("preset", ["baseline", "bag-of-tricks"])
def test_point_round_trip(model: str, space_name: str, preset: str) -> None:
    base = Recipe.from_dict({"model": {"name": model}, "budget": {"epochs": 15}})
    space = load_space(space_name).for_model(_model_traits(model))
    recipe = preset_recipe(preset, base)
    point = space.point(recipe)
    assert set(point) <= set(space.keys())
    assert space.to_recipe(base.baseline(), point) == recipe


def test_point_of_timm_like_round_trips_in_default(base: Recipe) -> None:
    space = load_space("default")
    recipe = preset_recipe("timm-like", base)
    assert space.to_recipe(base.baseline(), space.point(recipe)) == recipe


@pytest.mark.parametrize("preset", PRESETS)
def test_point_of_sampled_configs_round_trips(preset: str, base: Recipe) -> None:
    space = load_space(preset)
    for params in _sample(space, n=20, seed=2):
        recipe = space.to_recipe(base, params)
        assert space.to_recipe(base, space.point(recipe)) == recipe


def test_point_is_conditional_and_clipped(base: Recipe) -> None:
    space = SearchSpace(
        {"label_smoothing": {"epsilon": {"low": 0.0, "high": 0.2}}, "mixup": {}, "randaugment": {}},
        lr={"low": 0.01, "high": 0.5, "log": True},
        batch_size={"choices": [64, 128, 256]},
    )
    recipe = (
        base.with_changes(budget={"epochs": 15, "lr": 2.0, "batch_size": 100})
        .with_trick("label_smoothing", {"epsilon": 0.29})
        .with_trick("randaugment", {"num_ops": 2, "magnitude": 30})
    )
    space_ra = load_space("default")
    point = space.point(recipe)
    assert point["budget.lr"] == 0.5
    assert point["budget.batch_size"] == 128
    assert point["loss.label_smoothing"] is True
    assert point["loss.label_smoothing.epsilon"] == 0.2
    assert point["mixing.mixup"] is False
    assert not any(k.startswith("mixing.mixup.") for k in point)
    assert point["augment.policy"] == "randaugment"
    assert point["augment.randaugment.magnitude"] == 30
    assert space_ra.point(recipe)["augment.randaugment.magnitude"] == 30


def test_enqueued_point_is_reproduced_by_ask(base: Recipe) -> None:
    space = load_space("default")
    for preset in ("baseline", "bag-of-tricks", "timm-like"):
        point = space.point(preset_recipe(preset, base))
        study = optuna.create_study()
        study.enqueue_trial(point)
        trial = study.ask()
        space(trial)
        assert trial.params == point
        assert space.to_recipe(base.baseline(), trial.params) == preset_recipe(preset, base)


def test_fixed_trial_drives_the_space(base: Recipe) -> None:
    space = load_space("bag-of-tricks")
    point = space.point(preset_recipe("bag-of-tricks", base))
    trial = optuna.trial.FixedTrial(point)
    space(trial)
    assert trial.params == point


# -- for_model ------------------------------------------------------------------------------


def test_for_model_drops_zero_gamma_for_cnn_small() -> None:
    space = load_space("default")
    small = space.for_model({"residual": False, "adaptive_pool": True})
    assert "zero_gamma" in space.tricks and "zero_gamma" not in small.tricks
    assert "resnet_variant" not in small.tricks
    assert "multiscale" in small.tricks
    assert any("zero_gamma" in n and "residual" in n for n in small.notes)
    assert not any(k.startswith("model_tweaks.zero_gamma") for k in small.keys())
    assert space.for_model({"residual": True, "adaptive_pool": True}) == space


def test_for_model_uses_model_traits() -> None:
    traits = _model_traits("cnn-small")
    assert traits["residual"] is False
    small = load_space("bag-of-tricks").for_model(traits)
    assert "zero_gamma" not in small.tricks
    fixed = load_space("default").for_model({"residual": False, "adaptive_pool": False})
    assert "multiscale" not in fixed.tricks
    assert any("multiscale" in n for n in fixed.notes)


def test_for_model_narrows_group_norm_groups_to_what_divides_every_layer() -> None:
    space = load_space("default")  # group_norm.groups searched over 8, 16, 32
    narrowed = space.for_model(
        {"residual": True, "adaptive_pool": True, "norm_groups": (1, 2, 4, 8)}
    )
    assert narrowed.tricks["group_norm"].params["groups"] == 8
    assert any("group_norm: groups searched over 8 only" in n for n in narrowed.notes)
    two = space.for_model({"norm_groups": (1, 2, 4, 8, 16)}).tricks["group_norm"]
    assert two.params["groups"].choices == (8, 16)
    none = space.for_model({"norm_groups": (1, 2, 4)})
    assert "group_norm" not in none.tricks
    assert any("group_norm left out" in n and "1, 2, 4" in n for n in none.notes)
    assert space.for_model({"norm_groups": tuple(range(1, 65))}) == space.for_model({})
    fixed = SearchSpace({"group_norm": {"switch": "search", "groups": 32}})
    with pytest.raises(ConfigError, match=r"group_norm\.groups: got 32.*allowed: 1, 2, 4, 8"):
        fixed.for_model({"norm_groups": (1, 2, 4, 8)})


def test_for_model_leaves_out_tricks_whose_model_option_the_model_lacks() -> None:
    space = load_space("default")
    traits = {"residual": True, "adaptive_pool": True}
    assert space.for_model(traits) == space.for_model(traits | {"model_options": None})
    only_dropout = space.for_model(traits | {"model_options": ("dropout",)})
    assert "dropout" in only_dropout.tricks and "zero_gamma" in only_dropout.tricks
    for name, option in [("activation", "activation"), ("group_norm", "norm")]:
        assert name not in only_dropout.tricks
        assert any(
            n.startswith(f"{name} left out") and repr(option) in n for n in only_dropout.notes
        )
    assert "resnet_variant" not in only_dropout.tricks
    assert not any(k.startswith("model_tweaks.resnet_variant") for k in only_dropout.keys())


# -- list-valued parameters -----------------------------------------------------------------


def test_list_values_encode_and_decode(base: Recipe) -> None:
    assert encode_list([0.75, 1.0, 1.25]) == "0.75,1,1.25"
    assert decode_list("0.75,1,1.25") == [0.75, 1.0, 1.25]
    assert decode_list(encode_list([0.1, 1 / 3])) == [0.1, 1 / 3]
    with pytest.raises(ConfigError):
        decode_list("a,b")
    space = SearchSpace(
        {"multiscale": {"switch": "on", "scales": {"choices": [[0.75, 1, 1.25], [0.5, 1.0]]}}}
    )
    trial = optuna.create_study().ask()
    space(trial)
    dist = trial.distributions["augment.multiscale.scales"]
    assert list(dist.choices) == ["0.75,1,1.25", "0.5,1"]
    params = {**space.point(base), "augment.multiscale.scales": "0.5,1"}
    recipe = space.to_recipe(base, params)
    assert recipe.augment["multiscale"]["scales"] == [0.5, 1.0]
    assert space.point(recipe)["augment.multiscale.scales"] == "0.5,1"
    fixed = SearchSpace({"multiscale": {"switch": "on", "scales": [0.5, 1.0, 2.0]}})
    assert "augment.multiscale.scales" not in fixed.keys()
    assert fixed.to_recipe(base, fixed.point(base)).augment["multiscale"]["scales"] == [
        0.5,
        1.0,
        2.0,
    ]


# -- object protocol ------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_space_pickles_and_round_trips_through_its_file_form(preset: str) -> None:
    from tricksearch.spaces import space_from_dict

    space = load_space(preset)
    clone = pickle.loads(pickle.dumps(space))
    assert clone == space and clone.keys() == space.keys()
    assert _sample(clone, n=5) == _sample(space, n=5)
    again = space_from_dict(space.to_dict(), source="dump")
    assert again == space and again.keys() == space.keys()
    import yaml

    assert space_from_dict(yaml.safe_load(space.dumps())) == space


@pytest.mark.parametrize("preset", PRESETS)
def test_describe_lists_every_dimension(preset: str) -> None:
    space = load_space(preset)
    text = space.describe()
    assert preset in text
    for key in space.keys():
        assert key in text
    for note in space.notes:
        assert note in text


def test_spaces_import_neither_ray_nor_optuna() -> None:
    code = (
        "import sys, tricksearch.spaces as s; s.load_space('default').describe(); "
        "bad = [m for m in ('ray', 'optuna') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
