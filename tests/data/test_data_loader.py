"""The device-resident loader, the streaming loader, normalization and batch augmentations."""

from __future__ import annotations

import pytest
import torch

from tricksearch.data import (
    DeviceLoader,
    StreamingLoader,
    batch_crop,
    batch_flip,
    dataset_from_tensors,
    make_loader,
    to_float,
)
from tricksearch.errors import ConfigError, ConfigTypeError, DataError


def _data(n: int = 103) -> tuple[torch.Tensor, torch.Tensor]:
    x = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return x, torch.arange(n)


def _epoch_labels(loader: DeviceLoader | StreamingLoader, epoch: int) -> list[int]:
    return torch.cat([y for _, y in loader.epoch(epoch)]).tolist()


def test_every_sample_exactly_once_per_epoch() -> None:
    x, y = _data()
    loader = DeviceLoader(x, y, 10)
    assert len(loader) == 11
    batches = list(loader.epoch(0))
    assert [len(b[1]) for b in batches] == [10] * 10 + [3]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(103))
    for xb, yb in batches:
        assert xb.dtype == torch.uint8 and xb.shape[1:] == (1, 2, 2) and yb.dtype == torch.int64
        assert torch.equal(xb[:, 0, 0, 0].long(), yb % 256)  # images stay with their labels


def test_order_depends_on_epoch_and_seed_only() -> None:
    x, y = _data()
    a, b = DeviceLoader(x, y, 16, seed=1), DeviceLoader(x, y, 16, seed=1)
    assert _epoch_labels(a, 0) == _epoch_labels(b, 0)
    assert _epoch_labels(a, 0) != _epoch_labels(a, 1)
    assert _epoch_labels(a, 3) == _epoch_labels(a, 3)
    assert _epoch_labels(a, 0) != _epoch_labels(DeviceLoader(x, y, 16, seed=2), 0)


def test_no_shuffle_and_drop_last() -> None:
    x, y = _data()
    assert _epoch_labels(DeviceLoader(x, y, 10, shuffle=False), 5) == list(range(103))
    loader = DeviceLoader(x, y, 10, drop_last=True)
    assert len(loader) == 10 and len(_epoch_labels(loader, 0)) == 100


def test_loader_arguments_are_checked() -> None:
    x, y = _data()
    with pytest.raises(ConfigError, match="batch_size"):
        DeviceLoader(x, y, 0)
    with pytest.raises(ConfigTypeError, match="shuffle"):
        DeviceLoader(x, y, 4, shuffle="yes")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="uint8"):
        DeviceLoader(x.float(), y, 4)
    with pytest.raises(ConfigError, match="epoch"):
        next(DeviceLoader(x, y, 4).epoch(-1))


def test_streaming_loader_matches_device_loader() -> None:
    x, y = _data()
    dev = DeviceLoader(x, y, 8, seed=4)
    stream = StreamingLoader((x, y), 8, seed=4)
    assert len(stream) == len(dev)
    assert _epoch_labels(stream, 2) == _epoch_labels(dev, 2)
    ds = torch.utils.data.TensorDataset(x, y)
    from_ds = StreamingLoader(ds, 8, seed=4)
    assert _epoch_labels(from_ds, 2) == _epoch_labels(dev, 2)
    xb, _ = next(from_ds.epoch(0))
    assert xb.dtype == torch.uint8 and xb.shape == (8, 1, 2, 2)


def test_make_loader_picks_by_size() -> None:
    x, y = _data()
    splits = dataset_from_tensors(x, y % 3)
    assert isinstance(make_loader(splits, 8), DeviceLoader)
    assert isinstance(make_loader((x, y), 8, max_device_bytes=0), StreamingLoader)
    ds = torch.utils.data.TensorDataset(x, y)
    assert isinstance(make_loader(ds, 8), StreamingLoader)
    val = make_loader(splits, 8, split="val", shuffle=False)
    assert val.num_samples == len(splits.y_val)
    with pytest.raises(ConfigError, match="split"):
        make_loader(splits, 8, split="holdout")


def test_to_float_normalizes_per_channel() -> None:
    x = torch.randint(0, 256, (4, 2, 3, 3), dtype=torch.uint8)
    out = to_float(x, (0.5, 0.25), (0.5, 0.1))
    assert out.dtype == torch.float32 and out.shape == x.shape
    expected = (x.float() / 255 - torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)) / torch.tensor(
        [0.5, 0.1]
    ).view(1, 2, 1, 1)
    assert torch.allclose(out, expected)
    with pytest.raises(ConfigError, match="one value per channel"):
        to_float(x, (0.5,), (0.5,))
    f = torch.rand(2, 1, 3, 3)
    before = f.clone()
    to_float(f, (0.5,), (0.5,))
    assert torch.equal(f, before)  # never normalizes the caller's tensor in place


def test_normalized_training_data_is_standardized() -> None:
    x = torch.randint(0, 200, (50, 3, 4, 4), dtype=torch.uint8)
    s = dataset_from_tensors(x, torch.arange(50) % 2)
    z = to_float(s.x_train, s.mean, s.std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


def test_flip_twice_is_identity_and_p_bounds() -> None:
    x = torch.randint(0, 256, (32, 3, 5, 5), dtype=torch.uint8)
    once = batch_flip(x, torch.Generator().manual_seed(0))
    twice = batch_flip(once, torch.Generator().manual_seed(0))
    assert torch.equal(twice, x) and once.dtype == x.dtype and once.shape == x.shape
    flipped = (once != x).flatten(1).any(1)
    assert 0 < int(flipped.sum()) < 32  # some, not all, samples flipped
    assert torch.equal(batch_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(batch_flip(x, p=0.0), x)


def test_crop_with_zero_padding_is_identity() -> None:
    x = torch.randint(0, 256, (8, 3, 6, 6), dtype=torch.uint8)
    assert torch.equal(batch_crop(x, 0, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_crop_shifts_each_sample_by_at_most_padding(mode: str) -> None:
    pad = 2
    x = torch.randint(1, 256, (40, 2, 7, 9), dtype=torch.uint8)
    out = batch_crop(x, pad, torch.Generator().manual_seed(1), mode=mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    fill = "constant" if mode == "zeros" else "reflect"
    padded = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode=fill).to(torch.uint8)
    shifts = set()
    for i in range(len(x)):
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[i], padded[i, :, dy : dy + 7, dx : dx + 9])
        ]
        assert matches, f"sample {i} is not a shift of its input by <= {pad}"
        shifts.add(matches[0])
    assert len(shifts) > 5  # per-sample offsets, not one shift for the batch


def test_crop_arguments_are_checked() -> None:
    x = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(ConfigError, match="padding=4"):
        batch_crop(x, 4)
    with pytest.raises(ConfigError, match="mode"):
        batch_crop(x, 1, mode="wrap")
    assert batch_crop(x, 4, mode="zeros").shape == x.shape
