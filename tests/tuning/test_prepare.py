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
    absolute_paths,
    base_recipe,
    model_option_probes,
    prepare,
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
