"""Export to timm / torchvision / JSON: shared fields round-trip, the rest is listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tricksearch.cli import main
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report import export_recipe, parse_timm_args, parse_torchvision_command
from tricksearch.report._export import torchvision_ema_decay


def _recipe(**sections) -> Recipe:
    raw = {
        "data": {"dataset": "digits"},
        "model": {"name": "torchvision:resnet18"},
        "budget": {"epochs": 20, "batch_size": 128, "lr": 0.1, "seed": 3},
    }
    raw.update(sections)
    return Recipe.from_dict(raw)


SHARED = _recipe(
    schedule={
        "warmup": {"epochs": 3, "kind": "linear", "start_factor": 0.1},
        "cosine": {"min_lr_factor": 0.01},
    },
    loss={"label_smoothing": {"epsilon": 0.15}},
    mixing={"mixup": {"alpha": 0.2}, "cutmix": {"alpha": 1.0}},
    optimizer={"adamw": {}, "weight_decay": {"value": 0.05}, "no_bias_decay": {}},
    augment={"random_erasing": {"prob": 0.25}, "hflip": {}},
    procedure={"ema": {"decay": 0.999}},
)


def test_timm_round_trip_of_shared_fields() -> None:
    res = export_recipe(SHARED, "timm")
    args = parse_timm_args(res.text)
    assert args["smoothing"] == 0.15
    assert args["mixup"] == 0.2 and args["cutmix"] == 1.0
    assert args["mixup_prob"] == 1.0 and args["mixup_switch_prob"] == 0.5
    assert args["warmup_epochs"] == 3
    assert args["warmup_lr"] == pytest.approx(0.1 * 0.1)
    assert args["sched"] == "cosine" and args["min_lr"] == pytest.approx(0.001)
    assert args["opt"] == "adamw" and args["opt_betas"] == [0.9, 0.999]
    assert args["weight_decay"] == 0.05
    assert args["model_ema"] is True and args["model_ema_decay"] == 0.999
    assert args["reprob"] == 0.25 and args["hflip"] == 0.5
    assert args["lr"] == 0.1 and args["batch_size"] == 128 and args["seed"] == 3
    assert args["model"] == "resnet18"
    # cosine + warmup_prefix: timm trains warmup + epochs = the recipe's 20.
    assert args["warmup_prefix"] is True and args["epochs"] + args["warmup_epochs"] == 20
    assert res.unsupported == []


def test_timm_defaults_that_differ_are_written_out() -> None:
    args = parse_timm_args(export_recipe(_recipe(), "timm").text)
    # timm's own defaults are smoothing 0.1, weight decay 2e-5, warmup 5, hflip 0.5, sgd=nesterov.
    assert args["smoothing"] == 0.0 and args["weight_decay"] == 0.0
    assert args["warmup_epochs"] == 0 and args["hflip"] == 0.0
    assert args["opt"] == "momentum" and args["momentum"] == 0.9
    assert args["sched"] == "constant"
    assert args["mixup"] == 0.0 and args["cutmix"] == 0.0 and args["reprob"] == 0.0


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            {"schedule": {"step": {"every_fraction": 0.25, "gamma": 0.2}}},
            {"sched": "step", "decay_epochs": 5.0, "decay_rate": 0.2},
        ),
        ({"schedule": {"linear": {"min_lr_factor": 0.0}}}, {"sched": "poly", "decay_rate": 1.0}),
        (
            {"optimizer": {"sgd": {"momentum": 0.95, "nesterov": True}}},
            {"opt": "nesterov", "momentum": 0.95},
        ),
        (
            {"optimizer": {"radam": {}, "lookahead": {"k": 6, "alpha": 0.5}}},
            {"opt": "lookahead_radam"},
        ),
        ({"augment": {"randaugment": {"num_ops": 2, "magnitude": 9}}}, {"aa": "rand-m3-n2-p1.0"}),
        ({"augment": {"autoaugment": {"policy": "imagenet"}}}, {"aa": "original"}),
        (
            {"procedure": {"low_precision": {"dtype": "bf16"}}},
            {"amp": True, "amp_dtype": "bfloat16"},
        ),
        ({"optimizer": {"grad_clip": {"max_norm": 2.0}}}, {"clip_grad": 2.0}),
        ({"model_tweaks": {"dropout": {"p": 0.3}}}, {"drop": 0.3}),
        (
            {"schedule": {"cosine_restarts": {"t0_epochs": 5, "t_mult": 2}}},
            {
                "sched": "cosine",
                "epochs": 5,
                "lr_cycle_mul": 2.0,
                "lr_cycle_limit": 2,
                "lr_cycle_decay": 1.0,
                "cooldown_epochs": 5,
            },
        ),
        (
            {"schedule": {"lr_scaling": {"rule": "sqrt", "reference_batch": 256}}},
            {"lr_base": 0.1, "lr_base_size": 256, "lr_base_scale": "sqrt"},
        ),
    ],
)
def test_timm_mappings(sections: dict, expected: dict) -> None:
    res = export_recipe(_recipe(**sections), "timm")
    args = parse_timm_args(res.text)
    for key, value in expected.items():
        assert args[key] == value, (key, args.get(key))
    assert res.unsupported == []


def test_timm_lists_what_it_cannot_express() -> None:
    recipe = _recipe(
        loss={"flooding": {"level": 0.05}},
        mixing={"ricap": {}},
        optimizer={"adabound": {}, "lookahead": {"k": 5}},
        augment={"trivialaugment": {}},
    )
    res = export_recipe(recipe, "timm")
    assert {"flooding", "ricap", "adabound", "lookahead.k", "trivialaugment"} <= set(
        res.unsupported
    )
    header = res.text.split("\nmodel:")[0]
    for name in res.unsupported:
        assert f"#   - {name}:" in header
    args = parse_timm_args(res.text)
    assert args["opt"] == "lookahead_momentum"  # adabound replaced by the group default, SGD
    assert "aa" not in args


def test_torchvision_round_trip_with_argparse() -> None:
    res = export_recipe(SHARED, "torchvision")
    args = parse_torchvision_command(res.text)
    assert args["label_smoothing"] == 0.15
    assert args["lr"] == 0.1 and args["weight_decay"] == 0.05
    assert args["mixup_alpha"] == 0.2 and args["cutmix_alpha"] == 1.0
    assert args["epochs"] == 20 and args["batch_size"] == 128
    assert args["opt"] == "adamw" and args["model"] == "resnet18"
    assert args["lr_scheduler"] == "cosineannealinglr"
    assert args["lr_min"] == pytest.approx(0.001)
    assert args["lr_warmup_epochs"] == 3 and args["lr_warmup_method"] == "linear"
    assert args["lr_warmup_decay"] == 0.1
    assert args["norm_weight_decay"] == 0.0 and args["bias_weight_decay"] == 0.0
    assert args["random_erase"] == 0.25
    assert args["model_ema"] and args["model_ema_steps"] == 1
    back = torchvision_ema_decay(args["model_ema_decay"], epochs=20, batch_size=128, inverse=True)
    assert back == pytest.approx(0.999, abs=1e-12)
    assert res.unsupported == []


def test_torchvision_command_parses_with_shlex_and_a_plain_parser() -> None:
    import argparse
    import shlex

    text = export_recipe(SHARED, "torchvision").text
    body = " ".join(line for line in text.splitlines() if not line.startswith("#"))
    words = shlex.split(body.replace("\\", " "))
    assert words[:2] == ["python", "train.py"]
    p = argparse.ArgumentParser()
    p.add_argument("--label-smoothing", type=float, dest="label_smoothing")
    p.add_argument("--lr", type=float)
    p.add_argument("--wd", "--weight-decay", type=float, dest="weight_decay")
    p.add_argument("--mixup-alpha", type=float)
    p.add_argument("--cutmix-alpha", type=float)
    ns, _ = p.parse_known_args(words[2:])
    assert (ns.label_smoothing, ns.lr, ns.weight_decay, ns.mixup_alpha, ns.cutmix_alpha) == (
        0.15,
        0.1,
        0.05,
        0.2,
        1.0,
    )


def test_torchvision_lists_what_it_cannot_express() -> None:
    recipe = _recipe(
        schedule={"linear": {}},
        loss={"flooding": {"level": 0.05}, "focal": {}},
        mixing={"ricap": {}, "mixup": {"alpha": 0.2, "prob": 0.5}},
        optimizer={"radam": {}, "lookahead": {}},
        augment={"randaugment": {"num_ops": 3, "magnitude": 9}, "random_crop": {}},
        procedure={"low_precision": {"dtype": "bf16"}, "adversarial": {}},
    )
    res = export_recipe(recipe, "torchvision")
    assert {
        "linear",
        "flooding",
        "focal",
        "ricap",
        "mixup.prob",
        "radam",
        "lookahead",
        "randaugment.num_ops",
        "random_crop",
        "low_precision",
        "adversarial",
    } <= set(res.unsupported)
    args = parse_torchvision_command(res.text)
    assert args["opt"] == "sgd"  # radam replaced by the group default
    assert args["lr_scheduler"] == "steplr" and args["lr_gamma"] == 1.0  # constant instead
    assert args["auto_augment"] == "ra" and args["ra_magnitude"] == 9


@pytest.mark.parametrize("target", ["timm", "torchvision"])
def test_exporters_list_what_they_consumed(target: str) -> None:
    res = export_recipe(SHARED, target)
    assert set(res.consumed) == set(SHARED.tricks_on()) and res.unsupported == []
    res = export_recipe(_recipe(loss={"flooding": {}}), target)
    assert "flooding" not in res.consumed and res.unsupported == ["flooding"]


def test_json_export_is_the_recipe() -> None:
    res = export_recipe(SHARED, "json")
    assert Recipe.from_dict(json.loads(res.text)) == SHARED
    assert res.unsupported == []


def test_unknown_target_names_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"to: got 'keras', expected one of timm, torchvision"):
        export_recipe(SHARED, "keras")


def test_cli_export_to_file_and_stderr_note(tmp_path: Path, capsys) -> None:
    path = _recipe(loss={"flooding": {}}).save(tmp_path / "r.yaml")
    out = tmp_path / "args.yaml"
    assert main(["export", str(path), "--to", "timm", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert parse_timm_args(out.read_text())["sched"] == "constant"
    assert "flooding" in captured.err and "NOT in the output" in captured.err
    assert main(["export", str(path), "--to", "torchvision"]) == 0
    assert "python train.py" in capsys.readouterr().out


def test_cli_export_missing_recipe_is_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["export", str(missing), "--to", "timm"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and err.startswith("error:")


@pytest.mark.parametrize("target", ["timm", "torchvision"])
def test_every_trick_is_expressed_or_listed(target: str) -> None:
    """Loop over the registry: a trick switched on changes the export or is listed."""
    from tricksearch.tricks import registered_tricks

    base = Recipe.from_dict({"model": {"name": "resnet-cifar"}, "budget": {"epochs": 10}})
    plain = export_recipe(base, target).text
    for name, spec in registered_tricks().items():
        if spec.required_default:
            continue  # sgd / constant with their defaults are what the baseline already does
        params = {"teacher": "resnet-cifar"} if spec.needs_teacher else {}
        res = export_recipe(base.with_trick(name, params), target)
        listed = any(u == name or u.startswith(f"{name}.") for u in res.unsupported)
        assert listed or res.text != plain, f"{name} silently dropped for {target}"
