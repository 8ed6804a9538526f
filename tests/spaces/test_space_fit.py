"""Fitting a space to the device and the data (``for_device``, ``for_data``); the model is in
test_searchspace.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tricksearch.errors import ConfigError
from tricksearch.spaces import SearchSpace, load_space
from tricksearch.tricks import SearchSpec, _base, registered_tricks


def test_for_device_fixes_fp16_to_bf16_on_cpu_with_a_note() -> None:
    space = load_space("default")
    assert space.tricks["low_precision"].params["dtype"] == SearchSpec(choices=("bf16", "fp16"))
    cpu = space.for_device("cpu")
    assert cpu.tricks["low_precision"].params["dtype"] == "bf16"
    assert cpu.tricks["low_precision"].switch == space.tricks["low_precision"].switch
    assert "procedure.low_precision.dtype" not in cpu.keys()
    assert any(
        n.startswith("low_precision: fp16 is not searched on CPU") and "--gpus-per-trial" in n
        for n in cpu.notes
    )
    assert cpu.name == space.name and cpu.lr == space.lr


def test_for_device_keeps_the_space_elsewhere_and_without_fp16() -> None:
    space = load_space("default")
    # a data-parallel trial: sync_bn searched too; the semi trainers run in one process only
    multi = space.for_device("cuda", replicas=2)
    semi = {n for n in space.tricks if registered_tricks()[n].family == "semi"}
    assert semi and set(multi.tricks) == set(space.tricks) - semi and "sync_bn" in multi.tricks
    assert all(
        f"{n} left out: semi-supervised training runs in one process" in " ".join(multi.notes)
        for n in semi
    )
    for kept in (
        SearchSpace({"low_precision": {"dtype": "bf16"}}),
        SearchSpace({"low_precision": {"switch": "off"}}),
        SearchSpace({"warmup": {}}),
    ):
        cpu = kept.for_device("cpu")
        assert cpu == kept and cpu.notes == kept.notes


def test_for_data_leaves_out_image_only_tricks_for_signals() -> None:
    space = load_space("default")
    signal = space.for_data("signal", None)
    tricks = registered_tricks()
    assert {"cutmix", "ricap"} <= set(space.tricks)
    assert not {"cutmix", "ricap"} & set(signal.tricks)
    assert all("signal" in tricks[n].data_kinds for n in signal.tricks)
    assert "cutmix: left out: works on image data, not signal" in signal.notes
    assert not any(k.startswith("mixing.cutmix") for k in signal.keys())


def test_for_data_follows_each_tricks_declared_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = registered_tricks()["label_smoothing"]
    monkeypatch.setitem(
        _base._REGISTRY, "label_smoothing", replace(spec, data_kinds=frozenset({"image"}))
    )
    space = SearchSpace({"label_smoothing": {}, "mixup": {}, "warmup": {"switch": "off"}})
    features = space.for_data("features", None)
    assert set(features.tricks) == {"mixup", "warmup"}
    assert features.notes == ["label_smoothing: left out: works on image data, not features"]
    assert space.for_data("image", (8, 8)) == space


def test_for_data_leaves_out_tricks_that_need_larger_images() -> None:
    space = SearchSpace({"cutmix": {}, "mixup": {}, "ricap": {"switch": "off"}})
    tiny = space.for_data("image", (1, 1))
    assert set(tiny.tricks) == {"mixup"}
    assert tiny.notes == ["cutmix: left out: needs images of at least 2x2 pixels, got 1x1"]
    assert space.for_data("image", (2, 2)) == space
    assert space.for_data("image", None) == space


def test_for_data_refuses_an_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="kind: got 'audio', expected one of image, signal"):
        load_space("minimal").for_data("audio", None)


def test_sync_bn_is_searched_only_on_several_gpus_with_batch_norm() -> None:
    space = load_space("default")
    assert "sync_bn" in space.tricks
    for fitted in (space.for_device("cpu", 2), space.for_device("cuda"), space.for_device("cpu")):
        assert "sync_bn" not in fitted.tricks
        assert [n for n in fitted.notes if "sync_bn" in n] == [
            "sync_bn left out: torch's SyncBatchNorm needs a data-parallel trial on 2 or more "
            "CUDA GPUs (--gpus-per-trial 2 or more)"
        ]
    no_bn = space.for_device("cuda", 2, batch_norm=False)
    assert "sync_bn" not in no_bn.tricks
    assert "sync_bn left out: the model has no BatchNorm layer" in no_bn.notes
