"""Splits: disjoint, covering, deterministic, stratified; fractions checked; tensor input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tricksearch.data import DatasetSplits, dataset_from_tensors
from tricksearch.errors import ConfigError, ConfigTypeError, DataError


def _coded(n: int, num_classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [n, 1, 1, 2] whose two pixels encode the sample's index; unbalanced labels."""
    idx = torch.arange(n)
    x = torch.stack([idx // 256, idx % 256], dim=1).to(torch.uint8).view(n, 1, 1, 2)
    gen = torch.Generator().manual_seed(seed)
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1])[:num_classes]
    y = torch.multinomial(probs, n, replacement=True, generator=gen)
    return x, y


def _ids(x: torch.Tensor) -> set[int]:
    flat = x.view(len(x), 2).long()
    return set((flat[:, 0] * 256 + flat[:, 1]).tolist())


def test_splits_are_disjoint_and_cover_everything() -> None:
    x, y = _coded(1000)
    s = dataset_from_tensors(x, y, val_fraction=0.15, test_fraction=0.2, split_seed=3)
    train, val, test = _ids(s.x_train), _ids(s.x_val), _ids(s.x_test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(1000))
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 1000
    assert abs(len(test) - 200) <= 4 and abs(len(val) - 150) <= 4


def test_splits_keep_labels_with_their_images() -> None:
    x, y = _coded(300)
    s = dataset_from_tensors(x, y, split_seed=1)
    for xs, ys in ((s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)):
        flat = xs.view(len(xs), 2).long()
        assert torch.equal(y[flat[:, 0] * 256 + flat[:, 1]], ys)


def test_splits_are_deterministic_and_depend_on_the_seed() -> None:
    x, y = _coded(500)
    a = dataset_from_tensors(x, y, split_seed=7)
    b = dataset_from_tensors(x, y, split_seed=7)
    c = dataset_from_tensors(x, y, split_seed=8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert _ids(a.x_test) != _ids(c.x_test)


def test_splits_are_stratified() -> None:
    x, y = _coded(2000)
    s = dataset_from_tensors(x, y, val_fraction=0.2, test_fraction=0.25)
    overall = torch.bincount(y, minlength=4).float() / len(y)
    for part in (s.y_train, s.y_val, s.y_test):
        share = torch.bincount(part, minlength=4).float() / len(part)
        assert torch.allclose(share, overall, atol=0.01)


def test_every_class_keeps_a_training_sample() -> None:
    x = torch.zeros(7, 1, 2, 2, dtype=torch.uint8)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1])  # class 1 has one sample
    s = dataset_from_tensors(x, y, val_fraction=0.3, test_fraction=0.3)
    assert 1 in s.y_train.tolist()


def test_official_test_set_is_used_and_test_fraction_ignored() -> None:
    x, y = _coded(100)
    xt, yt = _coded(30, seed=5)
    s = dataset_from_tensors(x, y, x_test=xt, y_test=yt, val_fraction=0.5, test_fraction=0.6)
    assert torch.equal(s.x_test, xt) and torch.equal(s.y_test, yt)
    assert len(s.y_train) + len(s.y_val) == 100
    assert s.info["official_test"] and s.info["test_fraction"] is None


def test_dataset_fields_and_statistics() -> None:
    x = torch.randint(0, 256, (64, 3, 4, 5), dtype=torch.uint8)
    y = torch.arange(64) % 4
    s = dataset_from_tensors(x, y, name="toy")
    assert isinstance(s, DatasetSplits)
    assert s.channels == 3 and s.image_size == (4, 5) and s.num_classes == 4
    assert s.classes == ["0", "1", "2", "3"]
    assert s.x_train.dtype == torch.uint8 and s.y_train.dtype == torch.int64
    expected = (s.x_train.double() / 255).mean(dim=(0, 2, 3))
    assert np.allclose(s.mean, expected.numpy())
    expected_std = (s.x_train.double() / 255).permute(1, 0, 2, 3).reshape(3, -1).std(1, False)
    assert np.allclose(s.std, expected_std.numpy())
    counts = s.class_counts()
    assert counts.dtype == torch.float32 and counts.sum() == len(s.y_train)
    assert "toy" in s.summary() and "x_train" not in repr(s)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"split_seed": -1}, "split_seed"),
    ],
)
def test_bad_fractions_are_refused_naming_the_field(kwargs: dict, field: str) -> None:
    x, y = _coded(50)
    with pytest.raises(ConfigError, match=field.replace("+", r"\+")):
        dataset_from_tensors(x, y, **kwargs)


def test_fraction_of_wrong_type_is_a_type_error() -> None:
    x, y = _coded(50)
    with pytest.raises(ConfigTypeError, match="val_fraction"):
        dataset_from_tensors(x, y, val_fraction="0.1")  # type: ignore[arg-type]


def test_tensor_input_layouts_and_errors() -> None:
    nhwc = np.random.default_rng(0).integers(0, 256, (10, 6, 5, 3), dtype=np.uint8)
    s = dataset_from_tensors(nhwc, np.arange(10) % 2, val_fraction=0.0, test_fraction=0.2)
    assert s.x_train.shape[1:] == (3, 6, 5)
    # Float 3-D arrays are signals [N, C, L] and float 2-D ones feature vectors (see
    # test_data_kinds.py); kind="image" keeps reading them as grey images [N, H, W].
    floats = torch.rand(10, 8, 8)
    s = dataset_from_tensors(floats, torch.arange(10) % 2, kind="image")
    assert s.channels == 1 and s.x_train.dtype == torch.uint8
    with pytest.raises(DataError, match=r"labels must lie in 0..1"):
        dataset_from_tensors(floats, torch.arange(10) % 3, num_classes=2, kind="image")
    with pytest.raises(DataError, match=r"shape \(10, 64\)"):
        dataset_from_tensors(torch.zeros(10, 64), torch.zeros(10), kind="image")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        dataset_from_tensors(torch.full((10, 8, 8), 2.0), torch.zeros(10), kind="image")
    with pytest.raises(DataError, match="9 labels for 10 images"):
        dataset_from_tensors(torch.zeros(10, 8, 8), torch.zeros(9), kind="image")
