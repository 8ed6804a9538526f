"""The engine options of a recipe's ``runtime`` section (issue 13, part 3): validated, written
only when set, and applied by ``fit`` with the numbers of the eager, contiguous fp32 run."""

from __future__ import annotations

import pytest
import torch

from tricksearch.data import DatasetSplits
from tricksearch.engine import evaluate, fit
from tricksearch.engine.options import EngineOptions, device_settings
from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe, RuntimeSection, load_recipe


def _base(epochs: int = 2) -> Recipe:
    return Recipe.from_dict({"budget": {"epochs": epochs, "batch_size": 32, "lr": 0.05}})


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        ({"compile": "fast"}, "runtime.compile: got 'fast', expected one of 'default', "),
        ({"channels_last": 1}, "runtime.channels_last: got 1, expected true or false."),
        ({"tf32": "yes"}, "runtime.tf32: got 'yes', expected true or false."),
        ({"eval_bf16": None}, "runtime.eval_bf16: got null, expected true or false."),
        ({"cudnn_benchmark": "on"}, "runtime.cudnn_benchmark: got 'on', expected true or false"),
    ],
)
def test_bad_options_are_one_line(runtime: dict, message: str) -> None:
    with pytest.raises((ConfigError, ConfigTypeError)) as info:
        Recipe.from_dict({"runtime": runtime})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_options_round_trip_and_old_recipes_stay_the_same(tmp_path) -> None:
    old = _base().with_changes(runtime={"threads": 1})
    assert old.to_dict()["runtime"] == {"threads": 1}  # nothing new written when unset
    every = {
        "threads": 1,
        "channels_last": True,
        "cudnn_benchmark": True,
        "tf32": True,
        "compile": "max-autotune",
        "eval_bf16": True,
    }
    recipe = _base().with_changes(runtime=every)
    path = tmp_path / "r.yaml"
    recipe.save(path)
    again = load_recipe(path)
    assert again == recipe and again.runtime == RuntimeSection(**every)
    assert "compile: max-autotune" in path.read_text()


def test_cuda_settings_are_a_no_op_on_the_cpu() -> None:
    before = torch.backends.cudnn.benchmark
    with device_settings(RuntimeSection(cudnn_benchmark=True, tf32=True), torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before


def test_channels_last_gives_the_numbers_of_contiguous(small: DatasetSplits) -> None:
    eager = fit(_base(), data=small)
    nhwc = fit(_base().with_changes(runtime={"channels_last": True}), data=small)
    for a, b in zip(eager.history, nhwc.history, strict=True):
        assert (b.train_loss, b.val_loss) == pytest.approx((a.train_loss, a.val_loss), rel=1e-4)
    assert nhwc.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_eval_bf16_changes_the_evaluation_only(small: DatasetSplits) -> None:
    plain = fit(_base(), data=small)
    bf16 = fit(_base().with_changes(runtime={"eval_bf16": True}), data=small)
    assert [m.train_loss for m in plain.history] == [m.train_loss for m in bf16.history]
    assert bf16.val_loss == pytest.approx(plain.val_loss, rel=1e-2)
    dtypes = []
    hook = plain.model.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    evaluate(plain.model, small.x_val, small.y_val, small, torch.device("cpu"))
    evaluate(
        plain.model,
        small.x_val,
        small.y_val,
        small,
        torch.device("cpu"),
        options=EngineOptions(eval_bf16=True),
    )
    hook.remove()
    assert dtypes == [torch.float32, torch.bfloat16]


@pytest.mark.slow  # torch.compile takes ~25 s on 2 CPU cores
def test_compile_gives_the_eager_numbers_and_resumes(small: DatasetSplits) -> None:
    recipe = _base().with_trick("ema", {"decay": 0.99})
    eager = fit(recipe, data=small)
    compiled_recipe = recipe.with_changes(runtime={"compile": "default"})
    states = []
    compiled = fit(compiled_recipe, data=small, on_state=lambda m, s: states.append(s))
    for a, b in zip(eager.history, compiled.history, strict=True):
        assert (b.train_loss, b.val_loss) == pytest.approx((a.train_loss, a.val_loss), rel=1e-4)
    assert not any(k.startswith("_orig_mod") for k in states[0]["model"])
    resumed = fit(compiled_recipe, data=small, resume=states[0])
    assert resumed.history[-1].val_loss == pytest.approx(compiled.history[-1].val_loss, rel=1e-5)


def test_search_flags_put_the_engine_options_in_the_base_recipe(cli, monkeypatch, tmp_path) -> None:
    """`search --channels-last --compile default` reaches every trial through the base
    recipe's runtime section (and so the exported recipe)."""
    from tricksearch.tuning import _runner
    from tricksearch.tuning._prepare import base_recipe

    seen = []
    monkeypatch.setattr(_runner, "run_search", lambda config, **kw: seen.append(config))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("search", "--channels-last", "--compile", "default", "--out", "run")
    assert code == 0, err
    (config,) = seen
    runtime = base_recipe(config).runtime
    assert (runtime.channels_last, runtime.compile, runtime.tf32) == (True, "default", False)
    with pytest.raises(SystemExit) as exit_:
        cli("search", "--compile", "fast", "--out", "run2")
    assert exit_.value.code == 2
