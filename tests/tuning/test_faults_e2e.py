"""Real faults in real Ray Tune searches (slow): a worker killed mid-trial (as by the OOM killer)
is restarted from the trial's last checkpoint and ends with the numbers of an uninterrupted run;
a worker lost every time ends in FAIL with the cause; a hung trial is stopped by
``--trial-timeout``; the second node of a two-node cluster dies mid-search."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle
import torch
from torch import nn

import tricksearch

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers can't import tests


class Fragile(nn.Module):
    """A linear model on 8×8 images whose worker process dies (SIGKILL, as from the OOM killer)
    or hangs at its 14th training batch (in the second epoch), while fewer than ``times`` marker
    files exist in ``markers``: one per fault, so the faults stop after ``times``."""

    def __init__(
        self, in_channels: int, num_classes: int, *, markers: str, times: int, fault: str
    ) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)
        self.markers, self.times, self.fault, self.calls = Path(markers), times, fault, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 16:  # not the driver's pre-flight (batches of 16)
            self.calls += 1
            done = len(list(self.markers.glob("fault-*")))
            if self.calls == 14 and done < self.times:
                (self.markers / f"fault-{done}").write_text(str(os.getpid()))
                if self.fault == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(3600)
        return self.fc(x.flatten(1))


def _search(out: Path, model, **extra) -> tricksearch.SearchResult:
    settings = dict(
        dataset="digits",
        space="minimal",
        trials=4,
        epochs=3,
        sampler="random",
        seeds=1,
        top_k=1,
        tuned_baseline=0,
        minimal=False,
        max_concurrent=1,  # one trial at a time: the same ASHA decisions in both searches
        quiet=True,
    )
    return tricksearch.search(model=model, out=out, **(settings | extra))


def _values(run: Path) -> list[tuple[str, dict[int, float]]]:
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    return [(t.state.name, t.intermediate_values) for t in study.trials]


def _summary(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["summary"]["search"]


def _leftover_checkpoints(run: Path) -> list[Path]:
    return [p for p in (run / "ray").rglob("checkpoint_*") if p.is_dir()]


def test_killed_worker_resumes_from_its_checkpoint_with_the_same_numbers(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    killed = functools.partial(Fragile, markers=str(markers), times=1, fault="kill")
    _search(tmp_path / "killed", killed)
    assert len(list(markers.glob("fault-*"))) == 1  # the worker was killed once
    never = functools.partial(Fragile, markers=str(markers), times=0, fault="kill")
    _search(tmp_path / "whole", never)

    got, want = _values(tmp_path / "killed"), _values(tmp_path / "whole")
    assert [state for state, _ in got] == [state for state, _ in want]
    assert "FAIL" not in [state for state, _ in got]
    assert got == want  # every epoch's val accuracy, the restarted trial's included
    summary = _summary(tmp_path / "killed")
    assert summary["retries"] == 1 and _summary(tmp_path / "whole")["retries"] == 0
    assert summary["checkpoint_peak_bytes"] > 0
    assert _leftover_checkpoints(tmp_path / "killed") == []


def test_a_worker_lost_every_time_fails_with_its_cause(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    model = functools.partial(Fragile, markers=str(markers), times=2, fault="kill")
    storage = tmp_path / "elsewhere"  # --storage: Ray's checkpoints go there, not to RUN/ray
    _search(tmp_path / "run", model, max_retries=1, storage=str(storage))
    assert [p.name[:4] for p in storage.iterdir()] == ["run-"]
    assert not (tmp_path / "run" / "ray").exists()
    assert not [p for p in storage.rglob("checkpoint_*") if p.is_dir()]  # deleted at the end
    states = _values(tmp_path / "run")
    assert [s for s, _ in states].count("FAIL") == 1
    study = optuna.load_study(
        study_name="tricksearch", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    )
    (failed,) = [t for t in study.trials if t.state.name == "FAIL"]
    assert "(after 1 retries)" in failed.user_attrs["error"]
    assert _summary(tmp_path / "run")["retries"] == 1


def test_a_hung_trial_is_stopped_by_the_trial_timeout(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    model = functools.partial(Fragile, markers=str(markers), times=1, fault="hang")
    t0 = time.monotonic()
    # grace = epochs: no rung below the budget, so the baseline (first) runs into the hang
    _search(tmp_path / "run", model, trial_timeout=25, max_retries=0, grace_period=3)
    assert time.monotonic() - t0 < 600
    study = optuna.load_study(
        study_name="tricksearch", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    )
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["error"].startswith("timeout after ")
    assert "(--trial-timeout 25 s)" in failed[0].user_attrs["error"]
    assert len(study.trials) == 4  # the others ran on
    assert _summary(tmp_path / "run")["checkpoint_peak_bytes"] == 0


# --- a real two-node cluster on this machine ---------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(
    *args: str, env: dict[str, str], python: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``ray ARGS`` (Ray's own CLI), run by ``python`` when given: the node's interpreter (its
    workers start in ``cwd``)."""
    if python is None:
        cli = [shutil.which("ray") or str(Path(sys.executable).with_name("ray"))]
    else:
        cli = [python, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
    return subprocess.run(
        [*cli, *args], env=env, capture_output=True, text=True, timeout=180, cwd=cwd
    )


@contextlib.contextmanager
def _cluster(head_cpus: int, node_cpus: int, node_python: str | None = None, node_cwd=None):
    """A real two-node Ray cluster on this machine: a head and a second node with their own temp
    dirs (short: Ray's socket paths must stay under 107 bytes) and ports, token auth as Ray 2.60
    uses when a token exists. Yields (address, environment for clients, second node's temp dir);
    ``ray stop --force`` at the end."""
    import secrets

    env = os.environ | {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }
    address = f"127.0.0.1:{_free_port()}"
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    head = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
    second = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    try:
        started = _ray(
            "start", "--head", "--port", address.split(":")[1], "--num-cpus", str(head_cpus),
            "--include-dashboard", "false", "--temp-dir", str(head), *common, env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        joined = _ray(
            "start", "--address", address, "--num-cpus", str(node_cpus), "--temp-dir",
            str(second), *common, env=env, python=node_python, cwd=node_cwd,
        )  # fmt: skip
        assert joined.returncode == 0, joined.stderr
        yield address, env, second
    finally:
        _ray("stop", "--force", env=env)
        shutil.rmtree(head, ignore_errors=True), shutil.rmtree(second, ignore_errors=True)


def _node_pids(temp_dir: Path) -> list[int]:
    """The processes of the node started with ``--temp-dir temp_dir`` (its raylet and helpers)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if f"{temp_dir}/" in line]


def test_a_lost_node_of_a_two_node_cluster_costs_no_trial(tmp_path: Path) -> None:
    """Head and a second node, one CPU each; the second node is killed while both run a trial:
    the search ends with every trial finished (the lost one retried on the head from its
    checkpoint) and a recipe."""
    with _cluster(head_cpus=1, node_cpus=1) as (address, env, second):
        run = tmp_path / "run"
        flags = (
            f"--dataset digits --model cnn-small --space minimal --trials 4 --epochs 24 "
            f"--grace-period 24 --seeds 1 --top-k 1 --tuned-baseline 0 --no-minimal "
            f"--address {address}"
        )
        cmd = [sys.executable, "-m", "tricksearch", "search", *flags.split(), "--out", str(run)]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        # Kill the second node once two trials run at once and one of them has a checkpoint.
        deadline, killed, seen = time.monotonic() + 300, [], []
        while time.monotonic() < deadline and proc.poll() is None and not killed:
            time.sleep(0.5)
            try:
                trials = optuna.load_study(
                    study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}"
                ).trials
            except Exception as exc:
                seen.append(repr(exc)[:80])
                continue
            running = [t for t in trials if t.state.name == "RUNNING"]
            seen.append([(t.state.name, len(t.intermediate_values)) for t in trials])
            if len(running) == 2 and all(len(t.intermediate_values) >= 2 for t in running):
                killed = _node_pids(second)
                for pid in killed:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        assert killed, ("the second node was never killed mid-search", seen[-3:])
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, (out, err)
        states = [s for s, _ in _values(run)]
        assert len(states) == 4 and "FAIL" not in states and "RUNNING" not in states
        assert _summary(run)["retries"] >= 1
        assert "restart" in out and (run / "best_recipe.yaml").is_file()


def test_the_node_check_names_a_node_that_cannot_see_the_data(tmp_path: Path) -> None:
    """The probe task really runs on the (one) node of a local Ray and reports a missing path."""
    import ray

    from tricksearch.errors import ConfigError
    from tricksearch.tuning._nodes import check_nodes

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert check_nodes("digits", None) == 1
        (tmp_path / "here.npz").write_bytes(b"x")
        assert check_nodes(f"npz:{tmp_path / 'here.npz'}", None) == 1
        with pytest.raises(ConfigError) as err:
            check_nodes(f"imagefolder:{tmp_path / 'gone'}", str(tmp_path / "root-gone"))
    finally:
        ray.shutdown()
    message = str(err.value)
    assert message.startswith("cluster: 1 of 1 node(s) cannot run trials: ")
    assert f"cannot see '{tmp_path / 'root-gone'}', '{tmp_path / 'gone'}'" in message
    assert "\n" not in message


# --- SIGTERM and SIGHUP at every phase ---------------------------------------------------------
def _stop_at(run: Path, marker: str, sig: signal.Signals, extra: str = "") -> tuple[int, str, str]:
    """Start `tricksearch search` in a subprocess, send ``sig`` once ``marker`` is printed."""
    flags = f"--space minimal --trials 4 --epochs 6 --grace-period 6 --seeds 1 --top-k 1 {extra}"
    cmd = [sys.executable, "-m", "tricksearch", "search", *flags.split(), "--out", str(run)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=300)
    return proc.returncode, "".join(lines) + out, err


def test_sighup_before_ray_is_up_leaves_nothing_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, out, err = _stop_at(run, "pre-flight:", signal.SIGHUP)
    assert code == 130, (out, err)
    assert "nothing to resume; run the same command again" in err and "Traceback" not in err
    assert not (run / "search.json").exists()
    # ... and the same command then runs in the same folder
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "tricksearch",
            "search",
            "--space",
            "minimal",
            "--trials",
            "2",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--top-k",
            "1",
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert (run / "best_recipe.yaml").is_file()


def test_sighup_during_tuning_and_sigterm_during_retraining_are_resumable(tmp_path: Path) -> None:
    run = tmp_path / "tuning"
    code, out, err = _stop_at(run, "[1/4]", signal.SIGHUP)
    assert code == 130, (out, err)
    assert f"tricksearch search --resume {run}" in err and "Traceback" not in err
    assert (run / "trials.csv").is_file() and (run / "study.db.bak").is_file()

    run = tmp_path / "retraining"
    code, out, err = _stop_at(run, "retraining the top", signal.SIGTERM, "--tuned-baseline 0")
    assert code == 130, (out, err)
    assert f"tricksearch search --resume {run}" in err and "Traceback" not in err
    rows = (run / "trials.csv").read_text().splitlines()[1:]
    assert len(rows) == 4  # every trial was finished and is kept
    resumed = subprocess.run(
        [sys.executable, "-m", "tricksearch", "search", "--resume", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "4 of 4 trials finished" in resumed.stdout
    assert (run / "best_recipe.yaml").is_file()


def _python_without_tricksearch(folder: Path) -> str:
    """A Python that imports torch, ray … (this one's site-packages, added as a plain path) but
    not tricksearch (its editable install is a .pth file there, which a plain path skips)."""
    import site
    import venv

    venv.EnvBuilder(with_pip=False).create(folder)
    python = str(folder / "bin" / "python")
    own = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(own, "shared.pth").write_text(site.getsitepackages()[0] + "\n")
    probe = "import torch, ray\ntry:\n import tricksearch\nexcept ImportError: print('absent')"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=folder)
    assert found.stdout == "absent\n", found.stderr  # (run elsewhere than the repo)
    return python


def test_a_node_without_tricksearch_gets_it_shipped(tmp_path: Path) -> None:
    """The issue's cluster case: a worker node whose Python lacks tricksearch. The head has no
    CPU, so every trial and retraining runs there; the search ships its package (runtime_env
    py_modules), the node check passes, and the search ends with a recipe."""
    python = _python_without_tricksearch(tmp_path / "venv")
    with _cluster(head_cpus=0, node_cpus=2, node_python=python, node_cwd=tmp_path) as (
        address,
        env,
        _,
    ):
        run = tmp_path / "run"
        flags = (
            "--dataset digits --model cnn-small --space minimal --trials 3 --epochs 2 "
            f"--seeds 1 --top-k 1 --tuned-baseline 0 --no-minimal --address {address}"
        )
        done = subprocess.run(
            [sys.executable, "-m", "tricksearch", "search", *flags.split(), "--out", str(run)],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            cwd=tmp_path,  # Ray hands the driver's sys.path (its folder too) to workers
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        states = [s for s, _ in _values(run)]
        assert len(states) == 3 and set(states) <= {"COMPLETE", "PRUNED"}, states
        assert (run / "best_recipe.yaml").is_file()
