"""The preparation before Ray: absolute paths on a copy, the space fitted to the model, and model
probes derived from the trick registry (no Ray session)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tricksearch.errors import ConfigError
from tricksearch.tricks import registered_tricks
from tricksearch.tuning import SearchConfig
from tricksearch.tuning._prepare import (
    TENSORS,
    absolute_paths,
    base_recipe,
    model_option_probes,
    prepare,
    resume_hint,
    trial_threads,
)


def test_prepare_leaves_the_callers_config_unchanged(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("include: [label_smoothing, resnet_variant]\n")
    config = SearchConfig(space="space.yaml", data_root="data", out="run", trials=2, epochs=2)
    before = copy.deepcopy(config)
    prep = prepare(config)
    assert config == before
    assert prep.config is not config
    assert prep.config.space == str(tmp_path / "space.yaml")
    assert prep.config.data_root == str(tmp_path / "data")
    assert prep.config.out == "run" and prep.run_dir == tmp_path / "run"
    assert prep.config.trials == 2 and prep.base.budget.epochs == 2
    assert prep.device == "cpu" and prep.own_data is None and prep.data.num_classes == 10
    # cnn-small has no residual block: the ResNet variants are left out, with a note
    assert prep.space.tricks_included() == ["label_smoothing"]
    assert any(n.startswith("resnet_variant left out") for n in prep.notes)
    assert not (tmp_path / "run").exists()  # nothing written before Ray starts


def test_prepare_refuses_a_bad_space_before_anything_runs(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tricks:\n  label_smoothing: {epsilon: {low: 0.3, high: 0.1}}\n")
    with pytest.raises(ConfigError, match="epsilon"):
        prepare(SearchConfig(space=str(bad), out=str(tmp_path / "run")))


def test_absolute_paths_of_a_dataset_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = SearchConfig(dataset="npz:arrays.npz", space="default")
    fixed = absolute_paths(config)
    assert fixed.dataset == f"npz:{tmp_path / 'arrays.npz'}"
    assert fixed.space == "default"  # a preset name, not a file
    assert config.dataset == "npz:arrays.npz"
    assert base_recipe(config).data.dataset == fixed.dataset


def test_every_model_option_a_trick_declares_is_probed() -> None:
    # A model tweak missing from the probes would be left out of every search: the probes come
    # from the registry, and each builds the option its trick declares.
    probes = model_option_probes()
    declared = {s.model_option for s in registered_tricks().values() if s.model_option}
    assert set(probes) == declared
    for option, values in probes.items():
        assert values and all(option in v for v in values), (option, values)
    assert sorted(v["variant"] for v in probes["variant"]) == ["b", "c", "d"]
    assert {v["norm"] for v in probes["norm"]} == {"group"}


def test_the_caller_gets_its_own_data_back(tmp_path) -> None:
    from tricksearch.engine import load_data

    config = SearchConfig(out=str(tmp_path / "run"))
    data = load_data(base_recipe(config))
    prep = prepare(config, data=data)
    assert prep.own_data is data and prep.data is data
    assert Path(prep.config.out) == tmp_path / "run"


# --- the base recipe: data kind, thread count; the space: data kind, baseline points -----------
def test_base_recipe_records_the_trials_thread_count(tmp_path) -> None:
    for cpus, threads in ((1.0, 1), (2.5, 2), (0.5, 1)):
        config = SearchConfig(cpus_per_trial=cpus, out=str(tmp_path / "run"))
        assert base_recipe(config).runtime.threads == threads == trial_threads(config)


def test_the_baseline_trial_is_the_users_budget_exactly(tmp_path) -> None:
    config = SearchConfig(batch_size=100, lr=0.0007, out=str(tmp_path / "run"))
    prep = prepare(config)
    point = prep.space.point(prep.base)
    assert point["budget.batch_size"] == 100 and point["budget.lr"] == 0.0007
    assert prep.space.to_recipe(prep.base, point) == prep.base
    assert any("100 added to the choices" in n for n in prep.notes)


def _signals(n: int = 90):
    import torch

    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    return torch.randn(n, 2, 24, generator=g) + y[:, None, None].float(), y


def test_a_search_on_signals_takes_their_kind_and_leaves_image_tricks_out(tmp_path) -> None:
    from tricksearch.data import dataset_from_tensors

    data = dataset_from_tensors(*_signals())
    config = SearchConfig(dataset=TENSORS, model="cnn1d", out=str(tmp_path / "run"))
    prep = prepare(config, data=data)
    assert prep.base.data.kind == "signal"
    assert "random_crop" not in prep.space.tricks_included()
    assert any(n.startswith("random_crop: left out:") for n in prep.notes)
    with pytest.raises(ConfigError, match="'cnn-small' works on image data, not signal data"):
        prepare(SearchConfig(dataset=TENSORS, out=str(tmp_path / "run2")), data=data)


# --- honest names: a Python model or Python data are given again, or refused -------------------
def test_resume_hint_for_the_command_line_and_for_python(tmp_path) -> None:
    out = "runs/x"
    assert resume_hint(SearchConfig(out=out)) == "tricksearch search --resume runs/x"
    hint = resume_hint(SearchConfig(model="python:mymodels.make_net", out=out))
    assert hint.startswith("tricksearch.resume('runs/x', model=make_net) from Python")
    assert "python:mymodels.make_net" in hint
    hint = resume_hint(SearchConfig(dataset=TENSORS, model="python:m.Net", out=out))
    assert hint.startswith("tricksearch.resume('runs/x', data=<the same data>, model=Net)")
    assert "data given from Python and a Python model" in hint
    hint = resume_hint(SearchConfig(dataset=TENSORS, out=out))
    assert hint.startswith("tricksearch.resume('runs/x', data=<the same data>) from Python")


def test_a_python_model_without_its_factory_is_refused_in_one_line(tmp_path) -> None:
    config = SearchConfig(model="python:mymodels.make_net", out=str(tmp_path / "run"))
    with pytest.raises(ConfigError) as fresh:
        prepare(config)
    assert "model 'python:mymodels.make_net' (a Python model)" in str(fresh.value)
    assert "tricksearch.search(" in str(fresh.value)
    # a search folder exists: the refusal is the resume hint (the CLI's `search --resume DIR`)
    (tmp_path / "run").mkdir()
    config.save(tmp_path / "run" / "search.json")
    with pytest.raises(ConfigError) as resumed:
        prepare(config)
    text = str(resumed.value)
    assert (
        f"resume it from Python: tricksearch.resume({str(tmp_path / 'run')!r}, model=make_net)"
        in text
    )
    assert "\n" not in text
    with pytest.raises(ConfigError, match=r"dataset 'tensors' \(data given from Python\)"):
        prepare(SearchConfig(dataset=TENSORS, out=str(tmp_path / "run3")))


def test_a_factory_given_again_is_used(tmp_path) -> None:
    from torch import nn

    def make_net(in_channels: int, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    config = SearchConfig(model="python:tests.make_net", out=str(tmp_path / "run"))
    prep = prepare(config, model_factory=make_net)
    assert prep.base.model.name == "python:tests.make_net"
    assert prep.model_factory is make_net


def test_a_resume_searches_the_search_own_copy_of_an_edited_space(tmp_path) -> None:
    from tricksearch.spaces import load_space
    from tricksearch.tuning._prepare import SPACE_COPY

    run = tmp_path / "run"
    run.mkdir()
    space_file = tmp_path / "space.yaml"
    space_file.write_text("include: [label_smoothing]\n")
    (run / SPACE_COPY).write_text(load_space(str(space_file)).dumps())
    space_file.write_text("include: [label_smoothing, mixup]\n")  # edited after the start
    config = SearchConfig(space=str(space_file), out=str(run), trials=2, epochs=1)
    resumed = prepare(config, resume=True)
    assert resumed.space.tricks_included() == ["label_smoothing"]
    (note,) = [n for n in resumed.notes if "has changed since this search started" in n]
    assert "(tricks.mixup)" in note, note  # the keys that differ are named
    assert "start a new search with another --out to search the edited space" in note
    fresh = prepare(config)
    assert set(fresh.space.tricks_included()) == {"label_smoothing", "mixup"}
    assert not any("has changed" in n for n in fresh.notes)
