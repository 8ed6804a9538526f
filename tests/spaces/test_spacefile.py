"""Space files: composition (extends / include / exclude / tricks / budget) and every refusal.

Each refusal must be a ConfigError (or ConfigTypeError) naming the file, the field, the value
received and what is allowed; the line too, where the field is in the file.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tricksearch.errors import ConfigError, ConfigTypeError, TricksearchError
from tricksearch.spaces import SearchSpace, list_presets, load_space, space_from_dict
from tricksearch.tricks import SearchSpec, registered_tricks

EXAMPLE = """\
extends: default
include: [warmup, cosine, label_smoothing, mixup]
exclude: [adversarial]
budget:
  lr: {low: 0.01, high: 0.5, log: true}
  batch_size: 128
tricks:
  label_smoothing: {epsilon: {low: 0.0, high: 0.2}}
  mixup: {switch: on, alpha: 0.2}
  randaugment: {magnitude: {low: 5, high: 15}}
  warmup: {kind: {choices: [linear]}}
  distillation: {teacher: resnet-cifar}
"""


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _refuse(tmp_path: Path, text: str) -> str:
    path = _write(tmp_path, text)
    with pytest.raises(TricksearchError) as info:
        load_space(str(path))
    assert isinstance(info.value, (ConfigError, ConfigTypeError))
    message = str(info.value)
    assert str(path) in message, message
    return message


# -- what a file gives ----------------------------------------------------------------------


def test_the_documented_example_loads(tmp_path: Path) -> None:
    space = load_space(str(_write(tmp_path, EXAMPLE)))
    assert set(space.tricks) == {
        "warmup",
        "cosine",
        "label_smoothing",
        "mixup",
        "randaugment",
        "distillation",
    }
    assert space.lr == SearchSpec(low=0.01, high=0.5, log=True)
    assert space.batch_size == 128
    assert space.tricks["mixup"].switch == "on"
    assert space.tricks["mixup"].params["alpha"] == 0.2
    assert space.tricks["label_smoothing"].params["epsilon"] == SearchSpec(low=0.0, high=0.2)
    assert space.tricks["randaugment"].params["magnitude"] == SearchSpec(low=5, high=15)
    assert space.tricks["distillation"].params["teacher"] == "resnet-cifar"
    keys = space.keys()
    assert "budget.batch_size" not in keys and "mixing.mixup" not in keys
    assert "mixing.mixup.alpha" not in keys and "mixing.mixup.prob" in keys
    assert "schedule.warmup.kind" not in keys
    assert "loss.distillation" in keys and "loss.distillation.teacher" not in keys
    assert not any("distillation" in n for n in space.notes)


def test_default_has_every_searchable_trick_but_distillation() -> None:
    space = load_space("default")
    expected = {n for n, s in registered_tricks().items() if s.searchable and not s.needs_teacher}
    assert set(space.tricks) == expected
    assert all(e.switch == "search" for e in space.tricks.values())
    assert any("distillation" in n and "teacher" in n for n in space.notes)
    assert space.lr == SearchSpec(low=0.001, high=1.0, log=True)
    assert space.batch_size == SearchSpec(choices=(64, 128, 256, 512))


def test_default_ranges_are_the_declared_ones() -> None:
    space = load_space("default")
    for name, entry in space.tricks.items():
        for p in registered_tricks()[name].params:
            value = entry.params[p.name]
            if p.search is None:
                assert value == p.default
            elif p.kind == "float_list":
                assert value.choices == tuple(tuple(c) for c in p.search.choices)
            else:
                assert value.as_dict() == p.search.as_dict(), (name, p.name)


def test_include_exclude_and_extends_compose(tmp_path: Path) -> None:
    _write(
        tmp_path,
        """\
        extends: minimal
        exclude: [label_smoothing]
        tricks:
          mixup: {alpha: {low: 0.1, high: 0.3}}
        """,
        "parent.yaml",
    )
    child = _write(
        tmp_path,
        """\
        extends: parent.yaml
        tricks:
          warmup: {epochs: 1.0}
        """,
    )
    space = load_space(str(child))
    assert set(space.tricks) == {"warmup", "constant", "cosine", "mixup"}
    assert space.tricks["warmup"].params["epochs"] == 1.0
    # untouched parameters keep the parent's (minimal's) range
    assert space.tricks["mixup"].params["alpha"] == SearchSpec(low=0.1, high=0.3)
    assert space.lr == load_space("minimal").lr
    assert space.batch_size is None


def test_include_all_and_yaml_booleans(tmp_path: Path) -> None:
    space = load_space(
        str(
            _write(
                tmp_path,
                """\
        include: [mixup, cutmix, ema]
        tricks:
          mixup: on
          cutmix: off
          ema: {switch: search}
        """,
            )
        )
    )
    assert space.tricks["mixup"].switch == "on"
    assert space.tricks["cutmix"].switch == "off"
    assert space.tricks["ema"].switch == "search"
    assert space.keys()[:3] == ["budget.lr", "budget.batch_size", "mixing.mixup.alpha"]


def test_numbers_written_1e_3_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads `1e-3` (no dot) as a string
    space = load_space(
        str(
            _write(
                tmp_path,
                """\
        budget: {lr: {low: 1e-3, high: 1, log: true}, batch_size: 64}
        tricks: {weight_decay: {value: {low: 1e-6, high: 1e-2, log: true}}}
        """,
            )
        )
    )
    assert space.lr == SearchSpec(low=0.001, high=1.0, log=True)
    assert space.tricks["weight_decay"].params["value"].low == 1e-6


def test_empty_file_means_budget_only(tmp_path: Path) -> None:
    space = space_from_dict({})
    assert space.tricks == {} and space.keys() == ["budget.lr", "budget.batch_size"]
    assert space == SearchSpace()


def test_list_presets_have_descriptions() -> None:
    presets = list_presets()
    assert {"default", "bag-of-tricks", "regularization", "schedule", "minimal"} <= set(presets)
    assert all(desc for desc in presets.values())


def test_preset_contents() -> None:
    assert set(load_space("minimal").tricks) == {"warmup", "constant", "cosine", "label_smoothing"}
    assert set(load_space("regularization").tricks) == {
        "label_smoothing",
        "mixup",
        "cutmix",
        "cutout",
        "random_erasing",
        "dropout",
        "weight_decay",
        "flooding",
    }
    bag = load_space("bag-of-tricks")
    assert {
        "lr_scaling",
        "warmup",
        "zero_gamma",
        "no_bias_decay",
        "cosine",
        "label_smoothing",
        "mixup",
        "low_precision",
    } <= set(bag.tricks)
    assert bag.tricks["low_precision"].params["dtype"] == "bf16"
    schedule = load_space("schedule")
    assert {"lr_scaling", "warmup", "cosine", "sgd", "adamw", "radam", "adabound"} <= set(
        schedule.tricks
    )
    assert "schedule.decay" in schedule.keys() and "optimizer.optimizer" in schedule.keys()


# -- refusals -------------------------------------------------------------------------------


REFUSALS = {
    "unknown top-level key": ("extend: default\n", ["extend", "unknown key", "extends", "line 1"]),
    "unknown trick": (
        "tricks:\n  mixupp: {}\n",
        ["tricks.mixupp", "'mixupp'", "known tricks", "mixup", "line 2"],
    ),
    "unknown trick in include": (
        "include: [warmup, cosinus]\n",
        ["include[1]", "'cosinus'", "known tricks", "cosine"],
    ),
    "unknown trick in exclude": ("exclude: [nope]\n", ["exclude[0]", "'nope'", "known tricks"]),
    "unknown parameter": (
        "tricks:\n  mixup:\n    beta: 0.3\n",
        ["tricks.mixup.beta", "unknown parameter", "alpha", "prob", "line 3"],
    ),
    "low > high": (
        "tricks:\n  label_smoothing: {epsilon: {low: 0.2, high: 0.1}}\n",
        ["tricks.label_smoothing.epsilon", "low=0.2", "high=0.1", "low <= high"],
    ),
    "log range with low <= 0": (
        "tricks:\n  weight_decay: {value: {low: 0.0, high: 0.01, log: true}}\n",
        ["tricks.weight_decay.value.low", "0.0", "log", "low > 0"],
    ),
    "log budget range with low <= 0": (
        "budget:\n  lr: {low: 0, high: 1, log: true}\n",
        ["budget.lr.low", "log", "line 2"],
    ),
    "empty choice list": (
        "tricks:\n  warmup: {kind: {choices: []}}\n",
        ["tricks.warmup.kind.choices", "empty", "linear", "constant"],
    ),
    "fixed value out of bounds": (
        "tricks:\n  label_smoothing: {epsilon: 1.5}\n",
        ["tricks.label_smoothing.epsilon", "1.5", "[0.0, 1.0)"],
    ),
    "range out of bounds": (
        "tricks:\n  mixup:\n    prob:\n      low: 0.5\n      high: 1.5\n",
        ["tricks.mixup.prob.high", "1.5", "[0.0, 1.0]", "line 5"],
    ),
    "budget out of bounds": (
        "budget: {batch_size: 0}\n",
        ["budget.batch_size", "got 0", "integer"],
    ),
    "choice not allowed": (
        "tricks:\n  warmup: {kind: {choices: [linear, cubic]}}\n",
        ["tricks.warmup.kind.choices[1]", "'cubic'", "'linear'", "'constant'"],
    ),
    "fixed choice not allowed": (
        "tricks:\n  low_precision: {dtype: fp8}\n",
        ["tricks.low_precision.dtype", "'fp8'", "'bf16'", "'fp16'"],
    ),
    "bad switch": (
        "tricks:\n  mixup: {switch: maybe}\n",
        ["tricks.mixup.switch", "'maybe'", "on, off, search"],
    ),
    "include and exclude name the same trick": (
        "include: [warmup, mixup]\nexclude: [mixup]\n",
        ["exclude[0]", "'mixup'", "include[1]", "line 2"],
    ),
    "configured and excluded": (
        "exclude: [mixup]\ntricks:\n  mixup: {alpha: 0.2}\n",
        ["tricks.mixup", "exclude"],
    ),
    "unknown preset": (
        "extends: nope\n",
        ["extends", "'nope'", "default", "minimal", "bag-of-tricks"],
    ),
    "yaml syntax error": ("tricks:\n  mixup: {alpha: [1, 2}\n", ["not valid YAML", "line 2"]),
    "unknown budget key": (
        "budget:\n  epochs: 3\n",
        ["budget.epochs", "unknown key", "lr", "batch_size"],
    ),
    "teacher missing": (
        "tricks:\n  distillation: {alpha: 0.5}\n",
        ["tricks.distillation.teacher", "teacher"],
    ),
    "range on a choice param": (
        "tricks:\n  warmup: {kind: {low: 1, high: 2}}\n",
        ["tricks.warmup.kind", "choices", "'linear'"],
    ),
    "list where a range is due": (
        "tricks:\n  warmup: {kind: [linear, constant]}\n",
        ["tricks.warmup.kind", "choices: ['linear', 'constant']"],
    ),
    "unknown range key": (
        "tricks:\n  warmup: {epochs: {lo: 1, high: 2}}\n",
        ["tricks.warmup.epochs.lo", "low, high, log, step, choices"],
    ),
    "log with step": (
        "tricks:\n  warmup: {epochs: {low: 1, high: 3, log: true, step: 1}}\n",
        ["tricks.warmup.epochs", "log", "step"],
    ),
    "step not dividing the range": (
        "tricks:\n  randaugment: {magnitude: {low: 1, high: 10, step: 2}}\n",
        ["tricks.randaugment.magnitude.step", "multiple"],
    ),
    "int range with a fraction": (
        "tricks:\n  randaugment: {magnitude: {low: 1.5, high: 10}}\n",
        ["tricks.randaugment.magnitude.low", "1.5", "integer"],
    ),
    "duplicate key": (
        "tricks:\n  mixup: {}\n  mixup: {alpha: 0.2}\n",
        ["tricks.mixup", "twice", "line 3"],
    ),
    "include not a list": ("include: warmup\n", ["include", "'warmup'", "list of trick names"]),
    "two members of a group forced on": (
        "tricks:\n  cosine: on\n  step: on\n",
        ["'cosine'", "'step'", "decay"],
    ),
    "not a mapping": ("- warmup\n", ["expected a mapping"]),
    "empty file": ("\n", ["empty"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_field_value_and_allowed(tmp_path: Path, case: str) -> None:
    text, expected = REFUSALS[case]
    message = _refuse(tmp_path, text)
    for part in expected:
        assert part in message, f"{case}: {part!r} not in {message!r}"


def test_refusal_in_a_parent_names_the_parent(tmp_path: Path) -> None:
    _write(tmp_path, "tricks:\n  mixup: {alpha: -1}\n", "parent.yaml")
    child = _write(tmp_path, "extends: parent.yaml\n")
    with pytest.raises(ConfigError, match=r"parent\.yaml.*line 2.*tricks\.mixup\.alpha"):
        load_space(str(child))


def test_extends_cycle_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "extends: b.yaml\n", "a.yaml")
    _write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(ConfigError, match="extends itself"):
        load_space(str(tmp_path / "a.yaml"))


def test_unknown_space_name_lists_presets() -> None:
    with pytest.raises(ConfigError, match="neither a preset") as info:
        load_space("no-such-space")
    for preset in list_presets():
        assert preset in str(info.value)


def test_programmatic_space_refuses_like_a_file() -> None:
    with pytest.raises(ConfigError, match=r"tricks\.mixup\.prob\.high: got 2"):
        SearchSpace({"mixup": {"prob": {"low": 0.1, "high": 2}}})
    with pytest.raises(ConfigError, match="unknown trick 'nope'"):
        SearchSpace({"nope": {}})
    with pytest.raises(ConfigError, match=r"budget\.lr"):
        SearchSpace(lr={"low": 1.0, "high": 0.1})


def test_include_keeps_the_parents_settings_of_tricks_it_also_configures(tmp_path: Path) -> None:
    space = load_space(
        str(
            _write(
                tmp_path,
                """\
        extends: bag-of-tricks
        include: [mixup, label_smoothing]
        tricks:
          mixup: {prob: 0.5}
        """,
            )
        )
    )
    assert set(space.tricks) == {"mixup", "label_smoothing"}
    assert space.tricks["mixup"].params == {"alpha": SearchSpec(low=0.1, high=0.4), "prob": 0.5}
    assert space.tricks["label_smoothing"].params["epsilon"] == SearchSpec(low=0.05, high=0.2)
    assert space.lr == load_space("bag-of-tricks").lr
