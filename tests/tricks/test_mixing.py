"""Tests of the ``mixing`` family: declarations, the pure maths, torchvision parity, the mixer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import mixing as M
from tricksearch.tricks import tricks_in_family

K = 4
B, C, H, W = 6, 2, 8, 10

SPECS = tricks_in_family("mixing")


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0, 2])  # consecutive labels differ (also across the wrap)
    return x, y


def _onehot(y: torch.Tensor) -> torch.Tensor:
    return F.one_hot(y, K).float()


def _assert_soft(y: torch.Tensor) -> None:
    assert y.shape == (B, K) and y.dtype == torch.float32
    assert (y >= 0).all()
    torch.testing.assert_close(y.sum(-1), torch.ones(B))


# ------------------------------------------------------------------------------- declarations


def test_family_is_complete_and_declares_soft_targets() -> None:
    assert set(SPECS) == {"mixup", "cutmix", "ricap"}
    assert all(s.soft_targets for s in SPECS.values())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_defaults_validate_and_lie_in_search_range(name: str) -> None:
    spec = SPECS[name]
    assert spec.validate({}, where=f"mixing.{name}") == spec.defaults()
    for p in spec.params:
        assert p.search is not None
        assert p.search.low <= p.default <= p.search.high
        p.validate(p.search.low, "x")
        p.validate(p.search.high, "x")


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("mixup", "alpha", 0.0),
        ("mixup", "alpha", -1.0),
        ("mixup", "prob", 1.5),
        ("cutmix", "alpha", 0.0),
        ("cutmix", "prob", -0.1),
        ("ricap", "beta", 0.0),
        ("ricap", "prob", 2.0),
    ],
)
def test_out_of_range_is_refused_naming_the_field(name: str, param: str, bad: float) -> None:
    with pytest.raises(ConfigError, match=rf"mixing\.{name}\.{param}: got {bad!r}, expected"):
        M.build_mixing({name: {param: bad}}, num_classes=K)


def test_bad_types_and_names_are_refused() -> None:
    with pytest.raises(ConfigTypeError, match=r"mixing\.mixup\.alpha: got 'big'"):
        M.build_mixing({"mixup": {"alpha": "big"}}, num_classes=K)
    with pytest.raises(ConfigError, match=r"mixing\.mixup\.lam: unknown parameter"):
        M.build_mixing({"mixup": {"lam": 0.5}}, num_classes=K)
    with pytest.raises(ConfigError, match="unknown mixing trick; allowed: mixup, cutmix, ricap"):
        M.build_mixing({"cutout": {}}, num_classes=K)


def test_off_is_none() -> None:
    assert M.build_mixing({}, num_classes=K) is None


# ------------------------------------------------------------------------- mixup vs torchvision


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixer_mixup_equals_torchvision_for_the_same_seed(alpha: float) -> None:
    x, y = _batch()
    mixer = M.build_mixing({"mixup": {"alpha": alpha}}, num_classes=K)
    torch.manual_seed(7)
    x_ours, y_ours = mixer(x, y)
    torch.manual_seed(7)
    x_tv, y_tv = v2.MixUp(alpha=alpha, num_classes=K)(x, y)
    torch.testing.assert_close(x_ours, x_tv, rtol=0, atol=0)
    torch.testing.assert_close(y_ours, y_tv, rtol=0, atol=0)
    _assert_soft(y_ours)


def test_mixup_batch_equals_torchvision_with_lambda_read_back() -> None:
    x, y = _batch()
    torch.manual_seed(3)
    x_tv, y_tv = v2.MixUp(alpha=0.4, num_classes=K)(x, y)
    lam = float(y_tv[0, y[0]])  # y[0] != y[-1], so this entry is exactly λ
    assert 0.0 < lam < 1.0
    x_pure, y_pure = M.mixup_batch(x, _onehot(y), lam, M.roll_permutation(B))
    torch.testing.assert_close(x_pure, x_tv)
    torch.testing.assert_close(y_pure, y_tv)
    _assert_soft(y_pure)


def test_mixup_batch_formula() -> None:
    x, y = _batch()
    perm = torch.tensor([2, 0, 1, 5, 3, 4])
    x_m, y_m = M.mixup_batch(x, _onehot(y), 0.3, perm)
    torch.testing.assert_close(x_m[1], 0.3 * x[1] + 0.7 * x[0])
    torch.testing.assert_close(y_m[1], 0.3 * _onehot(y)[1] + 0.7 * _onehot(y)[0])
    assert torch.equal(M.roll_permutation(4), torch.tensor([3, 0, 1, 2]))


# ------------------------------------------------------------------------ cutmix vs torchvision


def test_mixer_cutmix_equals_torchvision_for_the_same_seed() -> None:
    x, y = _batch()
    mixer = M.build_mixing({"cutmix": {"alpha": 1.0, "prob": 1.0}}, num_classes=K)
    for seed in range(5):
        torch.manual_seed(seed)
        x_ours, y_ours = mixer(x, y)
        torch.manual_seed(seed)
        x_tv, y_tv = v2.CutMix(alpha=1.0, num_classes=K)(x, y)
        torch.testing.assert_close(x_ours, x_tv, rtol=0, atol=0)
        torch.testing.assert_close(y_ours, y_tv, rtol=0, atol=0)
        _assert_soft(y_ours)


def test_cutmix_batch_equals_torchvision_with_box_read_back() -> None:
    x, y = _batch()
    checked = 0
    for seed in range(20):
        torch.manual_seed(seed)
        x_tv, y_tv = v2.CutMix(alpha=1.0, num_classes=K)(x, y)
        changed = (x_tv != x).any(dim=1).any(dim=0)  # [H, W]: the pasted box
        if not changed.any():
            continue
        rows = changed.any(dim=1).nonzero().flatten()
        cols = changed.any(dim=0).nonzero().flatten()
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        x_pure, y_pure = M.cutmix_batch(x, _onehot(y), box, M.roll_permutation(B))
        torch.testing.assert_close(x_pure, x_tv, rtol=0, atol=0)
        torch.testing.assert_close(y_pure, y_tv)
        kept = 1 - (box[2] - box[0]) * (box[3] - box[1]) / (H * W)
        torch.testing.assert_close(y_pure[0, y[0]], torch.tensor(kept))
        checked += 1
    assert checked >= 5


def test_cutmix_batch_refuses_a_box_outside_the_image() -> None:
    x, y = _batch()
    with pytest.raises(ValueError, match="box"):
        M.cutmix_batch(x, _onehot(y), (0, 0, W + 1, 2), M.roll_permutation(B))


# ------------------------------------------------------------------------------------ ricap


def _coded_batch() -> torch.Tensor:
    """x[i, c, r, q] = 1000·i + 100·c + (r·W + q)/1000: every pixel says where it came from."""
    i = torch.arange(B).view(B, 1, 1, 1) * 1000.0
    c = torch.arange(C).view(1, C, 1, 1) * 100.0
    pix = torch.arange(H * W).view(1, 1, H, W) / 1000.0
    return (i + c + pix).float()


@pytest.mark.parametrize("boundary", [(3, 5), (0, 4), (W, H), (7, 0)])
def test_ricap_batch_assembles_four_crops_with_area_weights(boundary: tuple[int, int]) -> None:
    x = _coded_batch()
    y = _batch()[1]
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(B, generator=g) for _ in range(4)]
    w, h = boundary
    sizes = [(w, h), (W - w, h), (w, H - h), (W - w, H - h)]
    offsets = [(W - sw, H - sh) if k % 2 else (0, 0) for k, (sw, sh) in enumerate(sizes)]
    out, y_out = M.ricap_batch(x, _onehot(y), boundary, offsets, perms)
    assert out.shape == x.shape
    _assert_soft(y_out)
    corners = [(0, 0), (w, 0), (0, h), (w, h)]  # where each patch lands (left, top)
    expected_y = torch.zeros(B, K)
    for k in range(4):
        sw, sh = sizes[k]
        left, top = offsets[k]
        dst_l, dst_t = corners[k]
        patch = out[:, :, dst_t : dst_t + sh, dst_l : dst_l + sw]
        source = x[perms[k]][:, :, top : top + sh, left : left + sw]
        assert torch.equal(patch, source)
        expected_y += _onehot(y)[perms[k]] * (sw * sh / (H * W))
    torch.testing.assert_close(y_out, expected_y)


def test_ricap_batch_refuses_bad_geometry() -> None:
    x, y = _batch()
    perms = [M.roll_permutation(B)] * 4
    with pytest.raises(ValueError, match="boundary"):
        M.ricap_batch(x, _onehot(y), (W + 1, 2), [(0, 0)] * 4, perms)
    with pytest.raises(ValueError, match="offset"):
        M.ricap_batch(x, _onehot(y), (3, 3), [(0, 0), (5, 0), (0, 0), (0, 0)], perms)


def test_ricap_mixer_pixels_come_from_the_batch_and_weights_match_areas() -> None:
    x = _coded_batch()
    y = _batch()[1]
    mixer = M.build_mixing({"ricap": {"beta": 0.5}}, num_classes=K)
    torch.manual_seed(11)
    out, y_out = mixer(x, y)
    _assert_soft(y_out)
    source = (out // 1000).long()  # which image each pixel came from
    assert ((source >= 0) & (source < B)).all()
    # channel and the within-image layout are kept inside each patch
    assert torch.equal((out[:, 1] - out[:, 0]).round(), torch.full((B, H, W), 100.0))
    # the label weight of each class equals the area taken from images of that class
    area = F.one_hot(y[source[:, 0]], K).float().mean(dim=(1, 2))
    torch.testing.assert_close(y_out, area)
    torch.manual_seed(11)
    again = mixer(x, y)
    assert torch.equal(again[0], out) and torch.equal(again[1], y_out)


# ------------------------------------------------------------------------------------ mixer


def test_prob_zero_passes_through_with_one_hot() -> None:
    x, y = _batch()
    mixer = M.build_mixing({"mixup": {"prob": 0.0}, "cutmix": {"prob": 0.0}}, num_classes=K)
    out, y_out = mixer(x, y)
    assert torch.equal(out, x)
    assert torch.equal(y_out, _onehot(y))


def test_switch_picks_each_trick_and_prob_gates_batches() -> None:
    x, y = _batch()
    mixer = M.build_mixing(
        {"ricap": {"prob": 0.5}, "mixup": {"prob": 0.5}, "cutmix": {"prob": 0.5}},
        num_classes=K,
    )
    assert [m.name for m in mixer.modes] == ["mixup", "cutmix", "ricap"]  # fixed order
    seen: list[str] = []

    def recording(mode: M._Mode) -> M._Mode:
        def apply(xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen.append(mode.name)
            return mode.apply(xb, yb)

        return M._Mode(mode.name, mode.prob, apply)

    mixer.modes = tuple(recording(m) for m in mixer.modes)
    torch.manual_seed(0)
    runs = [mixer(x, y) for _ in range(120)]
    for _, y_out in runs:
        _assert_soft(y_out)
    assert set(seen) == {"mixup", "cutmix", "ricap"}
    unmixed = sum(torch.equal(y_out, _onehot(y)) for _, y_out in runs)
    assert 35 <= unmixed <= 85  # about half the batches pass through
    # same seed, same batches
    torch.manual_seed(0)
    for x_run, y_run in runs[:10]:
        x_again, y_again = mixer(x, y)
        assert torch.equal(x_again, x_run) and torch.equal(y_again, y_run)


def test_mixer_accepts_soft_targets_and_checks_inputs() -> None:
    x, y = _batch()
    mixer = M.build_mixing({"mixup": {}}, num_classes=K)
    q = torch.softmax(torch.randn(B, K, generator=torch.Generator().manual_seed(1)), -1)
    _, y_out = mixer(x, q)
    _assert_soft(y_out)
    with pytest.raises(TypeError, match="float batch"):
        mixer(x.to(torch.uint8), y)
    with pytest.raises(ValueError, match="targets"):
        mixer(x, torch.zeros(B, K + 1))
    with pytest.raises(ValueError, match="batch sizes differ"):
        mixer(x, y[:-1])
