"""Data kinds: images, 1-D signals [N, C, L] and feature vectors [N, F].

Which shapes are which kind, the per-channel standardisation on the train split (numbers checked
against an independent computation), no uint8 round trip, .npz files, the loaders and to_float
on float batches, the recipe's ``data.kind``, and one-line errors for everything else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tricksearch.data import (
    DATA_KINDS,
    DatasetSplits,
    dataset_from_tensors,
    load_dataset,
    make_loader,
    reconcile_kind,
    to_float,
)
from tricksearch.data._splits import standardize, stratified_indices
from tricksearch.errors import ConfigError, DataError
from tricksearch.recipe import Recipe


def _signals(n: int = 120, c: int = 3, length: int = 20, seed: int = 0) -> torch.Tensor:
    """Float64 signals whose channels have very different offsets and scales."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([100.0, -3.0, 0.5])[:c].view(1, c, 1)
    scales = torch.tensor([7.0, 0.01, 1.0])[:c].view(1, c, 1)
    return torch.randn(n, c, length, generator=g, dtype=torch.float64) * scales + offsets


def _labels(n: int, k: int = 3) -> torch.Tensor:
    return torch.arange(n) % k


# ------------------------------------------------------------------------------ shape -> kind


@pytest.mark.parametrize(
    ("x", "kind", "stored"),
    [
        (torch.rand(30, 5), "features", (5,)),
        (torch.rand(30, 3, 16), "signal", (3, 16)),
        (torch.rand(30, 1, 16), "signal", (1, 16)),  # one signal channel, not a 1 x 16 image
        (torch.rand(30, 1, 16, dtype=torch.float64), "signal", (1, 16)),
        (torch.randint(0, 256, (30, 8, 8), dtype=torch.uint8), "image", (1, 8, 8)),
        (torch.randint(0, 256, (30, 3, 8, 8), dtype=torch.uint8), "image", (3, 8, 8)),
        (torch.rand(30, 3, 8, 8), "image", (3, 8, 8)),  # float images in [0, 1]
        (np.random.default_rng(0).random((30, 6, 5, 3)), "image", (3, 6, 5)),  # NHWC
    ],
)
def test_shape_and_dtype_give_the_kind(x: object, kind: str, stored: tuple) -> None:
    s = dataset_from_tensors(x, _labels(30))
    assert s.kind == kind and s.input_shape == stored
    assert s.x_train.dtype == (torch.uint8 if kind == "image" else torch.float32)


def test_kind_override() -> None:
    grey = torch.rand(30, 8, 8)  # float [N, H, W]: a signal unless told
    assert dataset_from_tensors(grey, _labels(30)).kind == "signal"
    s = dataset_from_tensors(grey, _labels(30), kind="image")
    assert s.kind == "image" and s.input_shape == (1, 8, 8) and s.x_train.dtype == torch.uint8
    s = dataset_from_tensors(torch.randn(30, 40), _labels(30), kind="signal")  # [N, L]
    assert s.kind == "signal" and s.input_shape == (1, 40)
    counts = torch.randint(0, 9, (30, 4))  # integer features only when named
    s = dataset_from_tensors(counts, _labels(30), kind="features")
    assert s.kind == "features" and s.x_train.dtype == torch.float32
    with pytest.raises(ConfigError, match="kind: got 'audio'"):
        dataset_from_tensors(grey, _labels(30), kind="audio")


def test_split_properties_per_kind() -> None:
    sig = dataset_from_tensors(torch.randn(30, 2, 50), _labels(30))
    assert (sig.channels, sig.length, sig.image_size) == (2, 50, (1, 50))
    assert "signals 2x50" in sig.summary()
    feat = dataset_from_tensors(torch.randn(30, 7), _labels(30))
    assert (feat.channels, feat.length, feat.image_size, feat.input_shape) == (7, 1, (1, 1), (7,))
    assert "7 features" in feat.summary()
    img = dataset_from_tensors(torch.randint(0, 256, (30, 3, 6, 5), dtype=torch.uint8), _labels(30))
    assert (img.kind, img.channels, img.length, img.image_size) == ("image", 3, None, (6, 5))
    # channels * H * W is the input count of every kind (what mlp flattens)
    for s, n in ((sig, 100), (feat, 7), (img, 90)):
        assert s.channels * s.image_size[0] * s.image_size[1] == n


def test_splits_refuse_tensors_that_do_not_match_their_kind() -> None:
    s = dataset_from_tensors(torch.randn(30, 2, 10), _labels(30))
    parts = {k: getattr(s, k) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    common = dict(name="t", num_classes=3, classes=["0", "1", "2"], mean=(0.0,), std=(1.0,))
    with pytest.raises(DataError, match=r"x_train of image data must be a uint8 \[N, C, H, W\]"):
        DatasetSplits(**parts, **common)  # kind defaults to image
    with pytest.raises(DataError, match=r"features data must be a float \[N, F\]"):
        DatasetSplits(**parts, **common, kind="features")
    with pytest.raises(ConfigError, match="kind: got 'audio'"):
        DatasetSplits(**parts, **common, kind="audio")
    assert DatasetSplits(**parts, **common, kind="signal").length == 10


# --------------------------------------------------------------------------- standardisation


def test_signals_are_standardised_per_channel_with_train_statistics() -> None:
    x, xt = _signals(120), _signals(40, seed=1)
    y, yt = _labels(120), _labels(40)
    s = dataset_from_tensors(x, y, x_test=xt, y_test=yt, val_fraction=0.2)
    # The split is the documented one: val carved from x with the same seed.
    val_idx, train_idx = stratified_indices(y, (0.2,), seed=0)
    raw_train = x[train_idx]
    mean = raw_train.mean(dim=(0, 2))
    std = raw_train.std(dim=(0, 2), unbiased=False)
    stats = s.info["standardization"]
    assert stats["computed_on"] == "train" and stats["per"] == "channel"
    assert torch.allclose(torch.tensor(stats["mean"], dtype=torch.float64), mean, rtol=1e-12)
    assert torch.allclose(torch.tensor(stats["std"], dtype=torch.float64), std, rtol=1e-9)
    # Train: mean 0 and std 1 in every channel.
    z = s.x_train.double()
    assert torch.allclose(z.mean(dim=(0, 2)), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(z.std(dim=(0, 2), unbiased=False), torch.ones(3, dtype=torch.float64))
    # Val and test: (x - mean_train) / std_train, exactly, never their own statistics.
    m = torch.tensor(stats["mean"], dtype=torch.float64).view(1, 3, 1)
    sd = torch.tensor(stats["std"], dtype=torch.float64).view(1, 3, 1)
    assert torch.equal(s.x_val, ((x[val_idx] - m) / sd).float())
    assert torch.equal(s.x_test, ((xt - m) / sd).float())
    assert s.x_test.double().mean(dim=(0, 2)).abs().max() > 1e-3  # not its own statistics
    # to_float has nothing left to do: mean 0, std 1, no / 255.
    assert s.mean == (0.0, 0.0, 0.0) and s.std == (1.0, 1.0, 1.0)
    assert torch.equal(to_float(s.x_val, s.mean, s.std), s.x_val)


def test_features_are_standardised_per_feature() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 4, generator=g) * torch.tensor([1e3, 1.0, 1e-3, 5.0]) + 42.0
    s = dataset_from_tensors(x, _labels(200))
    assert s.kind == "features" and s.info["standardization"]["per"] == "feature"
    z = s.x_train.double()
    assert torch.allclose(z.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(4, dtype=torch.float64), atol=1e-5)
    m = torch.tensor(s.info["standardization"]["mean"], dtype=torch.float64)
    sd = torch.tensor(s.info["standardization"]["std"], dtype=torch.float64)
    assert torch.equal(standardize(x, m, sd), ((x.double() - m) / sd).float())


def test_values_are_not_quantised() -> None:
    x = torch.rand(90, 1, 32, dtype=torch.float64)  # in [0, 1]: the old path made it uint8
    y = _labels(90)
    s = dataset_from_tensors(x, y)
    assert s.kind == "signal" and s.x_train.dtype == torch.float32
    assert torch.unique(s.x_train).numel() > 1000  # 256 levels at most after a uint8 round trip
    _, _, train_idx = stratified_indices(y, (0.2, 0.15), seed=0)  # test, val, train
    stats = s.info["standardization"]
    restored = s.x_train.double() * stats["std"][0] + stats["mean"][0]
    assert (restored - x[train_idx]).abs().max() < 1e-6  # a uint8 step is 1/255


def test_constant_channel_is_not_divided_by_zero() -> None:
    x = torch.randn(60, 3, 10)
    x[:, 1] = 5.0
    s = dataset_from_tensors(x, _labels(60))
    stats = s.info["standardization"]
    assert stats["constant_channels"] == [1] and stats["std"][1] == 1.0
    assert torch.isfinite(s.x_train).all() and torch.all(s.x_train[:, 1] == 0)


# --------------------------------------------------------------------------------------- npz


def test_npz_float_signals_and_features(tmp_path: Path) -> None:
    x, xt = _signals(60).numpy(), _signals(20, seed=5).numpy()
    np.savez(tmp_path / "s.npz", x=x, y=np.arange(60) % 3, x_test=xt, y_test=np.arange(20) % 3)
    s = load_dataset(f"npz:{tmp_path / 's.npz'}")
    assert s.kind == "signal" and s.input_shape == (3, 20) and s.x_test.dtype == torch.float32
    m = torch.tensor(s.info["standardization"]["mean"], dtype=torch.float64).view(1, 3, 1)
    sd = torch.tensor(s.info["standardization"]["std"], dtype=torch.float64).view(1, 3, 1)
    assert torch.equal(s.x_test, ((torch.from_numpy(xt) - m) / sd).float())
    np.savez(tmp_path / "f.npz", x=np.random.default_rng(0).random((50, 6)), y=np.arange(50) % 2)
    f = load_dataset(f"npz:{tmp_path / 'f.npz'}")
    assert f.kind == "features" and f.input_shape == (6,)


def test_npz_kind_array_overrides_the_rule(tmp_path: Path) -> None:
    grey = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "g.npz", x=grey, y=np.arange(40) % 2, kind="image")
    s = load_dataset(f"npz:{tmp_path / 'g.npz'}")
    assert s.kind == "image" and s.x_train.dtype == torch.uint8 and s.channels == 1
    np.savez(tmp_path / "bad.npz", x=grey, y=np.arange(40) % 2, kind="audio")
    with pytest.raises(DataError, match=r"array 'kind' holds .*audio.*allowed: .*image, signal"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")


def test_image_size_is_refused_for_signals(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", x=np.random.default_rng(0).random((30, 1, 9)), y=np.arange(30) % 2)
    with pytest.raises(ConfigError, match=r"image_size: got 4, but .* holds signal data"):
        load_dataset(f"npz:{tmp_path / 's.npz'}", image_size=4)


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "pattern"),
    [
        (torch.rand(10), _labels(10), {}, r"x: shape \(10,\) \(float32\) is not a dataset layout"),
        (torch.rand(4, 1, 2, 3, 3), _labels(4), {}, r"x: shape \(4, 1, 2, 3, 3\) .*allowed: float"),
        (torch.zeros(10, 64, dtype=torch.int64), _labels(10), {}, r"integer \[N, F\].*floats"),
        (torch.rand(10, 2, 8), _labels(9), {}, r"y: 9 labels for 10 samples"),
        (torch.rand(10, 5), _labels(10), {"x_test": torch.rand(4, 6), "y_test": _labels(4)},
         r"x_test has features samples of shape \(6,\) but x has \(5,\)"),
        (torch.rand(10, 0), _labels(10), {}, r"shape \(10, 0\) holds no features data"),
        (np.array([["a", "b"]] * 10), _labels(10), {}, r"x: expected a numeric array, got dtype"),
        (torch.ones(10, 3, dtype=torch.complex64), _labels(10), {"kind": "features"},
         r"dtype torch.complex64 is not features data"),
        (torch.rand(10, 3, 4), _labels(10), {"kind": "features"},
         r"shape \(10, 3, 4\) is not features data; allowed: float feature vectors \[N, F\]"),
    ],
)  # fmt: skip
def test_bad_layouts_get_one_clear_line(x: object, y: object, kwargs: dict, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as info:
        dataset_from_tensors(x, y, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_are_refused(bad: float) -> None:
    x = torch.randn(20, 2, 8)
    x[7, 1, 3] = bad
    with pytest.raises(
        DataError, match=r"x: .*value\(s\) in shape \(20, 2, 8\) \(first in sample 7\)"
    ):
        dataset_from_tensors(x, _labels(20))


# ----------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("shape", [(37, 2, 11), (37, 5)])
def test_device_and_streaming_loaders_serve_float_batches(shape: tuple) -> None:
    x = torch.randn(*shape)
    y = torch.arange(37) % 3
    dev = make_loader((x, y), 8, seed=3)
    stream = make_loader((x, y), 8, seed=3, max_device_bytes=0)
    assert type(dev).__name__ == "DeviceLoader" and type(stream).__name__ == "StreamingLoader"
    for (xa, ya), (xb, yb) in zip(dev.epoch(1), stream.epoch(1), strict=True):
        assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    seen = torch.cat([xb for xb, _ in dev.epoch(0)])
    assert torch.equal(torch.sort(seen.flatten())[0], torch.sort(x.flatten())[0])


def test_loader_takes_the_splits_of_every_kind() -> None:
    s = dataset_from_tensors(torch.randn(50, 2, 6), _labels(50))
    xb, yb = next(iter(make_loader(s, 16, split="val", shuffle=False).epoch(0)))
    assert torch.equal(xb, s.x_val[:16]) and torch.equal(yb, s.y_val[:16])


def test_to_float_on_signals_and_features_does_not_scale_by_255() -> None:
    x = torch.randn(4, 2, 5) * 100
    out = to_float(x, (1.0, -2.0), (2.0, 0.5))
    expected = (x - torch.tensor([1.0, -2.0]).view(1, 2, 1)) / torch.tensor([2.0, 0.5]).view(
        1, 2, 1
    )
    assert torch.allclose(out, expected) and out.data_ptr() != x.data_ptr()
    f = torch.randn(4, 3, dtype=torch.float64)
    assert torch.allclose(to_float(f, (0.0,) * 3, (1.0,) * 3), f.float())
    with pytest.raises(DataError, match=r"float \[B, C, L\] / \[B, F\].*torch.int64 of shape"):
        to_float(torch.zeros(4, 3, dtype=torch.int64), (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(DataError, match=r"got torch.float32 of shape \(4,\)"):
        make_loader((torch.zeros(4), torch.zeros(4, dtype=torch.int64)), 2)


# ------------------------------------------------------------------------- recipe data.kind


def test_recipe_records_and_validates_the_data_kind() -> None:
    assert Recipe().data.kind == "image" and Recipe().to_dict()["data"]["kind"] == "image"
    r = Recipe.from_dict({"data": {"kind": "signal"}})
    assert r.data.kind == "signal" and Recipe.from_dict(r.to_dict()) == r
    with pytest.raises(ConfigError, match=r"data.kind: got 'audio', expected one of 'image'"):
        Recipe.from_dict({"data": {"kind": "audio"}})


def test_reconcile_kind() -> None:
    assert reconcile_kind("image", "signal") == "signal"  # image is the default: takes the data's
    assert reconcile_kind("signal", "signal") == "signal"
    with pytest.raises(DataError, match=r"data.kind: the recipe was made for signal data .* but "):
        reconcile_kind("signal", "features", dataset="dataset 'x'")
    with pytest.raises(DataError, match="made for features data"):
        reconcile_kind("features", "image")


def test_data_kinds_match_the_trick_library() -> None:
    from tricksearch.tricks._base import DATA_KINDS as TRICK_KINDS

    assert DATA_KINDS == TRICK_KINDS
