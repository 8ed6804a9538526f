"""The unlabelled pool: ``data.unlabeled`` (``imagefolder:PATH``, ``npz:PATH``, tensors) and
``data.labeled_fraction`` (a stratified fraction of the train split's labels kept, the rest of
the train images unlabelled, their labels dropped); the recipe fields and the CLI options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tricksearch.data import _splits, dataset_from_tensors, load_dataset
from tricksearch.errors import ConfigError, DataError
from tricksearch.recipe import Recipe


def _digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(np.rint(bunch.images * 255.0 / 16.0).astype(np.uint8)).unsqueeze(1)
    return x, torch.from_numpy(bunch.target.astype(np.int64))


# --- labeled_fraction ----------------------------------------------------------------------------
def test_labeled_fraction_keeps_a_stratified_fraction_per_class(digits) -> None:
    data = load_dataset("digits", labeled_fraction=0.1)
    assert torch.bincount(digits.y_train).tolist() == [
        115,
        119,
        115,
        118,
        118,
        119,
        118,
        116,
        113,
        117,
    ]
    # round(1168 * 0.9) = 1051 hidden: floor(n_c * 0.9) per class, the 3 left to the largest
    # remainders (classes 8: .7, 0: .5, 2: .5), so those keep 11 and the others 12
    assert torch.bincount(data.y_train).tolist() == [11, 12, 11, 12, 12, 12, 12, 12, 11, 12]
    assert len(data.y_train) == 117 and data.unlabeled_count == 1051
    assert len(data.y_train) + data.unlabeled_count == len(digits.y_train)
    for part in ("x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(data, part), getattr(digits, part)), part
    assert data.info["labeled_fraction"] == 0.1 and "labeled_fraction" not in digits.info
    assert digits.x_unlabeled is None and digits.unlabeled_count == 0
    assert data.summary() == (
        "digits: train 117 (10% of its labels kept), val 270, test 359, unlabeled 1051; "
        "1x8x8 uint8; 10 classes"
    )
    # the kept and the hidden images are the train split's images, each once
    rows = {bytes(r) for r in digits.x_train.flatten(1).numpy()}
    both = torch.cat([data.x_train, data.x_unlabeled]).flatten(1).numpy()
    assert {bytes(r) for r in both} == rows


def test_labeled_fraction_is_deterministic_and_keeps_one_per_class() -> None:
    a = load_dataset("digits", labeled_fraction=0.3, split_seed=4)
    b = dataset_from_tensors(*_digits_arrays(), labeled_fraction=0.3, split_seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert torch.equal(a.x_unlabeled, b.x_unlabeled)
    other = load_dataset("digits", labeled_fraction=0.3, split_seed=5)
    assert not torch.equal(a.y_val, other.y_val)
    tiny = load_dataset("digits", labeled_fraction=0.001)
    assert torch.bincount(tiny.y_train).tolist() == [1] * 10
    assert tiny.unlabeled_count == 1168 - 10
    full = load_dataset("digits", labeled_fraction=1.0)
    assert full.x_unlabeled is None and "labeled_fraction" not in full.info


@pytest.mark.parametrize("bad", [0, 0.0, 1.5, -0.2, float("nan"), "abc", True])
def test_a_bad_labeled_fraction_is_one_line(bad) -> None:
    with pytest.raises((ConfigError, TypeError), match=r"^labeled_fraction: got .*\(0, 1\]"):
        load_dataset("digits", labeled_fraction=bad)
    with pytest.raises((ConfigError, TypeError), match=r"labeled_fraction: got .*\(0, 1\]"):
        dataset_from_tensors(*_digits_arrays(), labeled_fraction=bad)


def test_the_hidden_labels_are_dropped_from_the_splits() -> None:
    """Nothing in the splits holds a hidden label: ``y_train`` is a tensor of its own (not a view
    of all the labels, which ``untyped_storage`` would give back) and no other field has one."""
    data = load_dataset("digits", labeled_fraction=0.2)
    for part in ("y_train", "y_val", "y_test"):
        y = getattr(data, part)
        assert y.untyped_storage().nbytes() == y.numel() * y.element_size(), part
    assert data.x_unlabeled.untyped_storage().nbytes() == data.x_unlabeled.numel()
    labels = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert labels == 1797 - data.unlabeled_count
    assert not any(isinstance(v, torch.Tensor) for v in data.info.values())


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, ...]]:
    """Record the index sets ``stratified_indices`` chooses (train / val / test, then the labels
    kept): which samples are labelled is the labeller's choice, made once."""
    made: list[tuple[torch.Tensor, ...]] = []
    real = _splits.stratified_indices

    def choose(y, fractions, *, seed):
        made.append(real(y, fractions, seed=seed))
        return made[-1]

    monkeypatch.setattr(_splits, "stratified_indices", choose)
    return made


def _replaying(made: list[tuple[torch.Tensor, ...]]):
    calls = iter(made)
    return lambda y, fractions, *, seed: next(calls)


@pytest.mark.parametrize("trick", [None, "fixmatch"])
def test_training_never_reads_the_hidden_labels(monkeypatch, trick) -> None:
    """Load the same images twice, the second time with every hidden label set to another class:
    the splits and a short training (the baseline, and a semi-supervised trick that uses the
    pool) give identical numbers. Choosing which labels to keep reads the labels (stratified:
    it counts each class); that choice is replayed, so only the hidden labels differ."""
    from tricksearch.engine import fit

    x, y = _digits_arrays()
    made = _recording(monkeypatch)
    a = dataset_from_tensors(x, y, labeled_fraction=0.1, split_seed=2)
    (_, _, train_idx), (hidden, kept) = made
    hidden_pos = train_idx[hidden]
    assert len(hidden_pos) == a.unlabeled_count and len(kept) == len(a.y_train)
    garbage = y.clone()
    garbage[hidden_pos] = (y[hidden_pos] + 1) % 10  # every hidden label is wrong
    monkeypatch.setattr(_splits, "stratified_indices", _replaying(made))
    b = dataset_from_tensors(x, garbage, labeled_fraction=0.1, split_seed=2)
    for part in ("x_train", "y_train", "x_unlabeled", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, part), getattr(b, part)), part
    assert (a.mean, a.std) == (b.mean, b.std)
    section = {"semi": {trick: {}}} if trick else {}
    recipe = Recipe.from_dict(
        {"budget": {"epochs": 2, "batch_size": 32}, "runtime": {"threads": 1}, **section}
    )
    torch.set_num_threads(1)
    ra, rb = fit(recipe, data=a), fit(recipe, data=b)
    assert [m.as_dict() | {"epoch_seconds": 0} for m in ra.history] == [
        m.as_dict() | {"epoch_seconds": 0} for m in rb.history
    ]
    assert (ra.val_acc, ra.val_loss) == (rb.val_acc, rb.val_loss)


# --- the pool from files and tensors --------------------------------------------------------------
def _png(path: Path, size: tuple[int, int], mode: str, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, size, color).save(path)


def _image_pool(root: Path) -> Path:
    _png(root / "a.png", (8, 8), "L", 10)
    _png(root / "deeper" / "b.png", (16, 12), "RGB", 200)  # resized, turned grey
    _png(root / "deeper" / "more" / "c.png", (8, 8), "L", 90)
    (root / "notes.txt").write_text("not an image: ignored")
    return root


def test_an_imagefolder_pool_needs_no_class_folders(tmp_path) -> None:
    pool = _image_pool(tmp_path / "pool")
    data = load_dataset("digits", unlabeled=f"imagefolder:{pool}")
    assert data.x_unlabeled.shape == (3, 1, 8, 8) and data.x_unlabeled.dtype == torch.uint8
    assert data.x_unlabeled[0].unique().tolist() == [10]  # sorted: a.png, deeper/b, deeper/more/c
    assert data.x_unlabeled[2].unique().tolist() == [90]
    assert data.info["unlabeled"] == {"source": f"imagefolder:{pool}", "count": 3}
    assert data.summary().endswith("test 359, unlabeled 3; 1x8x8 uint8; 10 classes")
    both = load_dataset("digits", unlabeled=f"imagefolder:{pool}", labeled_fraction=0.5)
    assert both.unlabeled_count == 3 + (1168 - len(both.y_train))
    assert torch.equal(both.x_unlabeled[:3], data.x_unlabeled)  # the pool first, then train's


def test_an_unreadable_pool_image_is_one_line_or_skipped(tmp_path) -> None:
    pool = _image_pool(tmp_path / "pool")
    (pool / "broken.png").write_bytes(b"\x89PNG not really")
    spec = f"imagefolder:{pool}"
    with pytest.raises(DataError) as err:
        load_dataset("digits", unlabeled=spec)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"unlabeled {spec!r}: cannot read image")
    assert "broken.png" in line and "--skip-corrupt" in line
    data = load_dataset("digits", unlabeled=spec, skip_corrupt=True)
    assert data.unlabeled_count == 3
    assert data.info["skipped_files"] == [str(pool / "broken.png")] and data.info["n_skipped"] == 1


def test_an_npz_pool_and_its_errors(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u.npz", x_unlabeled=rng.integers(0, 255, (5, 8, 8), dtype=np.uint8))
    data = load_dataset("digits", unlabeled=f"npz:{tmp_path / 'u.npz'}")
    assert data.x_unlabeled.shape == (5, 1, 8, 8)
    np.savez(tmp_path / "rgb.npz", x_unlabeled=np.zeros((5, 3, 8, 8), dtype=np.uint8))
    np.savez(tmp_path / "none.npz", x=np.zeros((5, 8, 8), dtype=np.uint8))
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    cases = {
        "rgb.npz": "array 'x_unlabeled': image samples of shape (3, 8, 8), but dataset 'digits' "
        "has (1, 8, 8) (C, H, W); expected the same shape (channels and size)",
        "none.npz": "no array x_unlabeled in",
        "bad.npz": "cannot read",
        "gone.npz": "does not exist",
    }
    for name, expected in cases.items():
        spec = f"npz:{tmp_path / name}"
        with pytest.raises(DataError) as err:
            load_dataset("digits", unlabeled=spec)
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"unlabeled {spec!r}: ") and expected in line


def test_bad_pool_forms_are_refused() -> None:
    for spec in ("pool/", "npz:", "tar:x.tar"):
        with pytest.raises(ConfigError, match=r"^unlabeled: got .* expected imagefolder:PATH"):
            load_dataset("digits", unlabeled=spec)
    with pytest.raises(DataError, match="is not a directory; expected a folder of images"):
        load_dataset("digits", unlabeled="imagefolder:/no/such/folder")


def test_a_pool_from_tensors_is_standardised_like_train() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g) * 3 + 5
    y = torch.arange(80) % 2
    data = dataset_from_tensors(x, y, x_unlabeled=x[:7].double())
    stats = data.info["standardization"]
    mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    assert data.x_unlabeled.dtype == torch.float32 and data.unlabeled_count == 7
    assert torch.allclose(data.x_unlabeled, ((x[:7].double() - mean) / std).float(), atol=1e-6)
    with pytest.raises(DataError, match=r"x_unlabeled: features samples of shape \(5,\)"):
        dataset_from_tensors(x, y, x_unlabeled=torch.zeros(3, 5))
    with pytest.raises(DataError, match="a folder of images cannot be the pool"):
        dataset_from_tensors(x, y, x_unlabeled="imagefolder:/tmp")


# --- recipe, API and CLI -------------------------------------------------------------------------
def test_recipe_fields_round_trip_and_old_recipes_stay_identical(tmp_path) -> None:
    old = Recipe().dumps()
    assert "unlabeled" not in old and "labeled_fraction" not in old
    assert Recipe.loads(old).dumps() == old
    raw = {"data": {"unlabeled": "npz:/data/pool.npz", "labeled_fraction": 0.25}}
    recipe = Recipe.from_dict(raw)
    assert (recipe.data.unlabeled, recipe.data.labeled_fraction) == ("npz:/data/pool.npz", 0.25)
    recipe.save(tmp_path / "r.yaml")
    text = (tmp_path / "r.yaml").read_text()
    assert "  unlabeled: npz:/data/pool.npz\n  labeled_fraction: 0.25\n" in text
    again = Recipe.loads(text)
    assert again == recipe and again.dumps() == text
    assert Recipe.from_dict(again.to_dict()) == recipe
    with pytest.raises(ConfigError, match=r"^data.labeled_fraction: got 0.0, expected a number "):
        Recipe.from_dict({"data": {"labeled_fraction": 0}})
    with pytest.raises(ConfigError, match=r"^data.unlabeled: got 'pool', expected imagefolder"):
        Recipe.from_dict({"data": {"unlabeled": "pool"}})


def test_train_from_python_with_tensors_and_a_pool() -> None:
    import tricksearch

    x, y = _digits_arrays()
    recipe = {"data": {"labeled_fraction": 0.5}, "budget": {"epochs": 1}, "runtime": {"threads": 1}}
    metrics = tricksearch.train(recipe, dataset=(x, y), unlabeled=x[:20])
    assert 0.0 <= metrics["val_acc"] <= 1.0
    with pytest.raises(TypeError, match="an array pool goes with data given as tensors"):
        tricksearch.train(recipe, dataset="digits", unlabeled=x[:20])


def test_cli_train_with_a_labeled_fraction(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, text, err = cli(
        "train", "--labeled-fraction", "0.1", "--epochs", "1", "--threads", "1", "--out", str(out)
    )
    assert code == 0, err
    summary = (
        "data: digits: train 117 (10% of its labels kept), val 270, test 359, unlabeled 1051; "
        "1x8x8 uint8; 10 classes"
    )
    assert summary in text.splitlines()
    assert "  labeled_fraction: 0.1\n" in (out / "recipe.yaml").read_text()
    code, text, err = cli("train", "--recipe", str(out / "recipe.yaml"), "--epochs", "1")
    assert code == 0 and summary in text.splitlines()


def test_cli_bad_labeled_fraction_message(capsys) -> None:
    from tricksearch.cli import main

    for command in ("train", "search"):
        for value, shown in (("0", "0"), ("1.5", "1.5"), ("abc", "'abc'")):
            with pytest.raises(SystemExit) as exc:
                main([command, "--labeled-fraction", value])
            err = capsys.readouterr().err
            assert exc.value.code == 2 and err.count("\n") == 1
            assert f"argument --labeled-fraction: got {shown}, expected a number in (0, 1]" in err
    code = main(["train", "--unlabeled", "pool", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: data.unlabeled: got 'pool', expected imagefolder:PATH")


def test_cli_search_puts_the_options_in_the_base_recipe(cli, monkeypatch, tmp_path) -> None:
    from tricksearch.tuning import _runner
    from tricksearch.tuning._prepare import base_recipe

    seen = []
    monkeypatch.setattr(_runner, "run_search", lambda config, **kw: seen.append(config))
    pool = _image_pool(tmp_path / "pool")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(
        "search", "--unlabeled", "imagefolder:pool", "--labeled-fraction", "0.2", "--out", "run"
    )
    assert code == 0, err
    (config,) = seen
    assert (config.unlabeled, config.labeled_fraction) == ("imagefolder:pool", 0.2)
    data = base_recipe(config).data
    assert (data.unlabeled, data.labeled_fraction) == (f"imagefolder:{pool}", 0.2)  # absolute


def test_a_resumed_search_refuses_other_pool_options(cli, tmp_path) -> None:
    from tricksearch.tuning import SearchConfig

    run = tmp_path / "run"
    run.mkdir()
    SearchConfig(trials=4, epochs=2, labeled_fraction=0.1, out=str(run)).save(run / "search.json")
    assert SearchConfig.load(run).labeled_fraction == 0.1
    for option, value in (("--labeled-fraction", "0.5"), ("--unlabeled", "npz:u.npz")):
        code, _, err = cli("search", "--resume", str(run), option, value)
        assert code == 2 and err.count("\n") == 1
        assert f"{option} cannot change a search being resumed" in err
