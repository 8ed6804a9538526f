"""End to end: data-parallel trials (``--workers-per-trial 2``, gloo on CPU) in a real Ray Tune
search with ASHA on digits, interrupted and resumed (slow). What needs a GPU (NCCL, SyncBN) is
not run here; see README "Data-parallel trials"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tricksearch.cli import main
from tricksearch.recipe import load_recipe

pytestmark = pytest.mark.slow

FLAGS = (
    "--space minimal --model mlp --trials 6 --epochs 3 --grace-period 1 --reduction-factor 3 "
    "--batch-size 64 --workers-per-trial 2 --seeds 1 --top-k 1 --tuned-baseline 0 --no-minimal"
)


def _study(run: Path) -> optuna.Study:
    return optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")


def _finished(run: Path) -> int:
    try:
        return sum(t.state.is_finished() for t in _study(run).trials)
    except Exception:  # the study is being created
        return 0


def test_ddp_trials_are_cut_by_asha_and_an_interrupted_search_resumes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "tricksearch", "search", *FLAGS.split(), "--out", str(run)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        # the study is read once Tune runs (reading it while it is created races its schema)
        if (run / "ray").exists() and _finished(run) >= 2:
            break
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "--resume" in err and "Traceback" not in err
    assert 2 <= _finished(run) < 6

    assert main(["search", "--resume", str(run)]) == 0
    trials = _study(run).trials
    assert len(trials) == 6 and all(t.state.is_finished() for t in trials)
    states = [t.state for t in trials]
    assert TrialState.FAIL not in states, [t.user_attrs for t in trials]
    # ASHA stopped at least one DDP trial at a rung, and the searcher was told (PRUNED with its
    # per-epoch values)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["epochs"] < 3 and t.intermediate_values for t in pruned)
    rows = (run / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 7
    # the recipe records the world size, so `train --recipe` trains with 2 workers again
    recipe = load_recipe(run / "best_recipe.yaml")
    assert recipe.runtime.workers == 2 and recipe.budget.batch_size == 64


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("--workers-per-trial 0", "--workers-per-trial: got 0"),
        ("--workers-per-trial -1", "--workers-per-trial: got -1"),
        ("--workers-per-trial 3 --batch-size 64", "do not divide the batch size 64"),
        ("--gpus-per-trial 2.5", "whole number"),
    ],
)
def test_bad_worker_options_are_one_line_before_ray(tmp_path, capsys, flags, expected) -> None:
    try:  # argparse exits; SearchConfig's ConfigError is printed and returned as status 2
        code = main(["search", *flags.split(), "--out", str(tmp_path / "run")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    line = err.splitlines()[-1]
    assert code == 2 and expected in line, err
    assert not (tmp_path / "run").exists()
