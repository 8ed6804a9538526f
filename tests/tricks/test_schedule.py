"""Tests of the ``schedule`` family: declarations, lr_at against torch's schedulers, scaling."""

from __future__ import annotations

import math
import warnings
from itertools import pairwise

import pytest
import torch

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tricks import tricks_in_family
from tricksearch.tricks.schedule import DECAYS, LRSchedule, make_lr_schedule, scaled_lr

SCHEDULE_SPECS = tricks_in_family("schedule")


def _schedule(section: dict, *, lr: float = 0.1, bs: int = 256, epochs: int = 10, spe: int = 4):
    return make_lr_schedule(section, base_lr=lr, batch_size=bs, epochs=epochs, steps_per_epoch=spe)


def _torch_lrs(make_scheduler, lr: float, steps: int) -> list[float]:
    """The LR torch's scheduler gives at each of ``steps`` optimizer steps."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make_scheduler(opt)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return lrs


def _ours(schedule: LRSchedule) -> list[float]:
    return [schedule.lr_at(i) for i in range(schedule.total_steps)]


# --- declarations ---------------------------------------------------------------------------


def test_family_has_the_declared_tricks():
    assert set(SCHEDULE_SPECS) == {"lr_scaling", "warmup", *DECAYS}
    decays = [s for s in SCHEDULE_SPECS.values() if s.group == "decay"]
    assert {s.name for s in decays} == set(DECAYS)
    assert [s.name for s in decays if s.required_default] == ["constant"]


@pytest.mark.parametrize("spec", SCHEDULE_SPECS.values(), ids=list(SCHEDULE_SPECS))
def test_spec_declares_paper_defaults_and_search_ranges(spec):
    assert spec.summary and spec.family == "schedule"
    assert spec.validate({}, f"schedule.{spec.name}") == spec.defaults()
    for p in spec.params:
        if p.search is None or p.search.choices is not None:
            continue
        assert p.low is None or p.search.low >= p.low, p.name
        assert p.high is None or p.search.high <= p.high, p.name


@pytest.mark.parametrize("spec", SCHEDULE_SPECS.values(), ids=list(SCHEDULE_SPECS))
def test_validate_refuses_out_of_range_values_naming_the_field(spec):
    for p in spec.params:
        where = f"schedule.{spec.name}"
        bad = {"bool": "yes", "choice": "nope"}.get(p.kind)
        if bad is None:
            bad = (p.low - 1) if p.low is not None else (p.high + 1)
        with pytest.raises((ConfigError, ConfigTypeError), match=rf"{where}\.{p.name}"):
            spec.validate({p.name: bad}, where)


def test_unknown_parameter_is_refused():
    with pytest.raises(ConfigError, match=r"schedule\.warmup\.epoch:"):
        _schedule({"warmup": {"epoch": 2}})


# --- off, scaling ---------------------------------------------------------------------------


def test_off_is_the_constant_base_lr():
    sched = _schedule({}, lr=0.05, bs=1024)
    assert sched.decay == "constant" and sched.warmup_steps == 0
    assert _ours(sched) == [0.05] * 40
    assert scaled_lr({}, 0.05, 1024) == 0.05
    assert sched.snapshot_epochs() == []


@pytest.mark.parametrize(
    ("rule", "bs", "expected"),
    [("linear", 512, 0.2), ("linear", 64, 0.025), ("sqrt", 1024, 0.2), ("sqrt", 64, 0.05)],
)
def test_lr_scaling_rules(rule, bs, expected):
    section = {"lr_scaling": {"rule": rule}}
    assert scaled_lr(section, 0.1, bs) == pytest.approx(expected)
    assert _schedule(section, bs=bs).peak_lr == pytest.approx(expected)


def test_lr_scaling_reference_batch():
    assert scaled_lr({"lr_scaling": {"reference_batch": 128}}, 0.1, 256) == pytest.approx(0.2)


@pytest.mark.parametrize(("base_lr", "bs"), [(0.0, 128), (-1.0, 128), (math.nan, 128), (0.1, 0)])
def test_bad_base_lr_or_batch_size(base_lr, bs):
    with pytest.raises(ConfigError):
        scaled_lr({}, base_lr, bs)


# --- warmup ---------------------------------------------------------------------------------


def test_linear_warmup_rises_monotonically_to_the_peak():
    sched = _schedule({"warmup": {"epochs": 3, "start_factor": 0.05}}, lr=0.4)
    lrs = _ours(sched)[: sched.warmup_steps + 1]
    assert sched.warmup_steps == 12
    assert lrs[0] == pytest.approx(0.4 * 0.05)
    assert all(a < b for a, b in pairwise(lrs))
    assert lrs[-1] == pytest.approx(0.4)


def test_linear_warmup_then_cosine_matches_torch_sequential_lr():
    sched = _schedule({"warmup": {"epochs": 2, "start_factor": 0.1}, "cosine": {}}, epochs=10)
    warm, total = sched.warmup_steps, sched.total_steps

    def torch_sched(opt):
        return torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=warm),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warm),
            ],
            milestones=[warm],
        )

    assert _ours(sched) == pytest.approx(_torch_lrs(torch_sched, 0.1, total), rel=1e-9, abs=1e-12)


def test_constant_warmup_then_lr_matches_torch_constant_lr():
    sched = _schedule({"warmup": {"epochs": 1.5, "kind": "constant", "start_factor": 0.1}})
    assert sched.warmup_steps == 6

    def torch_sched(opt):
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=0.1, total_iters=6)

    assert _ours(sched) == pytest.approx(_torch_lrs(torch_sched, 0.1, sched.total_steps))


def test_warmup_is_clamped_to_the_run_and_rounded_to_steps():
    assert _schedule({"warmup": {"epochs": 50}}, epochs=3).warmup_steps == 12
    assert _schedule({"warmup": {"epochs": 0.5}}, spe=5).warmup_steps == 3  # 2.5 rounds up
    assert _schedule({"warmup": {"epochs": 0}}).warmup_steps == 0
    whole = _schedule({"warmup": {"epochs": 50}, "cosine": {}}, epochs=3)
    assert whole.lr_at(whole.total_steps) == pytest.approx(0.0)  # decay of length 0: its floor


# --- decays ---------------------------------------------------------------------------------


@pytest.mark.parametrize("floor", [0.0, 0.05])
def test_cosine_without_warmup_matches_torch(floor):
    sched = _schedule({"cosine": {"min_lr_factor": floor}}, epochs=6, spe=5)

    def torch_sched(opt):
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30, eta_min=floor * 0.1)

    assert _ours(sched) == pytest.approx(_torch_lrs(torch_sched, 0.1, 30), rel=1e-9, abs=1e-12)


def test_cosine_ends_at_its_floor_and_decreases():
    sched = _schedule({"warmup": {"epochs": 1}, "cosine": {"min_lr_factor": 0.1}}, lr=1.0)
    lrs = _ours(sched)[sched.warmup_steps :]
    assert all(a > b for a, b in pairwise(lrs))
    assert sched.lr_at(sched.total_steps) == pytest.approx(0.1)
    assert sched.lr_at(sched.total_steps + 100) == pytest.approx(0.1)
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 35 / 36)))


def test_linear_decay_goes_from_peak_to_floor():
    sched = _schedule({"linear": {"min_lr_factor": 0.2}}, lr=1.0, epochs=5, spe=2)
    assert _ours(sched) == pytest.approx([1.0 - 0.8 * i / 10 for i in range(10)])
    assert sched.lr_at(10) == pytest.approx(0.2)


def test_step_decay_every_third_of_the_run():
    sched = _schedule({"step": {"every_fraction": 1 / 3, "gamma": 0.1}}, lr=1.0, epochs=9, spe=1)
    assert _ours(sched) == pytest.approx([1.0] * 3 + [0.1] * 3 + [0.01] * 3)


def test_step_decay_matches_torch_step_lr_after_warmup():
    sched = _schedule({"warmup": {"epochs": 2}, "step": {"every_fraction": 0.25, "gamma": 0.5}})
    warm, every = sched.warmup_steps, sched.step_every
    assert (warm, every) == (8, 8)

    def torch_sched(opt):
        return torch.optim.lr_scheduler.SequentialLR(
            opt,
            [
                torch.optim.lr_scheduler.LinearLR(opt, 0.1, 1.0, total_iters=warm),
                torch.optim.lr_scheduler.StepLR(opt, step_size=every, gamma=0.5),
            ],
            milestones=[warm],
        )

    assert _ours(sched) == pytest.approx(_torch_lrs(torch_sched, 0.1, 40))


@pytest.mark.parametrize("t_mult", [1, 2])
def test_sgdr_matches_torch_warm_restarts(t_mult):
    section = {"cosine_restarts": {"t0_epochs": 2, "t_mult": t_mult, "min_lr_factor": 0.01}}
    sched = _schedule(section, epochs=14, spe=3)

    def torch_sched(opt):
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=6, T_mult=t_mult, eta_min=0.001
        )

    ours, ref = _ours(sched), _torch_lrs(torch_sched, 0.1, 42)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)
    restarts = [i for i in range(1, 42) if ours[i] > ours[i - 1]]
    assert restarts == ([6, 12, 18, 24, 30, 36] if t_mult == 1 else [6, 18])


def test_sgdr_restarts_count_from_the_end_of_warmup():
    section = {"warmup": {"epochs": 1}, "cosine_restarts": {"t0_epochs": 2, "t_mult": 2}}
    sched = _schedule(section, epochs=11, spe=4)
    lrs = _ours(sched)
    restarts = [i for i in range(5, len(lrs)) if lrs[i] > lrs[i - 1]]
    assert restarts == [4 + 8, 4 + 8 + 16]
    assert lrs[4] == lrs[12] == lrs[28] == pytest.approx(0.1)


def test_snapshot_epochs_are_the_cycle_ends():
    section = {"cosine_restarts": {"t0_epochs": 2, "t_mult": 2, "snapshot_ensemble": True}}
    assert _schedule(section, epochs=14).snapshot_epochs() == [1, 5, 13]
    assert _schedule(section, epochs=13).snapshot_epochs() == [1, 5]  # last cycle unfinished
    with_warmup = {"warmup": {"epochs": 1}, **section}
    assert _schedule(with_warmup, epochs=15).snapshot_epochs() == [2, 6, 14]
    section["cosine_restarts"]["snapshot_ensemble"] = False
    assert _schedule(section, epochs=14).snapshot_epochs() == []
    assert _schedule({"cosine": {}}).snapshot_epochs() == []


def test_two_decays_clash():
    with pytest.raises(ConfigError, match=r"'cosine' and 'step' clash.*group 'decay'"):
        _schedule({"cosine": {}, "step": {}})


# --- LRSchedule as an object ----------------------------------------------------------------


def test_lr_at_is_pure_and_factor_is_relative_to_peak():
    sched = _schedule({"warmup": {"epochs": 1}, "cosine_restarts": {"t0_epochs": 3}}, lr=0.3)
    forward = _ours(sched)
    backward = [sched.lr_at(i) for i in reversed(range(sched.total_steps))][::-1]
    assert forward == backward
    assert sched.factor_at(17) == pytest.approx(sched.lr_at(17) / 0.3)


@pytest.mark.parametrize("step", [-1, 1.5, True])
def test_lr_at_refuses_bad_steps(step):
    with pytest.raises(ValueError, match="step"):
        _schedule({}).lr_at(step)


def test_bad_run_length_is_refused():
    with pytest.raises(ConfigError, match="epochs"):
        _schedule({}, epochs=0)
    with pytest.raises(ConfigTypeError, match="steps_per_epoch"):
        _schedule({}, spe=2.5)
    with pytest.raises(ValueError, match="warmup_steps"):
        LRSchedule(peak_lr=0.1, total_steps=4, steps_per_epoch=1, warmup_steps=5)


def test_torch_scheduler_replays_lr_at():
    sched = _schedule({"warmup": {"epochs": 1}, "cosine": {"min_lr_factor": 0.05}}, epochs=5)
    ref = _torch_lrs(sched.torch_scheduler, sched.peak_lr, sched.total_steps)
    assert ref == pytest.approx(_ours(sched), rel=1e-12)


def test_torch_scheduler_state_dict_round_trips():
    sched = _schedule({"cosine": {}})
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=sched.peak_lr)
    lam = sched.torch_scheduler(opt)
    for _ in range(7):
        opt.step()
        lam.step()
    state = lam.state_dict()
    opt2 = torch.optim.SGD([param], lr=sched.peak_lr)
    lam2 = sched.torch_scheduler(opt2)
    lam2.load_state_dict(state)
    assert lam2.last_epoch == 7
    assert lam2.get_last_lr() == pytest.approx([sched.lr_at(7)])
