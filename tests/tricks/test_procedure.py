"""Tests of the ``procedure`` family: declarations, precision, EMA, adversarial examples."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import procedure as P
from tricksearch.tricks import tricks_in_family

SPECS = tricks_in_family("procedure")


def test_family_is_complete() -> None:
    assert set(SPECS) == {"low_precision", "ema", "adversarial"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_defaults_and_search_ranges_validate(name: str) -> None:
    spec = SPECS[name]
    assert spec.validate({}, f"procedure.{name}") == spec.defaults()
    for p in spec.params:
        s = p.search
        assert s is not None
        for v in s.choices if s.choices is not None else (s.low, s.high):
            p.validate(int(v) if p.kind == "int" else v, "x")


@pytest.mark.parametrize(
    ("name", "param", "bad"),
    [
        ("low_precision", "dtype", "fp8"),
        ("low_precision", "dtype", "fp32"),
        ("ema", "decay", 0.9),
        ("ema", "decay", 1.0),
        ("adversarial", "epsilon", 0.1),
        ("adversarial", "epsilon", -0.01),
        ("adversarial", "steps", 0),
        ("adversarial", "steps", 4),
        ("adversarial", "mix_ratio", 1.5),
    ],
)
def test_out_of_range_is_refused_naming_the_field(name: str, param: str, bad: object) -> None:
    match = rf"procedure\.{name}\.{param}: got"
    with pytest.raises(ConfigError, match=match):
        P.build_precision({name: {param: bad}})
    with pytest.raises(ConfigError, match=match):
        P.build_ema({name: {param: bad}}, nn.Linear(1, 1))
    with pytest.raises(ConfigError, match=match):
        P.build_adversarial({name: {param: bad}}, std=(1.0,))


def test_wrong_types_and_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigTypeError, match=r"adversarial.steps"):
        P.build_adversarial({"adversarial": {"steps": 1.5}}, std=(1.0,))
    with pytest.raises(ConfigError, match=r"procedure\.swa: unknown trick.*ema"):
        P.build_precision({"swa": {}})
    with pytest.raises(ConfigError, match="std"):
        P.build_adversarial({"adversarial": {}}, std=(0.0,))


def test_off_returns_none_and_fp32() -> None:
    assert P.build_ema({}, nn.Linear(2, 2)) is None
    assert P.build_adversarial({}, std=(1.0,)) is None
    precision = P.build_precision({})
    assert precision.dtype is None
    assert isinstance(precision.autocast(torch.device("cpu")), contextlib.nullcontext)
    assert precision.scaler(torch.device("cpu")) is None


# ------------------------------------------------------------------------------- precision


def test_bf16_autocast_runs_on_cpu() -> None:
    precision = P.build_precision({"low_precision": {"dtype": "bf16"}}, device="cpu")
    assert precision.dtype == torch.bfloat16
    assert precision.scaler("cpu") is None
    model = nn.Linear(4, 3)
    with precision.autocast(torch.device("cpu")):
        out = model(torch.randn(2, 4))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert model.weight.grad is not None and model.weight.grad.dtype == torch.float32


def test_fp16_is_refused_on_cpu_with_a_clear_message() -> None:
    with pytest.raises(ConfigError, match=r"low_precision\.dtype.*'fp16'.*CPU.*bf16"):
        P.build_precision({"low_precision": {"dtype": "fp16"}}, device="cpu")
    precision = P.build_precision({"low_precision": {"dtype": "fp16"}})  # device unknown yet
    assert precision.dtype == torch.float16
    with pytest.raises(ConfigError, match="fp16"):
        precision.autocast(torch.device("cpu"))
    with pytest.raises(ConfigError, match="fp16"):
        precision.scaler("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fp16_on_gpu_has_a_scaler() -> None:
    precision = P.build_precision({"low_precision": {"dtype": "fp16"}}, device="cuda")
    assert isinstance(precision.scaler("cuda"), torch.amp.GradScaler)
    model = nn.Linear(4, 3).cuda()
    with precision.autocast("cuda"):
        assert model(torch.randn(2, 4, device="cuda")).dtype == torch.float16


# ------------------------------------------------------------------------------- EMA


def test_ema_follows_the_formula() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = P.build_ema({"ema": {"decay": 0.99}}, model)
    assert ema is not None
    for value in (1.0, 2.0, 4.0):
        with torch.no_grad():
            for t in (model[0].weight, model[0].bias, model[1].running_mean):
                t.fill_(value)
        ema.update_parameters(model)
    # e1 = 1; e2 = 0.99*1 + 0.01*2 = 1.01; e3 = 0.99*1.01 + 0.01*4 = 1.0399
    for t in (ema.module[0].weight, ema.module[0].bias, ema.module[1].running_mean):
        assert torch.allclose(t, torch.full_like(t, 1.0399), atol=1e-6)
    assert int(ema.n_averaged) == 3
    assert torch.equal(model[0].weight, torch.full_like(model[0].weight, 4.0))  # untouched


# ------------------------------------------------------------------------------- adversarial


def _trained_linear(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 3, 4, 4, generator=g)
    teacher = torch.randn(48, 4, generator=g)
    y = (x.flatten(1) @ teacher).argmax(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, x, y


def test_fgsm_raises_the_loss_of_a_trained_model() -> None:
    model, x, y = _trained_linear()
    clean = F.cross_entropy(model(x), y).item()
    assert clean < 0.8  # trained-ish
    adv = P.build_adversarial({"adversarial": {"epsilon": 8 / 255, "mix_ratio": 1.0}}, std=(0.1,))
    x_adv = adv(model, x, y, F.cross_entropy)
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert F.cross_entropy(model(x_adv), y).item() > clean + 0.5
    # FGSM moves every coordinate by exactly ε/std (where the gradient is non-zero)
    step = (x_adv - x).abs()
    assert torch.allclose(step[step > 0], torch.tensor(8 / 255 / 0.1), atol=1e-6)


def test_pgd_stays_in_the_epsilon_ball_in_normalised_units() -> None:
    torch.manual_seed(0)
    model, x, y = _trained_linear(1)
    std = (0.5, 0.25, 0.1)
    eps = 8 / 255
    adv = P.build_adversarial(
        {"adversarial": {"epsilon": eps, "steps": 3, "mix_ratio": 1.0}}, std=std
    )
    x_adv = adv(model, x, y, F.cross_entropy)
    bound = (eps / torch.tensor(std)).view(1, 3, 1, 1)
    delta = (x_adv - x).abs()
    assert bool((delta <= bound + 1e-6).all())
    assert bool((delta.amax(dim=(0, 2, 3)) > 0.9 * bound.flatten()).all())  # uses the ball
    clean = F.cross_entropy(model(x), y).item()
    assert F.cross_entropy(model(x_adv), y).item() > clean


def test_mix_ratio_zero_is_identity_and_half_replaces_half() -> None:
    model, x, y = _trained_linear()
    adv0 = P.build_adversarial({"adversarial": {"mix_ratio": 0.0}}, std=(1.0,))
    assert adv0(model, x, y, F.cross_entropy) is x
    adv = P.build_adversarial({"adversarial": {"mix_ratio": 0.5}}, std=(1.0,))
    x_adv = adv(model, x, y, F.cross_entropy)
    changed = (x_adv != x).flatten(1).any(1)
    assert int(changed.sum()) == 64


def test_attack_restores_mode_and_leaks_no_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
    )
    x = torch.randn(8, 1, 8, 8)
    soft = torch.softmax(torch.randn(8, 3), 1)  # soft targets work too
    adv = P.build_adversarial(
        {"adversarial": {"epsilon": 4 / 255, "steps": 2, "mix_ratio": 1.0}}, std=(0.3,)
    )
    stats = model[1].running_mean.clone()
    for training in (True, False):
        model.train(training)
        x_adv = adv(model, x, soft, F.cross_entropy)
        assert model.training is training
        assert all(m.training is training for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
        assert torch.equal(model[1].running_mean, stats)
        assert x_adv.shape == x.shape
    # existing gradients are left as they are
    model.train()
    F.cross_entropy(model(x), soft).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    adv(model, x, soft, F.cross_entropy)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters(), strict=True))


def test_std_must_match_the_channels() -> None:
    model, x, y = _trained_linear()
    adv = P.build_adversarial({"adversarial": {"mix_ratio": 1.0}}, std=(0.5, 0.5))
    with pytest.raises(ValueError, match="channels"):
        adv(model, x, y, F.cross_entropy)
