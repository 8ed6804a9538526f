"""``--gpus-per-trial auto``: the packing rule against hand numbers, the OOM bookkeeping, the
config and CLI values; and (slow) a real Ray search whose model runs out of GPU memory."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._packing import (
    OOM_ATTR,
    PACKING_FILE,
    PackingState,
    is_oom,
    pack,
    packed_resources,
    packing_line,
    parse_gpus,
)

MiB, GiB = 2**20, 2**30


# --- the rule -----------------------------------------------------------------------------------
def test_memory_bounds_k_when_throughput_keeps_growing() -> None:
    # 80 % of 10 GiB = 8192 MiB; 1500 + 500 MiB per trial -> 4 fit
    got = pack(10 * GiB, 1500 * MiB, 500 * MiB, {1: 1000, 2: 1900, 4: 3600})
    assert (got.k, got.k_memory, got.k_throughput) == (4, 4, 4)
    assert got.share == 0.25


def test_throughput_stops_packing_once_the_gpu_is_busy() -> None:
    # plenty of memory; 2 at once gain 60 %, 4 at once only 5 % more than 2: stop at 2
    got = pack(140 * GiB, 800 * MiB, 400 * MiB, {1: 5000, 2: 8000, 4: 8400, 8: 8500})
    assert got.k_memory == 95 and got.k_throughput == 2 and got.k == 2
    assert "busy" in got.reason


def test_a_level_that_gains_less_than_the_threshold_ends_the_walk() -> None:
    # 1.14x is below the 15 % gain: one per GPU
    assert pack(80 * GiB, GiB, 0, {1: 100.0, 2: 114.0, 4: 400.0}).k == 1
    assert pack(80 * GiB, GiB, 0, {1: 100.0, 2: 115.0}).k == 2


def test_no_levels_memory_alone_and_caps() -> None:
    assert pack(10 * GiB, 1500 * MiB, 500 * MiB).k == 4
    assert pack(10 * GiB, 1500 * MiB, 500 * MiB, max_k=3).k == 3  # CPUs
    too_big = pack(GiB, 2 * GiB, 500 * MiB, {1: 10.0, 2: 30.0})
    assert too_big.k == 1 and too_big.k_memory == 0 and "one per GPU" in too_big.reason


# --- the OOM bookkeeping --------------------------------------------------------------------------
def test_an_oom_lowers_the_share_once_per_level(tmp_path: Path) -> None:
    path = tmp_path / PACKING_FILE
    state = PackingState.open(path, 0.25)
    assert state.after_oom("a", 0.25) == pytest.approx(1 / 3)
    assert state.after_oom("b", 0.25) == pytest.approx(1 / 3)  # a second OOM at 4: still 3
    assert state.after_oom("c", 1 / 3) == pytest.approx(0.5)
    assert state.after_oom("d", 1.0) == pytest.approx(0.5)  # alone on its GPU: not re-run
    again = PackingState.open(path, 0.25)  # a resume keeps the lowered packing
    assert again.share == pytest.approx(0.5) and len(again.events) == 4
    line = again.line()
    assert "4 trials ran out of memory" in line and "3 queued again" in line
    assert "from 4 trials per GPU (0.25 GPU each) to 2 trials per GPU" in line
    cfg = {"x": 1}
    assert packed_resources(cfg, path=str(path), cpu=2.0, share=0.25) == {"cpu": 2.0, "gpu": 0.5}
    gone = tmp_path / "nothing.json"
    assert packed_resources(cfg, path=str(gone), cpu=1.0, share=0.25)["gpu"] == 0.25


def test_packing_line_without_a_gpu_share(tmp_path: Path) -> None:
    assert packing_line(tmp_path, 0) is None
    assert "2 trials ran out of memory" in packing_line(tmp_path, 2)
    PackingState.open(tmp_path / PACKING_FILE, 0.5)
    assert packing_line(tmp_path, 0) == (
        "GPU packing: 2 trials per GPU (0.5 GPU each); no trial ran out of memory"
    )


def test_is_oom() -> None:
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert not is_oom(RuntimeError("shapes do not match"))
    assert not is_oom(ValueError("CUDA out of memory"))


def test_an_oom_trial_reads_oom_not_fail() -> None:
    import optuna

    from tricksearch.tuning._artifacts import outcome_counts
    from tricksearch.tuning._candidates import trial_record
    from tricksearch.tuning._failures import failure_lines
    from tricksearch.tuning._tune import finished_trials

    study = optuna.create_study(direction="maximize")
    for attrs in ({OOM_ATTR: 0.25, "error": "OutOfMemoryError: x"}, {"error": "ValueError: y"}):
        t = study.ask()
        for k, v in attrs.items():
            t.set_user_attr(k, v)
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    alone = study.ask()
    alone.set_user_attr(OOM_ATTR, 1.0)  # alone on its GPU: the trial stays, as OOM
    study.tell(alone, state=optuna.trial.TrialState.FAIL)
    records = [trial_record(t) for t in study.trials]
    assert [r.outcome for r in records] == ["OOM", "FAIL", "OOM"]
    assert outcome_counts(records)["oom"] == 2 and outcome_counts(records)["fail"] == 1
    assert failure_lines(records) == ["failed 1 × ValueError: y"]
    # the re-queued one is not a finished trial (its re-run is); the one alone is
    assert [t.number for t in finished_trials(study)] == [1, 2]


# --- values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["auto", "AUTO", " auto "])
def test_auto_is_accepted(raw: str) -> None:
    assert parse_gpus(raw) == "auto"
    assert SearchConfig(gpus_per_trial=raw).gpus_per_trial == "auto"


@pytest.mark.parametrize("raw", ["many", "-0.5", "nan", "inf", -1, True, None])
def test_bad_gpu_values_are_one_line(raw: object) -> None:
    with pytest.raises((ConfigError, ConfigTypeError)) as err:
        SearchConfig(gpus_per_trial=raw)
    assert "\n" not in str(err.value) and "gpus_per_trial" in str(err.value)


def test_auto_refuses_several_workers() -> None:
    with pytest.raises(ConfigError, match="auto packs single-GPU trials"):
        SearchConfig(gpus_per_trial="auto", workers_per_trial=2)


def test_cli_value(capsys: pytest.CaptureFixture[str]) -> None:
    from tricksearch.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--gpus-per-trial", "lots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "got 'lots', expected 'auto' or a number >= 0" in err[0]


def test_auto_without_cuda_means_cpu_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from tricksearch.tuning._probe import resolve_on_cpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config, notes = resolve_on_cpu(SearchConfig(gpus_per_trial="auto"))
    assert config.gpus_per_trial == 0.0 and "no CUDA device" in notes[0]
    with pytest.raises(ConfigError, match="probes this machine's GPU"):
        resolve_on_cpu(SearchConfig(gpus_per_trial="auto", address="10.0.0.1:6379"))


def test_resolve_auto_with_measured_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's numbers injected (as an H200 might give them): the share and the note."""
    from tricksearch.spaces import load_space
    from tricksearch.tuning._prepare import base_recipe
    from tricksearch.tuning._probe import heaviest_batch, resolve_auto

    config = SearchConfig(gpus_per_trial="auto", cpus_per_trial=1.0)
    base, space = base_recipe(config), load_space("default")
    assert heaviest_batch(space, base) == 512
    measured = {
        "free_bytes": 139 * GiB,
        "peak_bytes": 2 * GiB,
        "context_bytes": 500 * MiB,
        "throughput_by_k": {1: 9000.0, 2: 17000.0, 4: 30000.0, 8: 33000.0},
        "batch_size": 512,
        "seconds": 40.0,
    }
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    got, notes = resolve_auto(config, base, space, None, None, measure=lambda *a: measured)
    assert got.gpus_per_trial == 0.25 and got.workers == 1
    assert notes[0].startswith("--gpus-per-trial auto: 4 trials per GPU (0.25 GPU each)")


# --- a real search (slow) -----------------------------------------------------------------------
class Greedy(nn.Module):
    """A linear model on 8×8 images that runs out of GPU memory (the error torch raises, built
    on the CPU) in its second epoch, while fewer than ``times`` marker files exist."""

    def __init__(self, in_channels: int, num_classes: int, *, markers: str, times: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels * 64, num_classes)
        self.markers, self.times, self.calls = Path(markers), times, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > 16:  # not the driver's pre-flight
            self.calls += 1
            done = len(list(self.markers.glob("oom-*")))
            if self.calls == 14 and done < self.times:
                (self.markers / f"oom-{done}").write_text("")
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.fc(x.flatten(1))


@pytest.mark.slow
def test_an_oom_in_a_real_search_is_recorded_as_oom_and_the_search_goes_on(
    tmp_path: Path,
) -> None:
    import optuna
    import ray.cloudpickle

    import tricksearch

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    markers = tmp_path / "markers"
    markers.mkdir()
    model = functools.partial(Greedy, markers=str(markers), times=2)
    run = tmp_path / "run"
    tricksearch.search(
        model=model,
        out=run,
        dataset="digits",
        space="minimal",
        trials=4,
        epochs=3,
        sampler="random",
        seeds=1,
        top_k=1,
        tuned_baseline=0,
        minimal=False,
        max_concurrent=1,
        quiet=True,
    )
    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    oom = [t for t in study.trials if OOM_ATTR in t.user_attrs]
    assert len(oom) == 2 and all(t.state.name == "FAIL" for t in oom)  # samplers skip them
    assert all("OutOfMemoryError" in t.user_attrs["error"] for t in oom)
    summary = json.loads((run / "results.json").read_text())["summary"]["search"]
    assert summary["trials"]["oom"] == 2 and summary["trials"]["fail"] == 0
    assert summary["failures"] == []  # not a failed configuration
    assert (run / "best_recipe.yaml").is_file()  # the search went on to a recipe
