"""End to end: real Ray Tune + OptunaSearch + ASHA searches on digits (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
import torch
from optuna.trial import TrialState
from torch import nn

import tricksearch
from tricksearch.cli import main
from tricksearch.recipe import Recipe, load_recipe
from tricksearch.spaces import load_space, preset_recipe
from tricksearch.tuning._runner import SearchFailed
from tricksearch.tuning._tune import first_points

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers can't import tests


def _search(out: Path | str, flags: str = "") -> int:
    """`tricksearch search --space minimal FLAGS --out OUT` in-process; the exit status."""
    return main(["search", "--space", "minimal", *flags.split(), "--out", str(out)])


def _study(run: Path) -> optuna.Study:
    return optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")


def test_cli_search_writes_a_recipe_that_trains_again(tmp_path, capsys) -> None:
    run = tmp_path / "digits"
    code = _search(run, "--trials 8 --epochs 6 --seeds 2 --top-k 2")
    out = capsys.readouterr().out
    assert code == 0
    assert "best recipe:" in out and "vs baseline" in out
    assert "[8/8]" in out  # the progress display, not Ray's tables
    assert "Trial name" not in out and "╭" not in out

    study = _study(run)
    states = [t.state for t in study.trials]
    assert len(states) == 8
    assert TrialState.PRUNED in states  # ASHA stopped some, and Optuna was told so
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    for t in study.trials:
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["epochs"] < 6 and t.intermediate_values
    # the baseline and bag-of-tricks presets were evaluated first
    space = load_space("minimal")
    base = Recipe.from_dict({"model": {"name": "cnn-small"}, "budget": {"epochs": 6}})
    assert study.trials[0].params == space.point(preset_recipe("baseline", base))
    assert study.trials[1].params == space.point(preset_recipe("bag-of-tricks", base))
    assert [t.params for t in study.trials[:3]] == first_points(space, base, 8)
    # the baseline is a reference for ASHA's first rung (grace 6 // 4 = 1): stopped there, and
    # retrained at the full budget after the tuning like every candidate
    assert study.trials[0].state == TrialState.PRUNED and study.trials[0].user_attrs["reference"]
    assert max(study.trials[0].intermediate_values) == 1
    assert len((run / "trials.csv").read_text().strip().splitlines()) == 9

    recipe = load_recipe(run / "best_recipe.yaml")
    prov = recipe.provenance
    assert set(prov["versions"]) >= {"tricksearch", "torch", "torchvision", "ray", "optuna"}
    assert prov["search"]["trials"] == {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "fail": 0,
        "stopped": 0,  # ASHA's pruning is not mistaken for a time-budget cut
        "oom": 0,
    }
    assert prov["search"]["trial_epochs"] < prov["search"]["full_budget_epochs"] == 48
    assert prov["seeds"] == [0, 1] and len(prov["recipe"]["test_acc"]) == 2
    assert prov["recipe"]["val_acc_mean"] >= prov["baseline"]["val_acc_mean"] - 1e-12 or (
        prov["search"]["chosen_from"] != "baseline"
    )

    # `tricksearch train --recipe` reproduces the seed-0 retraining exactly on the same device,
    # in a fresh process with torch's default threads and no OMP/MKL variables: the recipe
    # records the thread count the trials used (--cpus-per-trial 1) and train uses it
    assert recipe.runtime.threads == 1
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_"))}
    cmd = [sys.executable, "-m", "tricksearch", "train", "--recipe", str(run / "best_recipe.yaml")]
    proc = subprocess.run(
        [*cmd, "--out", str(tmp_path / "t")], env=env, capture_output=True, text=True, timeout=300
    )
    code = proc.returncode
    assert code == 0
    metrics = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert metrics["val_acc"] == pytest.approx(prov["recipe"]["val_acc"][0], abs=1e-9)
    assert metrics["test_acc"] == pytest.approx(prov["recipe"]["test_acc"][0], abs=1e-9)

    # the same folder again is refused, pointing at --resume
    code = _search(run)
    assert code == 2 and "--resume" in capsys.readouterr().err


class DivergingNet(nn.Module):
    """A linear model whose output turns NaN once a weight exceeds 3: it diverges at high LR."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x.flatten(1))
        if self.fc.weight.detach().abs().max() > 3:
            out = out * float("nan")
        return out


def _space_file(tmp_path: Path, low: float, high: float) -> str:
    path = tmp_path / f"space_{low}_{high}.yaml"
    path.write_text(
        "include: [label_smoothing]\n"
        f"budget:\n  lr: {{low: {low}, high: {high}, log: true}}\n  batch_size: 128\n"
    )
    return str(path)


def test_diverging_trials_fail_and_are_never_chosen(tmp_path) -> None:
    result = tricksearch.search(
        dataset="digits",
        model=DivergingNet,
        space=_space_file(tmp_path, 0.003, 100.0),
        trials=8,
        epochs=4,
        out=tmp_path / "run",
        sampler="random",
        seeds=1,
        top_k=3,
        quiet=True,
    )
    study = _study(tmp_path / "run")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed, "the space should contain diverging learning rates"
    failed_lrs = {t.params["budget.lr"] for t in failed}
    assert result.best.budget.lr not in failed_lrs
    assert result.summary["search"]["trials"]["fail"] == len(failed)
    assert all(
        c["ok"] for c in result.candidates if c["label"] == result.summary["search"]["chosen_from"]
    )


def test_every_trial_failing_is_a_clear_error_and_no_recipe(tmp_path) -> None:
    with pytest.raises(SearchFailed, match="every trial failed"):
        tricksearch.search(
            dataset="digits",
            model=DivergingNet,
            space=_space_file(tmp_path, 50.0, 100.0),
            lr=60.0,  # the enqueued baseline trial uses the user's lr exactly: diverging too
            trials=3,
            epochs=2,
            out=tmp_path / "run",
            sampler="random",
            seeds=1,
            quiet=True,
        )
    assert not (tmp_path / "run" / "best_recipe.yaml").exists()
    assert (tmp_path / "run" / "trials.csv").read_text().count("FAIL") == 3


def test_sigterm_stops_a_search_as_cleanly_as_ctrl_c(tmp_path) -> None:
    # What `timeout`, Slurm and Kubernetes send. ray.init installs a handler that exits at once
    # (status 15, nothing said, no trials.csv); the search puts its own back.
    run = tmp_path / "run"
    flags = "--space minimal --trials 8 --epochs 8 --grace-period 8 --seeds 1 --top-k 1"
    cmd = [sys.executable, "-m", "tricksearch", "search", *flags.split(), "--out", str(run)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if (run / "study.db").exists():
            try:
                if any(t.state.is_finished() for t in _study(run).trials):
                    break
            except Exception:
                continue
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert f"tricksearch search --resume {run}" in err and "Traceback" not in err
    assert (run / "trials.csv").is_file()
    assert sum(t.state.is_finished() for t in _study(run).trials) >= 1


def test_two_searches_on_one_folder_one_is_refused(tmp_path) -> None:
    run = tmp_path / "run"
    flags = "--space minimal --trials 8 --epochs 8 --seeds 1 --top-k 1 --tuned-baseline 0"
    cmd = [sys.executable, "-m", "tricksearch", "search", *flags.split(), "--out", str(run)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.monotonic() + 120
    while not (run / ".search.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 2, second.stderr
    refused = ("another search is running in", "already holds a search")  # the latter: ended
    assert any(r in second.stderr for r in refused) and "Traceback" not in second.stderr
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode in (0, 130), err  # it may have finished already
    trials = _study(run).trials
    assert len(trials) <= 8 and len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(
        trials
    )


def test_interrupted_search_resumes_to_exactly_the_requested_trials(tmp_path) -> None:
    run = tmp_path / "run"
    flags = "--space minimal --trials 12 --epochs 8 --grace-period 8 --seeds 1 --top-k 1"
    cmd = [sys.executable, "-m", "tricksearch", "search", *flags.split(), "--out", str(run)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    finished = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if (run / "study.db").exists():
            try:
                trials = _study(run).trials
            except Exception:
                continue
            finished = sum(t.state.is_finished() for t in trials)
            if finished >= 3:
                break
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "--resume" in err and "Traceback" not in err
    done_before = sum(t.state.is_finished() for t in _study(run).trials)
    assert 3 <= done_before < 12

    code = main(["search", "--resume", str(run)])
    assert code == 0
    trials = _study(run).trials
    assert len(trials) == 12
    assert all(t.state.is_finished() for t in trials)
    params = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(params)) == 12, "no duplicates in the study"
    assert (run / "best_recipe.yaml").is_file()

    # Resuming a finished search redoes nothing: no trial, no retraining, the files untouched
    # (but the lock file, which names the process holding the folder while it runs).
    def files() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.is_file()}

    written = files()
    del written[".search.lock"]
    result = tricksearch.resume(run, quiet=True)
    assert result.recipe_path == run / "best_recipe.yaml" and result.best.provenance
    assert result.summary == json.loads((run / "results.json").read_text())["summary"]
    assert len(_study(run).trials) == 12
    assert {k: v for k, v in files().items() if k != ".search.lock"} == written

    # Interrupted during the final retraining (results.json not yet written): resume redoes it.
    (run / "results.json").unlink()
    again = tricksearch.resume(run, quiet=True)
    assert (run / "results.json").is_file() and len(_study(run).trials) == 12
    no_provenance = {"provenance": None}  # it holds the date and the timings
    assert again.best.to_dict() | no_provenance == result.best.to_dict() | no_provenance
    assert again.summary["recipe"]["val_acc"] == result.summary["recipe"]["val_acc"]


def test_missing_gpu_is_refused_before_any_trial(tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = _search(tmp_path / "run", "--trials 2 --epochs 1 --gpus-per-trial 1")
    err = capsys.readouterr().err
    assert code == 2
    assert "gpus_per_trial: got 1.0" in err and "0 GPU" in err
    assert not (tmp_path / "run").exists()  # refused before Ray and before any file


def test_bad_space_file_is_refused_before_ray_starts(tmp_path, capsys, monkeypatch) -> None:
    import ray

    bad = tmp_path / "bad.yaml"
    bad.write_text("tricks:\n  label_smoothing: {epsilon: {low: 0.3, high: 0.1}}\n")
    started = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(1))
    code = main(["search", "--space", str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "bad.yaml" in err and "epsilon" in err and "low" in err
    assert not (tmp_path / "run").exists()
    assert not started  # refused before Ray was asked to start


def test_api_search_on_user_tensors_and_factory(tmp_path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # floats in [0, 1]
    y = torch.tensor(digits.target)
    result = tricksearch.search(
        dataset=(x, y),
        model=DivergingNet,
        space=_space_file(tmp_path, 0.01, 0.1),
        trials=3,
        epochs=2,
        out=tmp_path / "run",
        seeds=1,
        top_k=1,
        quiet=True,
    )
    assert result.summary["dataset"]["name"] == "tensors"
    assert result.recipe_path.is_file()
    assert result.summary["recipe"]["val_acc_mean"] > 0.5


def test_time_budget_stops_and_closes_running_trials(tmp_path, capsys) -> None:
    # A trial's worker needs ~8 s on 2 cores to start (import torch, load the data) before its
    # first epoch (~1 s); 25 s leaves room for that on a slow machine, not for 50 trials.
    run = tmp_path / "run"
    flags = "--trials 50 --epochs 20 --grace-period 20 --time-budget 25 --seeds 1 --top-k 1"
    code = _search(run, flags)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    trials = _study(run).trials
    assert 0 < len(trials) < 50
    cut = sum(t.state != TrialState.COMPLETE for t in trials)  # no ASHA pruning: grace = epochs
    assert f"time budget of 25 s reached: {len(trials)} of 50 trials ran, {cut} of them" in (
        captured.out
    )
    assert all(t.state.is_finished() for t in trials), "nothing left RUNNING in the study"
    assert any(t.state == TrialState.COMPLETE or t.intermediate_values for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(max(t.intermediate_values) < 20 for t in pruned)


def test_time_budget_shorter_than_a_first_epoch_says_so(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = _search(run, "--trials 4 --epochs 2 --time-budget 0.5 --seeds 1 --top-k 1")
    err = capsys.readouterr().err
    assert code == 1
    assert "time budget (0.5 s) ran out before any trial finished its first epoch" in err
    assert "larger --time-budget" in err and "failed" not in err
    assert not (run / "best_recipe.yaml").exists()
    trials = _study(run).trials
    assert trials and all(t.state == TrialState.FAIL for t in trials)  # samplers skip them
    rows = (run / "trials.csv").read_text().splitlines()[1:]
    assert rows and all(r.split(",")[1] == "STOPPED" for r in rows)


def test_join_an_existing_cluster_and_refuse_a_dead_address(tmp_path, capsys) -> None:
    import shutil
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = _search(tmp_path / "dead", f"--trials 2 --epochs 1 --address 127.0.0.1:{port}")
    err = capsys.readouterr().err
    assert code == 2 and f"127.0.0.1:{port}" in err and "nothing answers" in err
    assert not (tmp_path / "dead" / "search.json").exists()  # nothing to resume: may retry

    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    start = [
        ray_cli,
        *f"start --head --port {port} --num-cpus 2 --include-dashboard false "
        "--node-ip-address 127.0.0.1 --disable-usage-stats".split(),
    ]
    subprocess.run(start, check=True, capture_output=True, timeout=120)
    try:
        flags = f"--trials 3 --epochs 2 --seeds 1 --top-k 1 --address 127.0.0.1:{port}"
        code = _search(tmp_path / "joined", flags)
        assert code == 0, capsys.readouterr().err
        assert len(_study(tmp_path / "joined").trials) == 3
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
