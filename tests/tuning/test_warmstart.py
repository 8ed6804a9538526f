"""``--warm-start DIR``: an earlier search's finished trials as a prior of the new sampler."""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tricksearch.errors import ConfigError
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._searcher import make_sampler
from tricksearch.tuning._study import STUDY_NAME
from tricksearch.tuning._warmstart import (
    DIRECTION_ATTR,
    _quantiles,
    load_prior,
    mapped_value,
    prior_line,
    warm_start_sampler,
)

optuna.logging.set_verbosity(optuna.logging.ERROR)


# --- (a) a planted effect ----------------------------------------------------------------------
def _score(trial: optuna.Trial, shift: float = 0.0) -> float:
    """A 6-dim mixed objective (log float, float, int, two categoricals, a conditional float);
    its best is near lr 10^-1.5 (shifted by ``shift``), a 0.7, kind y, on with b 0.3, n 5."""
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    a = trial.suggest_float("a", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["x", "y", "z"])
    on = trial.suggest_categorical("on", [True, False])
    n = trial.suggest_int("n", 1, 8)
    s = -((math.log10(lr) + 1.5 + shift) ** 2) - 4 * (a - 0.7) ** 2 - 0.05 * (n - 5) ** 2
    s += {"x": 0.0, "y": 1.0, "z": 0.2}[kind]
    if on:
        b = trial.suggest_float("b", 0.0, 1.0)
        s += 1.0 - 3 * (b - 0.3) ** 2
    return s


def _earlier_search() -> list[optuna.trial.FrozenTrial]:
    """40 TPE trials of a related task on another scale, minimised (as a val_loss would be)."""
    study = optuna.create_study(direction="minimize", sampler=make_sampler("tpe", 100, 40))
    study.optimize(lambda t: 10.0 - 7.0 * _score(t, shift=0.2), n_trials=40)
    return study.trials


def _trials_to_reach(target: float, sampler: optuna.samplers.BaseSampler, budget: int) -> int:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(budget):
        study.optimize(_score, n_trials=1)
        if study.best_value >= target:
            return i + 1
    return budget + 1


def test_a_warm_started_tpe_reaches_the_target_in_fewer_trials() -> None:
    prior = _earlier_search()
    cold, warm = [], []
    for seed in range(10):
        cold.append(_trials_to_reach(1.5, make_sampler("tpe", seed, 30), budget=40))
        sampler = warm_start_sampler(make_sampler("tpe", seed, 30), prior, direction="minimize")
        warm.append(_trials_to_reach(1.5, sampler, budget=40))
    # measured: cold median 21 (2…36), warm median 2 (2…4)
    assert statistics.median(warm) <= statistics.median(cold) / 2
    assert statistics.median(cold) - statistics.median(warm) >= 5


# --- (b) the prior stays out of the study -------------------------------------------------------
def test_prior_trials_never_enter_the_study_and_count_as_startup(tmp_path) -> None:
    prior = _earlier_search()
    base = make_sampler("tpe", 0, 30)
    random_calls = []
    original = base._random_sampler.sample_independent
    base._random_sampler.sample_independent = lambda *a: random_calls.append(a) or original(*a)
    sampler = warm_start_sampler(base, prior, direction="minimize")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, direction="maximize", sampler=sampler)
    study.optimize(_score, n_trials=5)

    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]
    reloaded = optuna.load_study(study_name=study.study_name, storage=storage)
    assert len(reloaded.trials) == 5
    assert all(t.number >= 0 for t in reloaded.trials)
    assert not random_calls  # 40 prior trials >= TPE's 10 startup trials: no random start
    view = sampler.view(study)
    assert len(view.prior) == 40 and all(t.number < 0 for t in view.prior)
    assert len(view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) == 45
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5

    cold = make_sampler("tpe", 0, 30)
    cold_calls = []
    original = cold._random_sampler.sample_independent
    cold._random_sampler.sample_independent = lambda *a: cold_calls.append(a) or original(*a)
    optuna.create_study(direction="maximize", sampler=cold).optimize(_score, n_trials=1)
    assert cold_calls  # without a prior the first trial is random


# --- (c) parameters kept, values mapped by rank ------------------------------------------------
def _trial(params, dists, value=None, steps=None, state=TrialState.COMPLETE):
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions={k: dists[k] for k in params},
        intermediate_values=steps or {},
    )


NEW_SPACE = {
    "x": FloatDistribution(0.0, 1.0),
    "y": FloatDistribution(0.0, 1.0),
    "c": CategoricalDistribution(["a", "b", "c"]),
    "k": FloatDistribution(1.0, 8.0),
}


def test_incompatible_parameters_and_empty_trials_are_dropped() -> None:
    old = {
        "x": FloatDistribution(0.0, 2.0),
        "y": FloatDistribution(0.0, 4.0),
        "c": CategoricalDistribution(["a", "z"]),
        "k": IntDistribution(1, 8),  # int before, float now: another kind
        "gone": FloatDistribution(0.0, 1.0),  # not in the new space
    }
    prior = [
        _trial({"x": 0.5, "y": 2.0, "c": "a", "k": 3, "gone": 0.1}, old, value=1.0),
        _trial({"x": 1.5, "y": 0.25, "c": "z", "k": 4}, old, value=2.0),
        _trial({"x": 1.5, "c": "z", "k": 5, "gone": 0.2}, old, value=3.0),  # nothing left
    ]
    sampler = warm_start_sampler(optuna.samplers.TPESampler(), prior, space=NEW_SPACE)
    study = optuna.create_study(direction="maximize")
    kept = sampler.view(study).prior
    assert [t.params for t in kept] == [{"x": 0.5, "c": "a"}, {"y": 0.25}]
    assert kept[0].distributions == {"x": NEW_SPACE["x"], "c": NEW_SPACE["c"]}


def test_the_space_is_learned_from_the_study_and_the_sampled_parameters() -> None:
    prior = [_trial({"x": 0.5, "c": "b"}, {k: NEW_SPACE[k] for k in ("x", "c")}, value=1.0)]
    sampler = warm_start_sampler(optuna.samplers.TPESampler(), prior)
    study = optuna.create_study(sampler=sampler)
    assert sampler.view(study).prior == []  # nothing of the new space known yet
    study.ask({"x": NEW_SPACE["x"]})
    assert [t.params for t in sampler.view(study).prior] == [{"x": 0.5}]


def test_the_relative_space_is_inferred_with_the_prior() -> None:
    """Samplers cache the space of the trial numbers they saw: the prior (numbered below 0) is
    seen too, so a parameter the prior lacks is not sampled jointly (GP would fail on it)."""
    xy = {k: NEW_SPACE[k] for k in ("x", "y")}
    xyc = {**xy, "c": NEW_SPACE["c"]}
    prior = [_trial({"x": i / 10, "y": 0.5}, xy, value=float(i)) for i in range(3)]
    prior.append(_trial({"x": 0.5, "y": 0.5, "c": "b"}, xyc, value=1.0))  # the last has c
    base = optuna.samplers.TPESampler(multivariate=True, n_startup_trials=2)
    sampler = warm_start_sampler(base, prior)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for v in (1.0, 2.0):
        study.add_trial(_trial({"x": 0.5, "y": 0.5, "c": "a"}, xyc, value=v))
    trial = study.ask()
    assert set(sampler.infer_relative_search_space(study, study.trials[-1])) == {"x", "y"}
    study.tell(trial, 0.0)


def test_quantiles_share_ties() -> None:
    assert _quantiles([1.0, 1.0, 2.0]) == [0.25, 0.25, 1.0]
    assert _quantiles([5.0]) == [0.5]
    assert mapped_value(0.5, [10.0, 40.0], maximize=True) == 25.0
    assert mapped_value(1.0, [7.0], maximize=True) == 10.5  # one own value is the median
    assert mapped_value(0.0, [7.0], maximize=True) == 3.5
    assert mapped_value(1.0, [7.0], maximize=False) == 3.5  # minimised: better is smaller
    assert mapped_value(0.25, [], maximize=True) == 0.25
    assert mapped_value(0.25, [], maximize=False) == -0.25


def test_prior_values_are_mapped_by_rank_onto_the_new_study() -> None:
    d = {"x": NEW_SPACE["x"]}
    # the earlier search minimised (val_loss): 1.0 is its best, 3.0 its worst; the PRUNED one
    # counts its value at its furthest epoch (2.5 at epoch 3)
    prior = [
        _trial({"x": 0.1}, d, value=3.0),
        _trial({"x": 0.2}, d, value=1.0),
        _trial({"x": 0.3}, d, value=2.0),
        _trial({"x": 0.4}, d, steps={1: 0.5, 3: 2.5}, state=TrialState.PRUNED),
    ]
    sampler = warm_start_sampler(
        optuna.samplers.TPESampler(n_startup_trials=10), prior, direction="minimize"
    )
    study = optuna.create_study(direction="maximize", sampler=sampler)  # val_acc
    for v in (10.0, 20.0, 30.0):
        study.add_trial(_trial({"x": 0.5}, d, value=v, steps={9: v}))
    study.add_trial(_trial({"x": 0.5}, d, steps={3: 40.0}, state=TrialState.PRUNED))
    # own values (COMPLETE values, PRUNED last values): 10, 20, 30, 40; prior quantiles by
    # goodness: 3.0 -> 0, 2.5 -> 1/3, 2.0 -> 2/3, 1.0 -> 1
    kept = sampler.view(study).prior
    complete = {t.params["x"]: t.value for t in kept if t.state == TrialState.COMPLETE}
    assert complete == pytest.approx({0.1: 10.0, 0.2: 40.0, 0.3: 30.0})
    (pruned,) = [t for t in kept if t.state == TrialState.PRUNED]
    assert pruned.intermediate_values == pytest.approx({3: 20.0})  # its epoch kept: 3
    assert pruned.value is None

    # with no own value yet: the quantile itself (the order is all that matters)
    empty = optuna.create_study(direction="maximize", sampler=sampler)
    kept = sampler.view(empty).prior
    values = {t.params["x"]: t.value for t in kept if t.state == TrialState.COMPLETE}
    assert values == pytest.approx({0.1: 0.0, 0.2: 1.0, 0.3: 2 / 3})


def test_the_prior_fades_to_its_best_once_the_study_has_its_own_startup() -> None:
    d = {"x": NEW_SPACE["x"]}
    prior = [_trial({"x": i / 10}, d, value=float(i)) for i in range(6)]  # maximised: 5 best
    sampler = warm_start_sampler(optuna.samplers.TPESampler(n_startup_trials=4), prior)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for i in range(3):
        study.add_trial(_trial({"x": 0.5}, d, value=float(i)))
    assert len(sampler.view(study).prior) == 6  # 3 own < 4 startup: the whole prior
    study.add_trial(_trial({"x": 0.5}, d, value=3.0))
    assert len(sampler.view(study).prior) == 6  # ceil(6 * 4 / 4)
    for i in range(4):
        study.add_trial(_trial({"x": 0.5}, d, value=float(i)))
    kept = sampler.view(study).prior  # ceil(6 * 4 / 8) = 3: the best three
    assert sorted(t.params["x"] for t in kept) == [0.3, 0.4, 0.5]


# --- (d) reading an earlier search: its errors ------------------------------------------------
def _write_search(folder: Path, states: list[TrialState]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / 'study.db'}")
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="minimize")
    d = {"x": NEW_SPACE["x"]}
    for i, state in enumerate(states):
        if state == TrialState.COMPLETE:
            study.add_trial(_trial({"x": 0.1 * i}, d, value=float(i), steps={6: float(i)}))
        elif state == TrialState.PRUNED:
            study.add_trial(_trial({"x": 0.1 * i}, d, steps={2: float(i)}, state=state))
        else:
            study.add_trial(_trial({"x": 0.1 * i}, d, state=state))
    study.add_trial(_trial({"x": 0.9}, d, state=TrialState.PRUNED))  # pruned before a value
    storage.engine.dispose()
    (folder / "search.json").write_text(json.dumps({"dataset": "digits", "model": "cnn-small"}))


def test_load_prior_reads_the_finished_trials_of_an_earlier_search(tmp_path) -> None:
    run = tmp_path / "earlier"
    _write_search(run, [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
    before = (run / "study.db").read_bytes()
    prior = load_prior(run)
    assert [t.state for t in prior] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert all(t.system_attrs[DIRECTION_ATTR] == "minimize" for t in prior)
    assert (run / "study.db").read_bytes() == before  # read from a copy
    assert prior_line(run, prior) == (
        f"warm start: 2 finished trials of {run} (dataset digits, model cnn-small)"
    )


def _one_line_error(run: Path, *expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_prior(run)
    message = str(info.value)
    assert "\n" not in message and message.startswith("warm_start: ")
    assert str(run) in message and "expected" in message
    for part in expected:
        assert part in message


def test_load_prior_refuses_bad_folders_in_one_line(tmp_path) -> None:
    _one_line_error(tmp_path / "missing", "does not exist")
    (tmp_path / "file").write_text("x")
    _one_line_error(tmp_path / "file", "a file, not a folder")
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", "holds no study.db")
    for name, content, why in (
        ("zero", b"", "is empty (0 bytes)"),
        ("junk", b"not a database at all, no", "is not a SQLite database"),
        ("cut", b"SQLite format 3\x00" + b"\x00" * 40, "cannot be read"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.db").write_bytes(content)
        _one_line_error(tmp_path / name, why)
    (tmp_path / "other").mkdir()
    db = sqlite3.connect(tmp_path / "other" / "study.db")
    db.execute("create table t (a)")
    db.close()
    _one_line_error(tmp_path / "other", "cannot be read")
    _write_search(tmp_path / "unfinished", [TrialState.FAIL, TrialState.RUNNING])
    _one_line_error(tmp_path / "unfinished", "holds no finished trial (3 trials")


def test_the_config_refuses_a_missing_folder_and_its_own_out(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^warm_start: got '.*nowhere', which does not exist"):
        SearchConfig(warm_start=str(tmp_path / "nowhere"), out=str(tmp_path / "new"))
    with pytest.raises(ConfigError, match=r"^warm_start: got .*, the search's own --out folder"):
        SearchConfig(warm_start=str(tmp_path), out=str(tmp_path))


# --- (e) the option, saved and resumed ------------------------------------------------------------
def test_the_option_round_trips_and_a_resume_refuses_to_change_it(
    tmp_path, monkeypatch, cli
) -> None:
    from tricksearch.tuning import _runner
    from tricksearch.tuning.cli import _add_search, _resumed, run_search_cmd

    earlier, other = tmp_path / "earlier", tmp_path / "other"
    earlier.mkdir()
    other.mkdir()
    parser = argparse.ArgumentParser()
    _add_search(parser)
    assert parser.parse_args([]).warm_start is None
    got = []
    monkeypatch.setattr(_runner, "run_search", lambda config, **kw: got.append(config))
    monkeypatch.chdir(tmp_path)
    args = parser.parse_args(["--warm-start", "earlier", "--out", str(tmp_path / "new")])
    assert run_search_cmd(args) == 0
    config = got[0]
    assert config.warm_start == str(earlier.resolve())  # absolute: a resume reads the same
    run = tmp_path / "new"
    run.mkdir()
    config.save(run / "search.json")
    assert json.loads((run / "search.json").read_text())["warm_start"] == str(earlier)
    resumed = _resumed(argparse.Namespace(**{**vars(parser.parse_args([])), "resume": str(run)}))
    assert resumed.warm_start == str(earlier)
    code, _, err = cli("search", "--resume", str(run), "--warm-start", str(other))
    assert code == 2 and "--warm-start cannot change a search being resumed" in err
    assert len(err.strip().splitlines()) == 1

    import tricksearch

    tricksearch.search("digits", warm_start="earlier", out=tmp_path / "py")  # the Python API
    assert got[-1].warm_start == str(earlier)


# --- end to end: a real search warm-started from another (slow) -----------------------------
@pytest.mark.slow
def test_a_search_warm_started_from_an_earlier_one(tmp_path, capsys) -> None:
    from tricksearch.cli import main

    flags = [
        "search", "--space", "minimal", "--epochs", "4", "--seeds", "1", "--top-k", "1",
        "--tuned-baseline", "0", "--no-minimal", "--max-concurrent", "1",
    ]  # fmt: skip
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*flags, "--trials", "10", "--out", str(first)]) == 0
    capsys.readouterr()
    assert main([*flags, "--trials", "8", "--warm-start", str(first), "--out", str(second)]) == 0
    out = capsys.readouterr().out

    def study(run: Path) -> optuna.Study:
        return optuna.load_study(study_name=STUDY_NAME, storage=f"sqlite:///{run / 'study.db'}")

    prior = load_prior(first)
    line = f"warm start: {len(prior)} finished trials of {first} (dataset digits, model cnn-small)"
    assert line in out.splitlines()[:4]
    own = study(second).trials
    assert [t.number for t in own] == list(range(8))
    assert len((second / "trials.csv").read_text().strip().splitlines()) == 1 + 8
    assert json.loads((second / "search.json").read_text())["warm_start"] == str(first)

    # after the enqueued presets, the sampler draws near the earlier search's best
    switches = ("schedule.decay", "schedule.warmup", "loss.label_smoothing")
    best = study(first).best_trial.params
    sampled = [t for t in own if "fixed_params" not in t.system_attrs]
    assert len(sampled) >= 3
    drawn = [[t.params[k] == best[k] for k in switches] for t in sampled]
    assert sum(drawn[0]) >= 2  # the first draw, with the whole prior in view
    assert sum(map(sum, drawn)) >= 0.6 * 3 * len(drawn)  # random: 0.5
