"""Tests of the ``loss`` family: declarations, the maths against hand formulas, the builder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import loss as L
from tricksearch.tricks import tricks_in_family

K = 5
B = 8


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, K, generator=g) * 2
    target = torch.randint(K, (B,), generator=g)
    return logits, target


def _soft(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(B, K, generator=g) * 3, dim=-1)


# ------------------------------------------------------------------------------- declarations

SPECS = tricks_in_family("loss")


def test_family_is_complete() -> None:
    assert set(SPECS) == {"label_smoothing", "focal", "flooding", "distillation", "bias_prior"}
    assert SPECS["distillation"].needs_teacher
    assert not any(s.soft_targets for s in SPECS.values())


@pytest.mark.parametrize("name", sorted(SPECS))
def test_defaults_validate_and_lie_in_search_range(name: str) -> None:
    spec = SPECS[name]
    assert spec.validate({}, where=f"loss.{name}") == spec.defaults()
    for p in spec.params:
        if p.search is not None and p.search.choices is None:
            assert p.search.low <= p.default <= p.search.high, p.name
        if p.search is not None and p.search.low is not None:
            # every value the default search explores is valid
            p.validate(p.search.low, "x")
            p.validate(p.search.high, "x")


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("label_smoothing", "epsilon", -0.1),
        ("label_smoothing", "epsilon", 1.0),
        ("focal", "gamma", -1.0),
        ("focal", "alpha", "balanced"),
        ("flooding", "level", -0.01),
        ("distillation", "temperature", 0.0),
        ("distillation", "alpha", 1.5),
        ("distillation", "teacher_epochs", -1),
    ],
)
def test_out_of_range_is_refused_naming_the_field(name: str, param: str, bad: object) -> None:
    with pytest.raises(ConfigError, match=rf"loss\.{name}\.{param}: got {bad!r}, expected"):
        SPECS[name].validate({param: bad}, where=f"loss.{name}")


def test_wrong_types_and_unknown_keys_are_refused() -> None:
    with pytest.raises(ConfigTypeError, match=r"loss\.focal\.gamma"):
        SPECS["focal"].validate({"gamma": "2"}, where="loss.focal")
    with pytest.raises(ConfigTypeError, match=r"loss\.distillation\.teacher"):
        SPECS["distillation"].validate({"teacher": 3}, where="loss.distillation")
    with pytest.raises(ConfigError, match=r"loss\.flooding\.b: unknown parameter"):
        SPECS["flooding"].validate({"b": 0.1}, where="loss.flooding")
    with pytest.raises(ConfigError, match="unknown loss trick"):
        L.build_loss({"smoothing": {}}, num_classes=K)


def test_exclusive_bounds_are_described() -> None:
    assert SPECS["label_smoothing"].param("epsilon").allowed() == "a number in [0.0, 1.0)"
    assert SPECS["distillation"].param("temperature").allowed() == "a number > 0.0"
    assert SPECS["label_smoothing"].validate({"epsilon": 0.999}, "x")["epsilon"] == 0.999


# ----------------------------------------------------------------------------------- off


def test_empty_section_is_plain_cross_entropy(batch) -> None:
    logits, target = batch
    fn = L.build_loss({}, num_classes=K)
    assert torch.equal(fn(logits, target), F.cross_entropy(logits, target))
    q = _soft()
    torch.testing.assert_close(fn(logits, q), F.cross_entropy(logits, q))
    assert not L.uses_teacher({})
    model = nn.Linear(3, K)
    before = model.bias.detach().clone()
    L.init_model({}, model, class_counts=torch.ones(K))
    assert torch.equal(model.bias, before)


# ---------------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_smooth_targets_formula(eps: float) -> None:
    y = torch.tensor([0, 3, 4])
    q = L.smooth_targets(y, K, eps)
    expected = torch.full((3, K), eps / K)
    expected[torch.arange(3), y] += 1 - eps
    torch.testing.assert_close(q, expected)
    torch.testing.assert_close(q.sum(-1), torch.ones(3))


@pytest.mark.parametrize("eps", [0.05, 0.2])
def test_label_smoothing_soft_path_equals_torch(batch, eps: float) -> None:
    logits, target = batch
    fn = L.build_loss({"label_smoothing": {"epsilon": eps}}, num_classes=K)
    reference = F.cross_entropy(logits, target, label_smoothing=eps)
    # hard targets: torch's own smoothing
    torch.testing.assert_close(fn(logits, target), reference)
    # one-hot given as soft target: smoothing folded once gives the same value
    torch.testing.assert_close(fn(logits, F.one_hot(target, K).float()), reference)
    # the pure soft path
    soft = L.soft_cross_entropy(logits, L.smooth_targets(target, K, eps))
    torch.testing.assert_close(soft, reference)
    # mixed targets: torch smooths probability targets the same way (once)
    q = _soft()
    torch.testing.assert_close(fn(logits, q), F.cross_entropy(logits, q, label_smoothing=eps))


def test_soft_cross_entropy_formula(batch) -> None:
    logits, _ = batch
    q = _soft()
    by_hand = -(q * torch.log(torch.softmax(logits, -1))).sum() / B
    torch.testing.assert_close(L.soft_cross_entropy(logits, q), by_hand)


# ------------------------------------------------------------------------------------ focal


def test_focal_gamma_zero_is_cross_entropy(batch) -> None:
    logits, target = batch
    torch.testing.assert_close(L.focal_loss(logits, target, 0.0), F.cross_entropy(logits, target))
    q = _soft()
    torch.testing.assert_close(L.focal_loss(logits, q, 0.0), F.cross_entropy(logits, q))
    torch.testing.assert_close(
        L.focal_loss(logits, target, 0.0, label_smoothing=0.1),
        F.cross_entropy(logits, target, label_smoothing=0.1),
    )
    fn = L.build_loss({"focal": {"gamma": 0.0}}, num_classes=K)
    torch.testing.assert_close(fn(logits, target), F.cross_entropy(logits, target))


def test_focal_gamma_two_matches_hand_formula(batch) -> None:
    logits, target = batch
    p = torch.softmax(logits.double(), -1)
    p_t = p[torch.arange(B), target]
    by_hand = (-((1 - p_t) ** 2) * torch.log(p_t)).mean()
    torch.testing.assert_close(
        L.focal_loss(logits, target, 2.0).double(), by_hand, rtol=1e-5, atol=1e-6
    )
    # soft targets: −Σ_k q_k (1−p_k)^γ log p_k
    q = _soft().double()
    by_hand_soft = (-(q * (1 - p) ** 2 * torch.log(p)).sum(-1)).mean()
    torch.testing.assert_close(
        L.focal_loss(logits, q.float(), 2.0).double(), by_hand_soft, rtol=1e-5, atol=1e-6
    )
    # focusing: never larger than cross entropy
    assert L.focal_loss(logits, target, 2.0) < F.cross_entropy(logits, target)


def test_focal_inverse_frequency_alpha(batch) -> None:
    logits, target = batch
    counts = torch.tensor([100.0, 50.0, 25.0, 10.0, 5.0])
    alpha = L.inverse_frequency_weights(counts)
    inv = 1 / counts
    torch.testing.assert_close(alpha, inv / inv.mean())
    torch.testing.assert_close(alpha.mean(), torch.tensor(1.0))
    assert torch.all(alpha[:-1] < alpha[1:])  # rarer class, larger weight

    p = torch.softmax(logits.double(), -1)
    p_t = p[torch.arange(B), target]
    by_hand = (-alpha.double()[target] * (1 - p_t) ** 1.5 * torch.log(p_t)).mean()
    fn = L.build_loss(
        {"focal": {"gamma": 1.5, "alpha": "inverse_frequency"}}, num_classes=K, class_counts=counts
    )
    torch.testing.assert_close(fn(logits, target).double(), by_hand, rtol=1e-5, atol=1e-6)


def test_focal_inverse_frequency_needs_counts() -> None:
    with pytest.raises(ConfigError, match=r"loss\.focal\.alpha: 'inverse_frequency' needs"):
        L.build_loss({"focal": {"alpha": "inverse_frequency"}}, num_classes=K)
    with pytest.raises(ConfigError, match="class_counts has shape"):
        L.build_loss(
            {"focal": {"alpha": "inverse_frequency"}},
            num_classes=K,
            class_counts=torch.ones(K + 1),
        )


def test_focal_gradient_is_finite_for_confident_predictions() -> None:
    logits = torch.tensor([[60.0, 0.0, 0.0]], requires_grad=True)
    loss = L.focal_loss(logits, torch.tensor([0]), 0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------------- flooding


def test_flooding_identity_above_and_ascent_below() -> None:
    w = torch.tensor([0.5, -1.0, 2.0])

    def grads(level: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        v = w.clone().requires_grad_(True)
        plain = (v**2).mean() * 0.1  # = 0.175
        out = plain if level is None else L.flood(plain, level)
        (g,) = torch.autograd.grad(out, v)
        return out.detach(), g

    value, g_plain = grads(None)
    above_value, g_above = grads(0.1)  # loss 0.175 > b: identity
    torch.testing.assert_close(above_value, value)
    torch.testing.assert_close(g_above, g_plain)
    below_value, g_below = grads(0.5)  # loss < b: same value reflected, gradient flips
    torch.testing.assert_close(below_value, 2 * 0.5 - value)
    torch.testing.assert_close(g_below, -g_plain)
    # level 0 is off for a non-negative loss
    torch.testing.assert_close(grads(0.0)[1], g_plain)


def test_flooding_applies_to_the_batch_mean(batch) -> None:
    logits, target = batch
    ce = F.cross_entropy(logits, target)
    level = float(ce) + 1.0
    fn = L.build_loss({"flooding": {"level": level}}, num_classes=K)
    torch.testing.assert_close(fn(logits, target), (ce - level).abs() + level)


# ----------------------------------------------------------------------------- distillation


def test_distillation_alpha_zero_is_base(batch) -> None:
    logits, target = batch
    teacher = torch.randn(B, K, generator=torch.Generator().manual_seed(3))
    base = F.cross_entropy(logits, target)
    torch.testing.assert_close(L.distillation_loss(logits, teacher, base, 4.0, 0.0), base)


def test_distillation_kl_by_hand_and_t_squared(batch) -> None:
    logits, _ = batch
    teacher = torch.randn(B, K, generator=torch.Generator().manual_seed(3))
    zero = torch.tensor(0.0)

    def kl(t: float) -> torch.Tensor:
        p_r = torch.softmax(teacher.double() / t, -1)
        p_z = torch.softmax(logits.double() / t, -1)
        return (p_r * (p_r.log() - p_z.log())).sum() / B

    got1 = L.distillation_loss(logits, teacher, zero, 1.0, 1.0).double()
    torch.testing.assert_close(got1, kl(1.0), rtol=1e-5, atol=1e-6)
    for t in (2.0, 7.0):
        got = L.distillation_loss(logits, teacher, zero, t, 1.0).double()
        torch.testing.assert_close(got, t * t * kl(t), rtol=1e-5, atol=1e-6)
    # identical logits: no distillation term
    torch.testing.assert_close(
        L.distillation_loss(logits, logits, zero, 3.0, 1.0), zero, atol=1e-6, rtol=0
    )


def test_distillation_mix_and_order_in_builder(batch) -> None:
    logits, target = batch
    logits = logits.clone().requires_grad_(True)
    teacher = torch.randn(B, K, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    section = {
        "label_smoothing": {"epsilon": 0.1},
        "distillation": {"temperature": 2.0, "alpha": 0.3},
        "flooding": {"level": 10.0},
    }
    assert L.uses_teacher(section)
    fn = L.build_loss(section, num_classes=K)
    got = fn(logits, target, teacher_logits=teacher)
    base = F.cross_entropy(logits, target, label_smoothing=0.1)
    mixed = 0.7 * base + 0.3 * 4.0 * F.kl_div(
        F.log_softmax(logits / 2, -1),
        F.log_softmax(teacher / 2, -1),
        log_target=True,
        reduction="batchmean",
    )
    torch.testing.assert_close(got, (mixed - 10.0).abs() + 10.0)
    got.backward()
    assert teacher.grad is None  # no gradient flows into the teacher


def test_distillation_without_teacher_logits_fails(batch) -> None:
    logits, target = batch
    fn = L.build_loss({"distillation": {}}, num_classes=K)
    with pytest.raises(ValueError, match="teacher_logits"):
        fn(logits, target)


def test_distillation_defaults() -> None:
    params = SPECS["distillation"].validate({"teacher": "resnet-cifar"}, "loss.distillation")
    assert params["teacher"] == "resnet-cifar"
    assert params["teacher_epochs"] == 0
    assert SPECS["distillation"].param("teacher").search is None
    assert SPECS["distillation"].param("teacher_epochs").search is None


# ------------------------------------------------------------------------------- bias prior


class _Net(nn.Module):
    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.features = nn.Linear(4, 6)
        self.classifier = nn.Linear(6, K, bias=bias)


def test_bias_prior_is_log_class_frequency() -> None:
    counts = torch.tensor([50, 20, 15, 10, 5])
    model = _Net()
    L.init_model({"bias_prior": {}}, model, class_counts=counts)
    freq = counts.double() / counts.sum()
    torch.testing.assert_close(model.classifier.bias.double(), freq.log(), rtol=1e-6, atol=1e-6)
    # the model's first predictions are the prior
    torch.testing.assert_close(torch.softmax(model.classifier.bias, 0).double(), freq)


def test_bias_prior_finds_last_linear_without_classifier() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, K))
    first = model[0].bias.detach().clone()
    counts = torch.tensor([1, 2, 3, 4, 0])
    L.init_model({"bias_prior": None}, model, class_counts=counts)
    assert torch.equal(model[0].bias, first)
    clamped = counts.clamp_min(1).double()
    expected = torch.log(clamped / clamped.sum())
    torch.testing.assert_close(model[2].bias.double(), expected, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(model[2].bias).all()


def test_bias_prior_refuses_models_it_cannot_initialise() -> None:
    with pytest.raises(ConfigError, match="has no bias"):
        L.init_model({"bias_prior": {}}, _Net(bias=False), class_counts=torch.ones(K))
    with pytest.raises(ConfigError, match=r"no nn\.Linear"):
        L.init_model({"bias_prior": {}}, nn.Conv2d(3, K, 1), class_counts=torch.ones(K))
    with pytest.raises(ConfigError, match="classifier has 5 outputs"):
        L.init_model({"bias_prior": {}}, _Net(), class_counts=torch.ones(3))
    with pytest.raises(ConfigError, match=r"loss\.bias_prior\.x: unknown parameter"):
        L.init_model({"bias_prior": {"x": 1}}, _Net(), class_counts=torch.ones(K))


def test_loss_is_finite_and_differentiable_for_every_combination(batch) -> None:
    logits, target = batch
    teacher = torch.randn(B, K, generator=torch.Generator().manual_seed(3))
    section = {name: {} for name in SPECS}
    fn = L.build_loss(section, num_classes=K, class_counts=torch.ones(K))
    for tgt in (target, _soft()):
        z = logits.clone().requires_grad_(True)
        out = fn(z, tgt, teacher_logits=teacher)
        assert out.ndim == 0 and math.isfinite(out.item())
        out.backward()
        assert torch.isfinite(z.grad).all()
