"""Tests of the ``optimizer`` family: declarations, param groups, AdaBound and Lookahead maths."""

from __future__ import annotations

import copy
import math
import pickle
from itertools import pairwise

import pytest
import torch
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import tricks_in_family
from tricksearch.tricks.optimizer import (
    OPTIMIZERS,
    AdaBound,
    Lookahead,
    adabound_bounds,
    build_optimizer,
    grad_clip_norm,
    param_groups,
)

OPTIMIZER_SPECS = tricks_in_family("optimizer")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 3),
    )


def _hyper(groups: list[dict]) -> list[dict]:
    """Param groups with the tensors replaced by their ids, for comparison."""
    return [{**g, "params": [id(p) for p in g["params"]]} for g in groups]


def _quadratic_grad(w: torch.Tensor, target: torch.Tensor) -> None:
    """Set ``w.grad`` to the gradient of 0.5 * ||w - target||^2."""
    w.grad = (w.detach() - target).clone()


# --- declarations ---------------------------------------------------------------------------


def test_family_has_the_declared_tricks():
    extras = {"weight_decay", "no_bias_decay", "lookahead", "grad_clip"}
    assert set(OPTIMIZER_SPECS) == {*OPTIMIZERS, *extras}
    group = [s for s in OPTIMIZER_SPECS.values() if s.group == "optimizer"]
    assert {s.name for s in group} == set(OPTIMIZERS)
    assert [s.name for s in group if s.required_default] == ["sgd"]


@pytest.mark.parametrize("spec", OPTIMIZER_SPECS.values(), ids=list(OPTIMIZER_SPECS))
def test_spec_declares_paper_defaults_and_search_ranges(spec):
    assert spec.summary and spec.paper and spec.family == "optimizer"
    assert spec.validate({}, f"optimizer.{spec.name}") == spec.defaults()
    for p in spec.params:
        if p.search is None or p.search.choices is not None:
            continue
        assert p.low is None or p.search.low >= p.low, p.name
        assert p.high is None or p.search.high <= p.high, p.name


@pytest.mark.parametrize("spec", OPTIMIZER_SPECS.values(), ids=list(OPTIMIZER_SPECS))
def test_validate_refuses_out_of_range_values_naming_the_field(spec):
    for p in spec.params:
        where = f"optimizer.{spec.name}"
        bad = {"bool": "yes", "choice": "nope"}.get(p.kind)
        if bad is None:
            bad = (p.low - 1) if p.low is not None else (p.high + 1)
        with pytest.raises((ConfigError, ConfigTypeError), match=rf"{where}\.{p.name}"):
            spec.validate({p.name: bad}, where)


def test_build_names_the_bad_field():
    with pytest.raises(ConfigError, match=r"optimizer\.lookahead\.k"):
        build_optimizer({"lookahead": {"k": 0}}, _net(), lr=0.1)
    with pytest.raises(ConfigTypeError, match=r"optimizer\.sgd\.nesterov"):
        build_optimizer({"sgd": {"nesterov": "yes"}}, _net(), lr=0.1)
    with pytest.raises(ConfigError, match=r"optimizer\.sgd\.nesterov"):
        build_optimizer({"sgd": {"momentum": 0.0, "nesterov": True}}, _net(), lr=0.1)
    with pytest.raises(ConfigError, match=r"optimizer\.warmup: .*section 'schedule'"):
        build_optimizer({"warmup": {}}, _net(), lr=0.1)
    with pytest.raises(ConfigError, match="lr"):
        build_optimizer({}, _net(), lr=0.0)


def test_two_optimizers_clash():
    with pytest.raises(ConfigError, match=r"'adamw' and 'sgd' clash.*group 'optimizer'"):
        build_optimizer({"adamw": {}, "sgd": {}}, _net(), lr=0.1)


# --- building -------------------------------------------------------------------------------


def test_off_is_the_baseline_sgd():
    model = _net()
    ours = build_optimizer({}, model, lr=0.1)
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert type(ours) is torch.optim.SGD
    assert ours.defaults == base.defaults
    assert _hyper(ours.param_groups) == _hyper(base.param_groups)
    assert grad_clip_norm({}) is None


def test_false_is_off():
    opt = build_optimizer(
        {"adamw": False, "lookahead": False, "weight_decay": False}, _net(), lr=0.1
    )
    assert type(opt) is torch.optim.SGD and opt.param_groups[0]["weight_decay"] == 0.0
    assert grad_clip_norm({"grad_clip": False}) is None


def test_sgd_parameters_and_weight_decay():
    section = {"sgd": {"momentum": 0.95, "nesterov": True}, "weight_decay": {"value": 1e-4}}
    opt = build_optimizer(section, _net(), lr=0.2)
    (group,) = opt.param_groups
    assert (group["lr"], group["momentum"], group["nesterov"]) == (0.2, 0.95, True)
    assert group["weight_decay"] == 1e-4


@pytest.mark.parametrize(
    ("name", "cls"), [("adamw", torch.optim.AdamW), ("radam", torch.optim.RAdam)]
)
def test_adam_family_are_torch_classes_with_the_betas(name, cls):
    section = {name: {"beta1": 0.85, "beta2": 0.995}}
    opt = build_optimizer(section, _net(), lr=1e-3)
    assert type(opt) is cls
    assert opt.param_groups[0]["betas"] == (0.85, 0.995)
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)  # off means 0, not torch's


def test_adabound_is_built_with_its_parameters():
    section = {"adabound": {"final_lr": 0.05, "gamma": 1e-2, "beta1": 0.8}}
    opt = build_optimizer(section, _net(), lr=1e-3)
    group = opt.param_groups[0]
    assert type(opt) is AdaBound
    assert (group["final_lr"], group["gamma"], group["betas"]) == (0.05, 1e-2, (0.8, 0.999))


def test_no_bias_decay_splits_biases_and_norm_weights_off():
    model = _net()
    opt = build_optimizer({"weight_decay": {"value": 1e-3}, "no_bias_decay": {}}, model, lr=0.1)
    decayed, exempt = opt.param_groups
    conv, bn, linear = model[0], model[1], model[3]
    assert decayed["weight_decay"] == 1e-3 and exempt["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(conv.weight), id(linear.weight)}
    assert {id(p) for p in exempt["params"]} == {id(bn.weight), id(bn.bias), id(linear.bias)}


def test_no_bias_decay_without_weight_decay_costs_nothing():
    groups = param_groups(_net(), 0.0, no_bias_decay=True)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


def test_param_groups_skip_frozen_and_empty():
    model = nn.Linear(3, 2, bias=False)
    assert len(param_groups(model, 1e-3, no_bias_decay=True)) == 1
    model.weight.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        param_groups(model, 0.0, no_bias_decay=False)


def test_grad_clip_norm():
    assert grad_clip_norm({"grad_clip": {"max_norm": 2.5}}) == 2.5
    assert grad_clip_norm({"grad_clip": {}}) == 1.0
    assert grad_clip_norm({"sgd": {}}) is None


# --- Lookahead ------------------------------------------------------------------------------


def _lookahead_run(k: int, alpha: float, lr: float, steps: int):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5))
    w0, target = w.detach().clone(), torch.randn(5)
    opt = Lookahead(torch.optim.SGD([w], lr=lr), k=k, alpha=alpha)
    for _ in range(steps):
        _quadratic_grad(w, target)
        opt.step()
    return w, w0, target, opt


def test_lookahead_slow_weights_follow_the_formula():
    k, alpha, lr = 5, 0.5, 0.1
    # SGD on 0.5 ||w - c||^2: after k fast steps from s, fast = c + (1 - lr)^k (s - c).
    w, slow, target, opt = _lookahead_run(k, alpha, lr, steps=3 * k)
    for _ in range(3):
        fast = target + (1 - lr) ** k * (slow - target)
        slow = slow + alpha * (fast - slow)
    torch.testing.assert_close(w.detach(), slow)
    torch.testing.assert_close(opt.state[w]["slow"], slow)


def test_lookahead_between_syncs_is_the_inner_optimizer():
    k, lr = 5, 0.1
    w, w0, target, opt = _lookahead_run(k, 0.5, lr, steps=k - 1)
    torch.testing.assert_close(w.detach(), target + (1 - lr) ** (k - 1) * (w0 - target))
    torch.testing.assert_close(opt.state[w]["slow"], w0)


def test_lookahead_alpha_one_is_the_inner_optimizer():
    w, w0, target, _ = _lookahead_run(3, 1.0, 0.1, steps=7)
    torch.testing.assert_close(w.detach(), target + 0.9**7 * (w0 - target))


def test_lookahead_shares_param_groups_so_schedulers_work():
    model = _net()
    section = {"adamw": {}, "lookahead": {"k": 10, "alpha": 0.6}}
    opt = build_optimizer(section, model, lr=1e-3)
    assert isinstance(opt, Lookahead) and isinstance(opt.optimizer, torch.optim.AdamW)
    assert (opt.k, opt.alpha) == (10, 0.6)
    assert opt.param_groups is opt.optimizer.param_groups
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert opt.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    model(torch.randn(2, 1, 6, 6)).sum().backward()
    opt.step()
    sched.step()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_lookahead_step_takes_a_closure():
    w = nn.Parameter(torch.ones(2))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=2)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == pytest.approx(2.0)
    torch.testing.assert_close(w.detach(), torch.full((2,), 0.8))


def test_lookahead_state_dict_round_trips():
    def make():
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(4))
        return w, Lookahead(torch.optim.SGD([w], lr=0.1, momentum=0.9), k=3, alpha=0.5)

    target = torch.randn(4)
    w1, opt1 = make()
    for _ in range(4):
        _quadratic_grad(w1, target)
        opt1.step()
    w2, opt2 = make()
    with torch.no_grad():
        w2.copy_(w1)
    opt2.load_state_dict(copy.deepcopy(opt1.state_dict()))
    assert opt2.steps == 4
    for _ in range(5):
        for w, opt in ((w1, opt1), (w2, opt2)):
            _quadratic_grad(w, target)
            opt.step()
    torch.testing.assert_close(w1, w2)
    with pytest.raises(ValueError, match="lookahead"):
        opt2.load_state_dict(opt1.optimizer.state_dict())


def test_lookahead_pickles_and_copies():
    *_, opt = _lookahead_run(3, 0.5, 0.1, steps=2)
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.k == 3 and clone.steps == 2
    assert clone.param_groups is clone.optimizer.param_groups
    assert copy.deepcopy(opt).optimizer.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize(("k", "alpha"), [(0, 0.5), (2.5, 0.5), (5, 0.0), (5, 1.5)])
def test_lookahead_refuses_bad_arguments(k, alpha):
    with pytest.raises(ValueError):
        Lookahead(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1), k=k, alpha=alpha)


# --- AdaBound -------------------------------------------------------------------------------


def test_adabound_bounds_values():
    lower, upper = adabound_bounds(0.1, 1e-3, 1)
    assert lower == pytest.approx(0.1 * 1e-3 / (1 + 1e-3))
    assert upper == pytest.approx(0.1 * (1 + 1e3))
    lower, upper = adabound_bounds(0.1, 1e-3, 10**6)
    assert lower == pytest.approx(0.1 * (1 - 1 / 1001))
    assert upper == pytest.approx(0.1 * (1 + 1 / 1000))
    bounds = [adabound_bounds(0.1, 1e-3, t) for t in (1, 10, 100, 10**4, 10**8)]
    assert all(a[0] < b[0] < 0.1 < b[1] < a[1] for a, b in pairwise(bounds))
    assert bounds[-1] == pytest.approx((0.1, 0.1), rel=1e-4)


def _adabound_by_hand(p, g, lr, betas, final_lr, gamma, eps, wd):
    """One AdaBound step from zero state, written out from the paper / reference code."""
    g = g + wd * p
    m = (1 - betas[0]) * g
    v = (1 - betas[1]) * g * g
    step_size = lr * math.sqrt(1 - betas[1]) / (1 - betas[0])
    rate = step_size / (v.sqrt() + eps)
    lower, upper = final_lr * (1 - 1 / (gamma + 1)), final_lr * (1 + 1 / gamma)
    return p - rate.clamp(lower, upper) * m


@pytest.mark.parametrize(("gamma", "wd"), [(1e-3, 0.0), (0.5, 0.0), (0.5, 1e-2)])
def test_adabound_one_step_by_hand(gamma, wd):
    torch.manual_seed(0)
    p0, g = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64) * 1e-2
    w = nn.Parameter(p0.clone())
    opt = AdaBound([w], lr=0.01, betas=(0.9, 0.99), final_lr=0.1, gamma=gamma, weight_decay=wd)
    w.grad = g.clone()
    opt.step()
    expected = _adabound_by_hand(p0, g, 0.01, (0.9, 0.99), 0.1, gamma, 1e-8, wd)
    torch.testing.assert_close(w.detach(), expected)


def test_adabound_step_size_stays_in_bounds_that_close_on_final_lr():
    final_lr, gamma = 0.05, 0.1
    # A constant gradient spanning decades: Adam's raw rate lr/|g| hits both bounds.
    grad = torch.logspace(-5, 1, 7, dtype=torch.float64)
    w = nn.Parameter(torch.zeros(7, dtype=torch.float64))
    opt = AdaBound([w], lr=1e-3, final_lr=final_lr, gamma=gamma)
    clipped_low = clipped_high = False
    for t in range(1, 2001):
        w.grad = grad.clone()
        before = w.detach().clone()
        opt.step()
        rate = (before - w.detach()) / opt.state[w]["exp_avg"]
        lower, upper = adabound_bounds(final_lr, gamma, t)
        assert bool(((rate >= lower * (1 - 1e-6)) & (rate <= upper * (1 + 1e-6))).all()), t
        clipped_low |= bool(torch.isclose(rate, torch.tensor(lower, dtype=rate.dtype)).any())
        clipped_high |= bool(torch.isclose(rate, torch.tensor(upper, dtype=rate.dtype)).any())
    assert clipped_low and clipped_high
    assert rate.tolist() == pytest.approx([final_lr] * 7, rel=0.01)


def test_adabound_bounds_follow_the_lr_schedule():
    w = nn.Parameter(torch.ones(3))
    opt = AdaBound([w], lr=1e-3, final_lr=0.1, gamma=0.5)
    opt.param_groups[0]["lr"] = 1e-4  # a scheduler divided the LR by 10
    w.grad = torch.full((3,), 1e-6)  # tiny gradient: the lower bound is active
    opt.step()
    lower, _ = adabound_bounds(0.01, 0.5, 1)
    m = 0.1 * 1e-6
    torch.testing.assert_close(w.detach(), torch.full((3,), 1 - lower * m))


def test_adabound_state_dict_round_trips():
    w = nn.Parameter(torch.ones(2))
    opt = AdaBound([w], lr=1e-3)
    w.grad = torch.ones(2)
    opt.step()
    opt2 = AdaBound([nn.Parameter(torch.ones(2))], lr=5e-3)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["initial_lr_adabound"] == 1e-3
    assert opt2.state[opt2.param_groups[0]["params"][0]]["step"] == 1


@pytest.mark.parametrize(
    "kwargs", [{"lr": 0.0}, {"betas": (0.9, 1.0)}, {"final_lr": 0.0}, {"gamma": 0.0}]
)
def test_adabound_refuses_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="AdaBound"):
        AdaBound([nn.Parameter(torch.ones(1))], **kwargs)
