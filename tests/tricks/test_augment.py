"""Tests of the ``augment`` family: declarations, batched maths, per-sample policies, builders."""

from __future__ import annotations

import pytest
import torch

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import augment as A
from tricksearch.tricks import tricks_in_family

SPECS = tricks_in_family("augment")
POLICIES = {
    "autoaugment": {"policy": "cifar10"},
    "randaugment": {"num_ops": 2, "magnitude": 9},
    "trivialaugment": {},
    "augmix": {},
}


def _images(b: int, c: int, s: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, s, s), dtype=torch.uint8, generator=g)


# ------------------------------------------------------------------------------- declarations


def test_family_is_complete() -> None:
    assert set(SPECS) == {
        "hflip",
        "random_crop",
        "cutout",
        "random_erasing",
        "autoaugment",
        "randaugment",
        "trivialaugment",
        "augmix",
        "multiscale",
    }
    assert {n for n, s in SPECS.items() if s.group == "policy"} == set(POLICIES)
    assert SPECS["multiscale"].needs_adaptive_pool


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_defaults_and_search_ranges_validate(name: str) -> None:
    spec = SPECS[name]
    assert spec.validate({}, f"augment.{name}") == spec.defaults()
    for p in spec.params:
        s = p.search
        assert s is not None, f"{name}.{p.name} has no search range"
        if s.choices is not None:
            for c in s.choices:
                p.validate(c, "x")
        else:
            p.validate(s.low if p.kind != "int" else int(s.low), "x")
            p.validate(s.high if p.kind != "int" else int(s.high), "x")


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("random_crop", "padding", 0),
        ("random_crop", "padding", 5),
        ("cutout", "size", 0.6),
        ("cutout", "size", -0.1),
        ("random_erasing", "prob", 0.7),
        ("autoaugment", "policy", "mnist"),
        ("randaugment", "num_ops", 4),
        ("randaugment", "magnitude", 31),
        ("randaugment", "magnitude", 0),
        ("multiscale", "scales", [1.0, 5.0]),
        ("multiscale", "scales", [0.1]),
        ("multiscale", "every_epochs", 0),
        ("multiscale", "every_epochs", 6),
    ],
)
def test_out_of_range_is_refused_naming_the_field(name: str, param: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"augment\.{name}\.{param}"):
        A.build_augment({name: {param: bad}}, channels=3, image_size=(32, 32))


def test_wrong_types_and_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigTypeError, match=r"random_crop.padding"):
        A.build_augment({"random_crop": {"padding": 2.5}}, channels=3, image_size=(32, 32))
    with pytest.raises(ConfigTypeError, match=r"multiscale.scales"):
        A.build_multiscale({"multiscale": {"scales": 1.0}}, seed=0)
    with pytest.raises(ConfigError, match=r"augment\.vflip: unknown trick.*hflip"):
        A.build_augment({"vflip": {}}, channels=3, image_size=(32, 32))
    with pytest.raises(ConfigError, match=r"hflip.p: unknown parameter"):
        A.build_augment({"hflip": {"p": 0.5}}, channels=3, image_size=(32, 32))


def test_multiscale_search_choices_are_lists_of_scales() -> None:
    p = SPECS["multiscale"].param("scales")
    for choice in p.search.choices:
        assert p.validate(choice, "x") == [float(v) for v in choice]
    hash(p.search)  # tuples of tuples: the frozen spec stays hashable


# ------------------------------------------------------------------------------- off


def test_off_returns_none() -> None:
    assert A.build_augment({}, channels=1, image_size=(8, 8)) is None
    assert A.build_multiscale({}, seed=0) is None
    # multiscale alone is not a uint8 augmentation
    assert A.build_augment({"multiscale": {}}, channels=1, image_size=(8, 8)) is None
    # `false` reads as off, as in a recipe file
    assert A.build_augment({"hflip": False}, channels=1, image_size=(8, 8)) is None
    assert A.build_multiscale({"multiscale": False}, seed=0) is None


# ------------------------------------------------------------------------------- batched maths


def test_flip_mirrors_some_samples_exactly() -> None:
    torch.manual_seed(0)
    x = _images(64, 3, 8)
    y = A.build_augment({"hflip": {}}, channels=3, image_size=(8, 8))(x, 0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(64)])
    kept = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert bool((flipped | kept).all())
    assert 10 < int(flipped.sum()) < 54


def test_crop_is_a_per_sample_translation_with_reflect_fill() -> None:
    torch.manual_seed(0)
    pad = 2
    x = _images(32, 3, 8)
    y = A.build_augment({"random_crop": {"padding": pad}}, channels=3, image_size=(8, 8))(x, 0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    padded = torch.nn.functional.pad(x.float(), (pad,) * 4, mode="reflect").to(torch.uint8)
    offsets = set()
    for i in range(32):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(y[i], padded[i, :, dy : dy + 8, dx : dx + 8])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 5  # independent offsets per sample


def test_cutout_mask_area_is_exact_away_from_the_border() -> None:
    centre = torch.tensor([16, 3, 0])
    mask = A.cutout_mask(32, 32, 8, centre, centre)
    assert mask.shape == (3, 32, 32)
    assert mask[0].sum() == 64  # full square
    assert mask[0, 12:20, 12:20].all()
    assert mask[1].sum() == 7 * 7  # rows/cols -1..6 clipped to 0..6
    assert mask[2].sum() == 4 * 4


def test_cutout_zeroes_the_right_area_fraction() -> None:
    torch.manual_seed(0)
    b, s, size = 512, 32, 0.25
    x = torch.full((b, 3, s, s), 255, dtype=torch.uint8)
    y = A.cutout_batch(x, size)
    assert y.shape == x.shape and y.dtype == torch.uint8
    side = A.cutout_side(size, s, s)
    assert side == 8
    zeroed = (y == 0).all(1).flatten(1).sum(1).float()  # every channel zeroed together
    assert bool(((y == 0).any(1) == (y == 0).all(1)).all())
    assert zeroed.max() == side * side and zeroed.min() >= (side // 2) ** 2
    # expected clipped area for a uniform centre: (E[clipped run of 8 in 32])^2
    run = torch.tensor([min(c + 4, s) - max(c - 4, 0) for c in range(s)], dtype=torch.float)
    assert zeroed.mean() / (s * s) == pytest.approx(float(run.mean()) ** 2 / (s * s), rel=0.05)


def test_cutout_size_zero_is_identity() -> None:
    x = _images(4, 3, 8)
    assert torch.equal(A.cutout_batch(x, 0.0), x)


def test_random_erasing_prob_zero_is_identity_and_positive_erases() -> None:
    torch.manual_seed(0)
    x = _images(16, 3, 32) | 1
    aug = A.build_augment({"random_erasing": {"prob": 0.0}}, channels=3, image_size=(32, 32))
    assert aug is None or torch.equal(aug(x, 0), x)
    aug = A.build_augment({"random_erasing": {"prob": 0.5}}, channels=3, image_size=(32, 32))
    assert aug is not None
    y = aug(x, 0)
    assert y.shape == x.shape and y.dtype == torch.uint8
    erased = (y == 0).flatten(1).any(1)
    assert 0 < int(erased.sum()) < 16
    frac = (y[erased] == 0).flatten(1).float().mean(1)
    assert bool((frac >= 0.02 - 1e-6).all()) and bool((frac <= 0.34).all())


# ------------------------------------------------------------------------------- policies


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("side", [8, 32])
def test_policy_keeps_shape_and_dtype(name: str, channels: int, side: int) -> None:
    torch.manual_seed(0)
    aug = A.build_augment({name: POLICIES[name]}, channels=channels, image_size=(side, side))
    assert aug is not None
    x = _images(6, channels, side)
    for epoch in range(3):
        y = aug(x, epoch)
        assert y.shape == x.shape and y.dtype == torch.uint8


@pytest.mark.parametrize("policy", ["cifar10", "imagenet", "svhn"])
def test_every_autoaugment_policy_runs_on_grayscale_8x8(policy: str) -> None:
    torch.manual_seed(0)
    aug = A.build_augment({"autoaugment": {"policy": policy}}, channels=1, image_size=(8, 8))
    x = _images(64, 1, 8)
    assert aug(x, 0).shape == x.shape


def test_randaugment_extremes_run() -> None:
    torch.manual_seed(0)
    for n, m in [(1, 1), (3, 30)]:
        aug = A.build_augment(
            {"randaugment": {"num_ops": n, "magnitude": m}}, channels=3, image_size=(8, 8)
        )
        assert aug(_images(16, 3, 8), 0).shape == (16, 3, 8, 8)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policies_draw_per_sample(name: str) -> None:
    """A batch of identical images comes out with different images: one draw per sample."""
    torch.manual_seed(0)
    aug = A.build_augment({name: POLICIES[name]}, channels=3, image_size=(16, 16))
    x = _images(1, 3, 16).expand(16, -1, -1, -1).contiguous()
    y = aug(x, 0)
    distinct = {tuple(y[i].flatten().tolist()) for i in range(16)}
    assert len(distinct) > 2


def test_policy_on_other_channel_counts_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"augment\.trivialaugment.*1- or 3-channel.*4"):
        A.build_augment({"trivialaugment": {}}, channels=4, image_size=(8, 8))


def test_two_policies_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"clash.*exclusive group 'policy'"):
        A.build_augment({"trivialaugment": {}, "augmix": {}}, channels=3, image_size=(8, 8))


def test_crop_padding_must_be_smaller_than_the_image() -> None:
    with pytest.raises(ConfigError, match=r"random_crop.padding"):
        A.build_augment({"random_crop": {"padding": 4}}, channels=1, image_size=(4, 4))


def test_full_pipeline_is_seeded_and_keeps_uint8() -> None:
    section = {
        "trivialaugment": {},
        "hflip": {},
        "random_crop": {"padding": 2},
        "cutout": {"size": 0.25},
        "random_erasing": {"prob": 0.3},
    }
    aug = A.build_augment(section, channels=1, image_size=(8, 8))
    assert "trivialaugment" in repr(aug)
    x = _images(32, 1, 8)
    torch.manual_seed(3)
    y1 = aug(x, 0)
    torch.manual_seed(3)
    y2 = aug(x, 0)
    assert torch.equal(y1, y2) and y1.dtype == torch.uint8 and y1.shape == x.shape
    assert not torch.equal(y1, x)


def test_augment_refuses_float_batches() -> None:
    aug = A.build_augment({"hflip": {}}, channels=3, image_size=(8, 8))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8), 0)


# ------------------------------------------------------------------------------- multiscale


def test_multiscale_changes_size_on_some_epochs_constant_within_blocks() -> None:
    ms = A.build_multiscale(
        {"multiscale": {"scales": [0.75, 1.0, 1.25], "every_epochs": 2}}, seed=1
    )
    assert ms is not None
    x = torch.randn(2, 3, 8, 8)
    sizes = [tuple(ms(x, e).shape[-2:]) for e in range(20)]
    for k in range(10):
        assert sizes[2 * k] == sizes[2 * k + 1]
    assert set(sizes) <= {(6, 6), (8, 8), (10, 10)}
    assert len(set(sizes)) > 1
    assert any(s != (8, 8) for s in sizes)
    # deterministic from (seed, epoch): a new builder gives the same sizes
    ms2 = A.build_multiscale(
        {"multiscale": {"scales": [0.75, 1.0, 1.25], "every_epochs": 2}}, seed=1
    )
    assert [tuple(ms2(x, e).shape[-2:]) for e in range(20)] == sizes


def test_multiscale_resizes_bilinearly_and_keeps_unit_scale() -> None:
    ms = A.build_multiscale({"multiscale": {"scales": [1.0]}}, seed=0)
    x = torch.randn(2, 1, 8, 8)
    assert ms(x, 0) is x
    ms = A.build_multiscale({"multiscale": {"scales": [2.0]}}, seed=0)
    y = ms(x, 0)
    ref = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(y, ref)
    assert A.multiscale_size(0.25, 3, 8) == (1, 2)
