"""Dataset sources: digits, fashion-mnist IDX files, npz, imagefolder, torchvision folders."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tricksearch.data import clear_dataset_cache, list_datasets, load_dataset
from tricksearch.errors import ConfigError, ConfigTypeError, DataError

IDX_FILES = {
    "train-images-idx3-ubyte": ("images", 0),
    "train-labels-idx1-ubyte": ("labels", 0),
    "t10k-images-idx3-ubyte": ("images", 1),
    "t10k-labels-idx1-ubyte": ("labels", 1),
}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_dataset_cache()


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(
        struct.pack(">I", d) for d in arr.shape
    )
    return header + arr.astype(np.uint8).tobytes()


def _write_fashion(root: Path, *, gz: bool = True, n: tuple[int, int] = (60, 20)) -> dict:
    rng = np.random.default_rng(0)
    data = {}
    for part, count in enumerate(n):
        data[("images", part)] = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        data[("labels", part)] = (np.arange(count) % 10).astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for stem, key in IDX_FILES.items():
        payload = _idx_bytes(data[key])
        if gz:
            (root / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (root / stem).write_bytes(payload)
    return data


def test_list_datasets_names_every_source() -> None:
    names = list_datasets()
    for key in ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "svhn"):
        assert names.get(key)
    assert "imagefolder:PATH" in names and "npz:PATH" in names


def test_digits_shapes_dtypes_and_cache() -> None:
    s = load_dataset("digits")
    assert s.x_train.shape[1:] == (1, 8, 8) and s.x_train.dtype == torch.uint8
    assert s.y_train.dtype == torch.int64 and s.num_classes == 10
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 1797
    assert int(s.x_train.max()) == 255  # 16 -> 255
    assert load_dataset("digits") is s  # cached in-process
    assert load_dataset("digits", split_seed=1) is not s


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ConfigError, match=r"digits.*fashion-mnist.*imagefolder:PATH.*npz:PATH"):
        load_dataset("cifar11")
    with pytest.raises(ConfigTypeError):
        load_dataset(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path: Path, gz: bool) -> None:
    data = _write_fashion(tmp_path, gz=gz)
    s = load_dataset("fashion-mnist", data_root=tmp_path, val_fraction=0.1)
    assert s.x_train.shape[1:] == (1, 28, 28) and s.classes[0] == "T-shirt/top"
    assert torch.equal(s.x_test[:, 0], torch.from_numpy(data[("images", 1)]))  # official test
    assert len(s.y_train) + len(s.y_val) == 60 and len(s.y_val) == 6
    assert s.info["official_test"] and s.info["source"] == str(tmp_path)


def test_fashion_mnist_torchvision_layout(tmp_path: Path) -> None:
    _write_fashion(tmp_path / "FashionMNIST" / "raw")
    assert load_dataset("fashion-mnist", data_root=tmp_path).num_classes == 10


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-root" in msg
    assert "train-images-idx3-ubyte.gz" in msg


def test_partial_fashion_mnist_names_missing_file(tmp_path: Path) -> None:
    _write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", data_root=tmp_path)


def test_corrupt_idx_names_the_file(tmp_path: Path) -> None:
    _write_fashion(tmp_path)
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 20))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: bad magic number"):
        load_dataset("fashion-mnist", data_root=tmp_path)
    good = _idx_bytes(np.zeros(60, dtype=np.uint8))
    bad.write_bytes(gzip.compress(good[:-5]))  # truncated payload
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: header says shape \(60,\)"):
        load_dataset("fashion-mnist", data_root=tmp_path)


def test_mnist_from_torchvision_layout(tmp_path: Path) -> None:
    _write_fashion(tmp_path / "MNIST" / "raw", gz=False)
    s = load_dataset("mnist", data_root=tmp_path)
    assert s.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mnist", "MNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("svhn", "train_32x32.mat"),
    ],
)
def test_missing_torchvision_dataset_says_what_is_expected(
    tmp_path: Path, name: str, expected: str
) -> None:
    for root in (None, tmp_path):
        with pytest.raises(DataError) as err:
            load_dataset(name, data_root=root)
        msg = str(err.value)
        assert expected in msg and "--data-root" in msg and "download=True" in msg
        assert "network" in msg


def test_npz_round_trip_nchw(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 3, 5, 6), dtype=np.uint8)
    y = np.repeat([3, 7, 9, 11], 10)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    s = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert s.classes == ["3", "7", "9", "11"] and s.image_size == (5, 6)
    all_x = torch.cat([s.x_train, s.x_val, s.x_test])
    all_y = torch.cat([s.y_train, s.y_val, s.y_test])
    assert sorted(map(bytes, all_x.numpy())) == sorted(map(bytes, x))
    assert sorted(all_y.tolist()) == sorted((np.searchsorted([3, 7, 9, 11], y)).tolist())


def test_npz_nhwc_float_and_test_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((30, 4, 4, 3)).astype(np.float32)
    xt = rng.random((10, 4, 4, 3)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(30) % 3, x_test=xt, y_test=np.arange(10) % 3)
    s = load_dataset(f"npz:{tmp_path / 'f.npz'}")
    assert s.x_test.shape == (10, 3, 4, 4) and s.x_test.dtype == torch.uint8
    expected = torch.from_numpy(np.rint(xt * 255).astype(np.uint8)).permute(0, 3, 1, 2)
    assert torch.equal(s.x_test, expected)


def test_npz_errors_name_key_and_shape(tmp_path: Path) -> None:
    np.savez(tmp_path / "nokey.npz", x=np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(DataError, match=r"missing array\(s\) y"):
        load_dataset(f"npz:{tmp_path / 'nokey.npz'}")
    np.savez(tmp_path / "flat.npz", x=np.zeros((4, 64), np.uint8), y=np.zeros(4))
    with pytest.raises(DataError, match=r"array 'x': shape \(4, 64\)"):
        load_dataset(f"npz:{tmp_path / 'flat.npz'}")
    np.savez(tmp_path / "lab.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"array 'y'.*shape \(4, 2\)"):
        load_dataset(f"npz:{tmp_path / 'lab.npz'}")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def _png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 100) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)


def _tree(root: Path, *, color: bool = False) -> None:
    for cls in ("cat", "dog"):
        for i in range(5):
            _png(root / cls / f"{i}.png", (6, 4), "L", value=10 * i)
    if color:
        _png(root / "dog" / "rgb.png", (12, 8), "RGB")
    (root / "dog" / "notes.txt").write_text("not an image")  # ignored, as ImageFolder does


def test_imagefolder_grayscale_and_resize(tmp_path: Path) -> None:
    _tree(tmp_path)
    s = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, test_fraction=0.2)
    assert s.classes == ["cat", "dog"] and s.channels == 1 and s.image_size == (4, 6)
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 10
    s = load_dataset(f"imagefolder:{tmp_path}", image_size=5)
    assert s.image_size == (5, 5)


def test_imagefolder_mixed_modes_become_rgb(tmp_path: Path) -> None:
    _tree(tmp_path, color=True)
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.channels == 3 and s.image_size == (4, 6)  # first image sets the size


def test_imagefolder_corrupt_file(tmp_path: Path) -> None:
    _tree(tmp_path)
    bad = tmp_path / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png"):
        load_dataset(f"imagefolder:{tmp_path}")
    s = load_dataset(f"imagefolder:{tmp_path}", skip_corrupt=True)
    assert s.info["n_skipped"] == 1 and s.info["skipped_files"] == [str(bad)]
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 10


def test_imagefolder_empty_or_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(f"imagefolder:{tmp_path}")
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")


def test_image_size_resizes_registered_datasets() -> None:
    s = load_dataset("digits", image_size=12)
    assert s.image_size == (12, 12) and s.x_val.shape[2:] == (12, 12)


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian_package() -> None:
    s = load_dataset("fashion-mnist")
    assert len(s.y_train) + len(s.y_val) == 60000 and len(s.y_test) == 10000
    assert s.image_size == (28, 28) and torch.all(s.class_counts() == 5100)
    assert abs(s.mean[0] - 0.286) < 0.001 and abs(s.std[0] - 0.353) < 0.001


def test_imagefolder_with_train_and_test_folders_keeps_its_test_split(tmp_path: Path) -> None:
    _tree(tmp_path / "train")
    for i in range(3):
        _png(tmp_path / "test" / "dog" / f"t{i}.png", (6, 4), "L", value=200 + i)
    _png(tmp_path / "test" / "cat" / "t.png", (12, 8), "L", value=7)  # resized to the train size
    s = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2)
    assert s.classes == ["cat", "dog"]  # not ["test", "train"]
    assert s.info["official_test"] and len(s.y_train) + len(s.y_val) == 10
    assert sorted(s.y_test.tolist()) == [0, 1, 1, 1]
    assert s.x_test.shape == (4, 1, 4, 6)
    # the test images are exactly the files of test/ (values 200..202 and 7), none of train/
    assert sorted(int(v) for v in s.x_test[:, 0, 0, 0]) == [7, 200, 201, 202]


def test_imagefolder_with_train_and_val_folders_holds_val_out(tmp_path: Path) -> None:
    _tree(tmp_path / "train")
    _png(tmp_path / "val" / "cat" / "v.png", (6, 4), "L", value=99)
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert s.info["official_test"] and s.y_test.tolist() == [0] and int(s.x_test[0, 0, 0, 0]) == 99
    # train + val + test: val joins the training data, test is held out
    _png(tmp_path / "test" / "dog" / "t.png", (6, 4), "L", value=201)
    clear_dataset_cache()  # the files changed on disk
    s = load_dataset(f"imagefolder:{tmp_path}")
    assert len(s.y_train) + len(s.y_val) == 11 and s.y_test.tolist() == [1]


def test_imagefolder_held_out_class_missing_from_train_is_refused(tmp_path: Path) -> None:
    _tree(tmp_path / "train")
    _png(tmp_path / "test" / "bird" / "t.png", (6, 4))
    with pytest.raises(DataError, match=r"class folder\(s\) bird.*expected the training classes"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_imagefolder_classes_named_like_splits_stay_classes(tmp_path: Path) -> None:
    # two classes that happen to be called train and val hold images, not class folders
    for cls in ("train", "val"):
        for i in range(4):
            _png(tmp_path / cls / f"{i}.png", (6, 4))
    s = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.25, test_fraction=0.25)
    assert s.classes == ["train", "val"] and not s.info["official_test"]


def test_imagefolder_with_only_a_train_folder_uses_its_classes(tmp_path: Path) -> None:
    _tree(tmp_path / "train")
    s = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, test_fraction=0.2)
    assert s.classes == ["cat", "dog"] and not s.info["official_test"]
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 10


def test_imagefolder_unlabelled_test_folder_is_refused(tmp_path: Path) -> None:
    _tree(tmp_path / "train")
    _png(tmp_path / "test" / "0001.png", (6, 4))  # a Kaggle-style test folder: no labels
    with pytest.raises(DataError, match=r"test has no class folders.*expected test/CLASS/"):
        load_dataset(f"imagefolder:{tmp_path}")
