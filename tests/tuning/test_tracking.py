"""Tracking (``--track``): run names, the flag and its checks, and a real search's TensorBoard,
MLflow and W&B files read back (slow)."""

from __future__ import annotations

import csv
import importlib.util
import io
import math
from pathlib import Path
from typing import Any

import pytest

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._retrain import RetrainJob, run_jobs
from tricksearch.tuning._tracking import (
    MAX_NAME,
    RetrainWriter,
    fresh_dir,
    retrain_hook,
    retrain_run_name,
    trial_run_name,
)

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None
needs_tensorboard = pytest.mark.skipif(
    not HAS_TENSORBOARD, reason="reading event files needs tensorboard (in the test extra)"
)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard run in ``run``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _text(run: Path, tag: str = "recipe/text_summary") -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors(tag)
    return event.tensor_proto.string_val[0].decode()


# --- names ---------------------------------------------------------------------------------------
def test_trial_runs_are_named_by_number_and_tricks_on() -> None:
    assert trial_run_name(3, ["mixup", "ema"]) == "trial-003_mixup+ema"
    assert trial_run_name(1234, ["mixup"]) == "trial-1234_mixup"
    assert trial_run_name(0, []) == "trial-000_no-tricks"
    assert trial_run_name("a1b2c_00004", ["ema"]) == "trial-a1b2c_00004_ema"  # Ray's id, no number
    many = trial_run_name(7, [f"trick_number_{i}" for i in range(30)])
    assert len(many) <= MAX_NAME and many.startswith("trial-007_trick_number_0+")
    shown = many.split("_", 1)[1].split("+")
    assert shown[-1] == f"{30 - len(shown) + 1}-more"


def test_retrainings_are_named_by_label_and_seed() -> None:
    assert retrain_run_name("baseline", 0) == "retrain_baseline_seed0"
    assert retrain_run_name("trial 3", 1) == "retrain_trial-3_seed1"
    assert retrain_run_name("tuned baseline", 2) == "retrain_tuned-baseline_seed2"
    assert retrain_run_name("without ema, mixup", 0) == "retrain_without-ema+mixup_seed0"
    assert retrain_run_name("a/b", 0) == "retrain_a-b_seed0"


def test_a_taken_name_gets_a_suffix(tmp_path) -> None:
    assert fresh_dir(tmp_path, "trial-001_ema") == tmp_path / "trial-001_ema"
    (tmp_path / "trial-001_ema").mkdir()
    assert fresh_dir(tmp_path, "trial-001_ema") == tmp_path / "trial-001_ema_2"
    (tmp_path / "trial-001_ema_2").mkdir()
    assert fresh_dir(tmp_path, "trial-001_ema") == tmp_path / "trial-001_ema_3"


# --- the setting and the flag --------------------------------------------------------------------
def test_track_is_checked_and_kept_in_search_json(tmp_path) -> None:
    assert SearchConfig().track == ()
    assert SearchConfig(track="tensorboard").track == ("tensorboard",)
    assert SearchConfig(track=["tensorboard", "tensorboard"]).track == ("tensorboard",)
    with pytest.raises(
        ConfigError, match=r"track: got 'neptune', expected one of tensorboard, mlf"
    ):
        SearchConfig(track=["neptune"])
    with pytest.raises(ConfigTypeError, match=r"track: got 3, expected a list of tensorboard"):
        SearchConfig(track=3)  # type: ignore[arg-type]
    SearchConfig(track=["tensorboard"], out=str(tmp_path)).save(tmp_path / "search.json")
    assert SearchConfig.load(tmp_path).track == ("tensorboard",)


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_missing_extra_is_one_line_naming_the_pip_command(
    tracker, cli, tmp_path, monkeypatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a)
    )
    with pytest.raises(ConfigError, match=rf"pip install 'tricksearch\[{tracker}\]'"):
        SearchConfig(track=[tracker])
    run = tmp_path / "run"
    code, _, err = cli("search", "--track", "tensorboard", "--track", tracker, "--out", str(run))
    line = _one_line(err)
    assert code == 2
    assert f"track: {tracker} needs the package {tracker!r}" in line
    assert line.endswith(f"pip install 'tricksearch[{tracker}]'")
    assert not run.exists()  # refused before anything ran


def test_an_unknown_tracker_is_one_line_naming_the_allowed_ones(capsys, tmp_path) -> None:
    from tricksearch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["search", "--track", "neptune", "--out", str(tmp_path / "run")])
    line = _one_line(capsys.readouterr().err)
    assert exc.value.code == 2 and "--track" in line and "'neptune'" in line
    assert "'tensorboard', 'mlflow', 'wandb'" in line


def _captured_search(monkeypatch) -> list[tuple[SearchConfig, bool]]:
    from tricksearch.tuning import _runner

    seen: list[tuple[SearchConfig, bool]] = []
    monkeypatch.setattr(
        _runner, "run_search", lambda config, resume=False: seen.append((config, resume))
    )
    return seen


def test_the_flag_repeats_and_a_resume_applies_it(cli, tmp_path, monkeypatch) -> None:
    seen = _captured_search(monkeypatch)
    run = tmp_path / "run"
    code, _, _ = cli("search", "--track", "tensorboard", "--out", str(run))
    assert code == 0 and seen[-1][0].track == ("tensorboard",)
    code, _, _ = cli("search", "--out", str(run))
    assert code == 0 and seen[-1][0].track == ()
    run.mkdir()
    SearchConfig(trials=4, out=str(run), track=["tensorboard"]).save(run / "search.json")
    code, _, _ = cli("search", "--resume", str(run))
    assert code == 0 and seen[-1][1] is True
    assert seen[-1][0].track == ("tensorboard",)  # as the search was started
    extra = [t for t, ok in (("mlflow", HAS_MLFLOW), ("wandb", HAS_WANDB)) if ok]
    flags = [f for t in ["tensorboard", *extra] for f in ("--track", t)]
    code, _, _ = cli("search", "--resume", str(run), *flags)
    assert code == 0 and seen[-1][0].track == ("tensorboard", *extra)


# --- the retraining hook -------------------------------------------------------------------------
def test_run_jobs_calls_the_hook_with_each_result(monkeypatch) -> None:
    from tricksearch.tuning import _parallel

    def fake_map(fn, tasks, **kwargs):
        for i, (_, seed) in enumerate(tasks):
            yield i, ({"seed": seed, "val_acc": 0.5, "curve": [0.5]} if seed else ValueError("x"))

    monkeypatch.setattr(_parallel, "map_tasks", fake_map)
    jobs = [RetrainJob("baseline", {}, 0), RetrainJob("trial 3", {}, 1)]
    got: list[dict[str, Any]] = []
    results = run_jobs(jobs, None, SearchConfig(), io.StringIO(), on_result=got.append)
    assert got == results and [r["label"] for r in got] == ["baseline", "trial 3"]
    assert "error" in got[0] and got[1]["curve"] == [0.5]
    # without tracking nothing is made to be called; with it, the TensorBoard writer
    assert retrain_hook(SearchConfig()) is None
    assert isinstance(retrain_hook(SearchConfig(track=["tensorboard"])), RetrainWriter)


@needs_tensorboard
def test_a_retraining_becomes_a_tensorboard_run(tmp_path) -> None:
    recipe = Recipe.from_dict({"budget": {"epochs": 3}, "mixing": {"mixup": {}}})
    result = {
        "label": "trial 3",
        "seed": 1,
        "val_acc": 0.7,
        "val_loss": 0.9,
        "test_acc": 0.65,
        "test_loss": math.nan,
        "curve": [0.5, 0.625, 0.7],
        "recipe": recipe.to_dict(),
    }
    writer = RetrainWriter(tmp_path)
    writer(result)
    writer({"label": "baseline", "seed": 0, "error": "ValueError: x"})  # failed: no run
    writer(result)  # the same training again (a resume): beside it, not over it
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "retrain_trial-3_seed1",
        "retrain_trial-3_seed1_2",
    ]
    scalars = _scalars(tmp_path / "retrain_trial-3_seed1")
    assert scalars["val_acc"] == [(1, 0.5), (2, 0.625), (3, pytest.approx(0.7))]
    assert scalars["val_loss"] == [(3, pytest.approx(0.9))]
    assert scalars["test_acc"] == [(3, pytest.approx(0.65))]
    assert "test_loss" not in scalars  # NaN is left out
    assert "mixup" in _text(tmp_path / "retrain_trial-3_seed1")


# --- a real search (slow) ------------------------------------------------------------------------
TRACKED = ["tensorboard", *(["mlflow"] if HAS_MLFLOW else []), *(["wandb"] if HAS_WANDB else [])]
EPOCHS = 2


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    """One small search on digits with every installed tracker; its run folder."""
    import os

    import tricksearch

    run = tmp_path_factory.mktemp("tracked") / "run"
    saved = {k: os.environ.pop(k, None) for k in ("MLFLOW_TRACKING_URI", "WANDB_MODE")}
    try:
        tricksearch.search(
            dataset="digits",
            space="minimal",
            trials=3,
            epochs=EPOCHS,
            seeds=1,
            top_k=1,
            tuned_baseline=0,
            minimal=False,
            track=TRACKED,
            out=run,
            quiet=True,
        )
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
    return run


def _trials(run: Path) -> list[dict[str, str]]:
    with (run / "trials.csv").open() as fh:
        return list(csv.DictReader(fh))


def _curves(run: Path) -> dict[int, list[float]]:
    """Each trial's val_acc per epoch, as the study holds it."""
    import optuna

    study = optuna.load_study(study_name="tricksearch", storage=f"sqlite:///{run / 'study.db'}")
    return {
        t.number: [t.intermediate_values[s] for s in sorted(t.intermediate_values)]
        for t in study.trials
    }


def _tricks_on(row: dict[str, str]) -> set[str]:
    """The tricks a trials.csv row switches on."""
    from tricksearch.spaces import parse_key

    on = set()
    for key, value in row.items():
        if "." in key and value == "True" and parse_key(key).kind == "switch":
            on.add(parse_key(key).name)
    return on


@pytest.mark.slow
@needs_tensorboard
def test_tensorboard_holds_each_trial_and_retraining(tracked_run) -> None:
    tb = tracked_run / "tb"
    trials = _trials(tracked_run)
    curves = _curves(tracked_run)
    runs = {p.name: p for p in tb.iterdir()}
    by_number = {int(n.split("_")[0].removeprefix("trial-")): n for n in runs if n[:6] == "trial-"}
    assert sorted(by_number) == sorted(int(r["number"]) for r in trials)
    for row in trials:
        name = by_number[int(row["number"])]
        assert name.startswith(f"trial-{int(row['number']):03d}_")
        tricks = set(name.split("_", 1)[1].split("+")) - {"no-tricks"}
        assert _tricks_on(row) <= tricks, (name, row)
        scalars = _scalars(runs[name])
        val = scalars["val_acc"]
        assert [s for s, _ in val] == list(range(1, int(row["epochs"]) + 1))
        assert [v for _, v in val] == pytest.approx(curves[int(row["number"])], abs=1e-6)
        assert len(scalars["val_loss"]) == len(scalars["train_loss"]) == len(val)
        assert "budget" in _text(runs[name])
    retrained = sorted(n for n in runs if n.startswith("retrain_"))
    assert "retrain_baseline_seed0" in retrained
    assert any(n.startswith("retrain_trial-") and n.endswith("_seed0") for n in retrained)
    for name in retrained:
        assert [s for s, _ in _scalars(runs[name])["val_acc"]] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_MLFLOW, reason="mlflow is not installed: pip install 'tricksearch[mlflow]'"
)
def test_mlflow_store_holds_one_run_per_trial(tracked_run) -> None:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tracked_run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tricksearch")
    assert experiment is not None
    assert experiment.artifact_location == (tracked_run / "mlruns").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    trials = _trials(tracked_run)
    curves = _curves(tracked_run)
    assert len(runs) == len(trials)
    tb_names = {p.name for p in (tracked_run / "tb").iterdir()}
    for run in runs:
        assert run.info.run_name in tb_names  # the same readable name as in TensorBoard
        number = int(run.info.run_name.split("_")[0].removeprefix("trial-"))
        row = next(r for r in trials if int(r["number"]) == number)
        params = {k: v for k, v in row.items() if "." in k and v != ""}  # what it sampled
        assert params == {k: run.data.params.get(k) for k in params}, run.data.params
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            curves[number]
        )
        assert run.info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.skipif(
    not HAS_WANDB, reason="wandb is not installed: pip install 'tricksearch[wandb]'"
)
def test_wandb_writes_one_offline_run_per_trial(tracked_run) -> None:
    offline = sorted((tracked_run / "wandb").glob("offline-run-*"))
    curves = _curves(tracked_run)
    assert len(offline) == len(_trials(tracked_run))
    tb_names = {p.name for p in (tracked_run / "tb").iterdir()}
    for folder in offline:
        (path,) = folder.glob("run-*.wandb")
        name, val_acc, exit_code = _wandb_run(path)
        assert name in tb_names and exit_code == 0
        assert val_acc == pytest.approx(curves[int(name.split("_")[0].removeprefix("trial-"))])


def _wandb_run(path: Path) -> tuple[str, list[float], int | None]:
    """The run name, val_acc per step and exit code in a W&B offline file (a LevelDB-style log
    of ``wandb_internal_pb2.Record``: 32 KiB blocks of chunks with a 7-byte header)."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, buf = path.read_bytes(), 7, b""  # after the file's own header
    name, val_acc, exit_code = "", [], None
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf, pos = buf + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind not in (1, 4):  # not a record's whole or last chunk
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(buf)
        buf, what = b"", record.WhichOneof("record_type")
        if what == "run":
            name = record.run.display_name
        elif what == "history":
            items = {"/".join(i.nested_key) or i.key: i.value_json for i in record.history.item}
            if "val_acc" in items:
                val_acc.append(json.loads(items["val_acc"]))
        elif what == "exit":
            exit_code = record.exit.exit_code
    return name, val_acc, exit_code
