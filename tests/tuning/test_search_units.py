"""Search pieces without a Ray cluster: settings, samplers, the truthful searcher, progress."""

from __future__ import annotations

import io

import optuna
import pytest
from optuna.trial import TrialState

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tuning import SearchConfig
from tricksearch.tuning._progress import ProgressCallback, fmt_duration
from tricksearch.tuning._searcher import (
    RecordingASHA,
    TruthfulOptunaSearch,
    close_running_trials,
    make_sampler,
)
from tricksearch.tuning._study import outcome


def space(trial: optuna.Trial) -> None:
    trial.suggest_float("budget.lr", 0.01, 1.0, log=True)


@pytest.mark.parametrize(
    ("kwargs", "exc", "fragment"),
    [
        ({"trials": 0}, ConfigError, "trials: got 0"),
        ({"epochs": -3}, ConfigError, "epochs: got -3"),
        ({"epochs": "5"}, ConfigTypeError, "epochs: got '5'"),
        ({"sampler": "bayes"}, ConfigError, "sampler: got 'bayes', expected one of tpe"),
        ({"metric": "acc"}, ConfigError, "metric: got 'acc'"),
        ({"grace_period": 20, "epochs": 10}, ConfigError, "grace_period: got 20"),
        ({"reduction_factor": 1}, ConfigError, "reduction_factor: got 1"),
        ({"cpus_per_trial": 0}, ConfigError, "cpus_per_trial: got 0"),
        ({"gpus_per_trial": 2.5}, ConfigError, "whole number"),  # 2: a data-parallel trial
        ({"workers_per_trial": 0}, ConfigError, "workers_per_trial: got 0"),
        ({"workers_per_trial": 3, "batch_size": 64}, ConfigError, "do not divide the batch"),
        ({"gpus_per_trial": 2, "workers_per_trial": 3}, ConfigError, "one replica per GPU"),
    ],
)
def test_settings_refused(kwargs, exc, fragment) -> None:
    with pytest.raises(exc, match=fragment):
        SearchConfig(**kwargs)


def test_settings_round_trip_and_grace(tmp_path) -> None:
    c = SearchConfig(epochs=12, trials=5)
    assert c.grace == 3 and c.mode == "max"
    assert SearchConfig(epochs=2).grace == 1
    c.save(tmp_path / "search.json")
    assert SearchConfig.load(tmp_path) == c
    with pytest.raises(ConfigError, match="holds no search"):
        SearchConfig.load(tmp_path / "nope")


def test_sampler_needing_a_package_says_what_to_install(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "cmaes" else real(name)
    )
    with pytest.raises(ConfigError, match=r"pip install 'tricksearch\[cmaes\]'"):
        make_sampler("cmaes", 0, 10)
    assert isinstance(make_sampler("tpe", 0, 10), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", 0, 10), optuna.samplers.RandomSampler)


def _searcher(study_storage, *, adopt: bool = False, offset: int = 0) -> TruthfulOptunaSearch:
    return TruthfulOptunaSearch(
        space,
        metric="val_acc",
        mode="max",
        sampler=make_sampler("random", 0, 10, offset=offset),
        study_name="s",
        storage=study_storage,
        max_t=4,
        adopt_running=adopt,
    )


def test_early_stopped_trials_are_pruned_with_their_values(tmp_path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    s = _searcher(storage)
    for tid in ("a", "b", "c"):
        s.suggest(tid)
    for step in (1, 2):
        s.on_trial_result("a", {"val_acc": 0.1 * step, "training_iteration": step})
    s.on_trial_complete("a", {"val_acc": 0.3, "training_iteration": 3})  # stopped at 3 of 4
    s.on_trial_complete("b", {"val_acc": 0.9, "training_iteration": 4})  # the full budget
    s.on_trial_complete("c", None, error=True)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].intermediate_values == {1: 0.1, 2: 0.2, 3: 0.3}
    assert trials[0].user_attrs["epochs"] == 3
    assert trials[1].value == 0.9
    assert [outcome(t) for t in trials] == ["PRUNED", "COMPLETE", "FAIL"]


def test_trials_the_time_budget_ends_before_an_epoch_are_stopped_not_failed(tmp_path) -> None:
    # Ray ends a time-budgeted experiment by completing its running trials with their last
    # result ({} before the first report) and its pending ones with None, error=False.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    s = _searcher(storage)
    for tid in ("running", "pending", "crashed"):
        s.suggest(tid)
    s.on_trial_complete("running", {})
    s.on_trial_complete("pending", None)
    s.on_trial_complete("crashed", None, error=True)
    trials = optuna.load_study(study_name="s", storage=storage).trials
    # FAIL in the study (samplers skip it; a value-less PRUNED trial would rank as the worst) ...
    assert all(t.state == TrialState.FAIL for t in trials)
    # ... but read as stopped, not failed.
    assert [outcome(t) for t in trials] == ["STOPPED", "STOPPED", "FAIL"]


def test_asha_pruning_and_a_time_budget_cut_are_told_apart(tmp_path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    by_asha: set[str] = set()
    s = TruthfulOptunaSearch(
        space,
        metric="val_acc",
        mode="max",
        sampler=make_sampler("random", 0, 10),
        study_name="s",
        storage=storage,
        max_t=4,
        pruned_by_scheduler=by_asha,
    )
    for tid in ("asha", "budget", "full"):
        s.suggest(tid)
    by_asha.add("asha")  # RecordingASHA said STOP at its rung
    s.on_trial_complete("asha", {"val_acc": 0.2, "training_iteration": 1})
    s.on_trial_complete("budget", {"val_acc": 0.5, "training_iteration": 3})
    s.on_trial_complete("full", {"val_acc": 0.9, "training_iteration": 4})
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED, TrialState.COMPLETE]
    assert trials[1].intermediate_values == {3: 0.5}  # a candidate on its last value
    assert [outcome(t) for t in trials] == ["PRUNED", "STOPPED", "COMPLETE"]


def test_resume_adopts_interrupted_trials_without_duplicates(tmp_path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    first = _searcher(storage)
    p_done = first.suggest("a")
    p_cut = first.suggest("b")  # interrupted: stays RUNNING
    first.on_trial_complete("a", {"val_acc": 0.5, "training_iteration": 4})
    again = _searcher(storage, adopt=True, offset=2)
    assert again.suggest("x") == p_cut  # the interrupted trial, same parameters
    fresh = again.suggest("y")
    assert fresh not in (p_done, p_cut)
    again.on_trial_complete("x", {"val_acc": 0.6, "training_iteration": 4})
    again.on_trial_complete("y", {"val_acc": 0.7, "training_iteration": 4})
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert len(trials) == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_close_running_trials(tmp_path) -> None:
    study = optuna.create_study(direction="maximize")
    t1 = study.ask()
    t1.report(0.4, 1)
    study.ask()
    assert close_running_trials(study) == 2
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.FAIL]
    assert [outcome(t) for t in study.trials] == ["STOPPED", "STOPPED"]


class _T:
    def __init__(self, tid: str, result: dict) -> None:
        self.trial_id, self.last_result = tid, result


def test_progress_line_counts() -> None:
    out = io.StringIO()
    cb = ProgressCallback(
        total=5, already_done=1, max_t=5, metric="val_acc", mode="max", stream=out
    )
    cb.on_trial_start(0, [], _T("a", {}))
    cb.on_trial_start(0, [], _T("b", {}))
    cb.on_trial_complete(0, [], _T("a", {"training_iteration": 5, "val_acc": 0.8}))
    cb.on_trial_complete(0, [], _T("b", {"training_iteration": 2, "val_acc": 0.9}))
    cb.on_trial_error(0, [], _T("c", {}))
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("[4/5] running 0  pruned 1  failed 1  best val_acc 0.8000")
    cb.on_trial_complete(0, [], _T("d", {}))  # the time budget ended it before its first epoch
    last = out.getvalue().strip().splitlines()[-1]
    assert last.startswith("[5/5] running 0  pruned 1  failed 1  stopped 1  best val_acc 0.8000")
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(65) == "1:05"


class _Trial:
    def __init__(self, tid: str) -> None:
        self.trial_id = tid


def _asha(**kw) -> RecordingASHA:
    return RecordingASHA(
        metric="val_acc", mode="max", max_t=9, grace_period=1, reduction_factor=3, **kw
    )


def test_asha_told_the_earlier_trials_prunes_a_resumed_newcomer() -> None:
    # Rungs at epochs 1, 3 (and 9, the end). Six earlier trials scored 0.5..1.0 at epoch 1.
    history = [{1: 0.5 + 0.1 * i, 2: 0.6 + 0.1 * i, 3: 0.7 + 0.1 * i} for i in range(6)]
    told = _asha()
    assert told.remember(history, "max") == 12  # each trial in the rungs of epochs 1 and 3
    fresh = _asha()
    decisions = []
    for asha in (told, fresh):
        asha.on_trial_add(None, _Trial("new"))
        decisions.append(
            asha.on_trial_result(None, _Trial("new"), {"training_iteration": 1, "val_acc": 0.55})
        )
    # Against the earlier trials 0.55 is in the bottom two thirds: stopped. Empty rungs: kept.
    assert decisions == ["STOP", "CONTINUE"]
    assert told.pruned == {"new"} and not fresh.pruned


def test_asha_remember_for_a_minimised_metric_and_a_rung_reached_late() -> None:
    asha = RecordingASHA(metric="val_loss", mode="min", max_t=9, grace_period=2, reduction_factor=3)
    # Milestones 2 and 6: a trial that reported epochs 1..4 is recorded at rung 2 (epoch 2) only;
    # values are stored negated for "min", as ASHA does.
    assert asha.remember([{1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6}], "min") == 1
    rungs = {m: dict(r) for m, r in asha._brackets[0]._rungs}
    assert rungs == {6: {}, 2: {"earlier-0": -0.8}}


def test_norm_groups_of_resnet_cifar_divide_every_variant() -> None:
    # Variant C's deep stem has half the stem width (8 of 16 channels): groups 16 and 32 would
    # fail in those trials. Every group count the trait allows builds with every variant.
    from tricksearch.engine import load_data
    from tricksearch.models import build_model
    from tricksearch.recipe import Recipe
    from tricksearch.tuning._prepare import model_traits_for

    base = Recipe.from_dict({"model": {"name": "resnet-cifar"}})
    data = load_data(base)
    allowed = model_traits_for(base, data, None)["norm_groups"]
    assert allowed == (1, 2, 4, 8)

    def build(groups: int, variant: str) -> None:
        options = {"norm": "group", "norm_groups": groups, "variant": variant}
        build_model(
            "resnet-cifar", in_channels=1, num_classes=10, image_size=(8, 8), options=options
        )

    for variant in ("a", "b", "c", "d"):
        for groups in allowed:
            build(groups, variant)
    with pytest.raises(ConfigError, match="does not divide the 8 channels"):
        build(16, "c")


def test_model_capabilities_of_a_torchvision_model_and_a_plain_callable() -> None:
    # torchvision ResNets have residual blocks (zero-γ applies) but no ResNet-B/C/D option; a
    # user's callable without keyword options takes no model tweak at all. Their trials would
    # all fail with "has no option 'variant'" / "does not accept option 'dropout'".
    from torch import nn

    from tricksearch.engine import load_data
    from tricksearch.recipe import Recipe
    from tricksearch.tuning._prepare import model_traits_for

    base = Recipe.from_dict({"model": {"name": "torchvision:resnet18"}})
    data = load_data(base)
    tv = model_traits_for(base, data, None)
    assert tv["residual"] and set(tv["model_options"]) == {"dropout", "activation", "norm"}

    def plain(in_channels: int, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(64 * in_channels, num_classes))

    mine = model_traits_for(base, data, plain)
    assert mine["model_options"] == () and mine["norm_groups"] is None
