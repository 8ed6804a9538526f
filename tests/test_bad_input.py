"""Bad input met on real machines gets one line naming the field, the value and what is allowed:
no traceback, nothing started (binary files, an impossible --out, one class, --resume with
options it would ignore)."""

from __future__ import annotations

import os

import pytest
import torch

from tricksearch.data import dataset_from_tensors
from tricksearch.errors import DataError
from tricksearch.tuning import SearchConfig

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_binary_recipe_file_is_refused(cli, tmp_path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_bytes(PNG)
    code, _, err = cli("train", "--recipe", str(path))
    line = _one_line(err)
    assert code == 2 and "recipe:" in line and str(path) in line
    assert "is not a text file (byte 0x89 at position 0" in line and "YAML or JSON" in line


def test_a_binary_space_file_is_refused_before_anything_starts(cli, tmp_path) -> None:
    path = tmp_path / "space.yaml"
    path.write_bytes(PNG)
    code, _, err = cli("search", "--space", str(path), "--out", str(tmp_path / "run"))
    line = _one_line(err)
    assert code == 2 and "is not a text file" in line and "space" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_an_out_folder_that_cannot_be_made_is_refused(cli, tmp_path, where) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    out = blocker if where == "file" else blocker / "run"
    code, _, err = cli("search", "--trials", "2", "--epochs", "1", "--out", str(out))
    line = _one_line(err)
    assert code == 2 and line.startswith("error: out:") and "is a file" in line


def test_a_single_class_dataset_is_refused() -> None:
    x = torch.zeros(30, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(
        DataError, match=r"labels hold 1 class\(es\) \(.0.\); a classifier needs at least 2"
    ):
        dataset_from_tensors(x, torch.zeros(30, dtype=torch.long))


def test_resume_refuses_options_it_would_ignore(cli, tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    SearchConfig(trials=8, epochs=3, out=str(run)).save(run / "search.json")
    code, _, err = cli("search", "--resume", str(run), "--epochs", "20", "--lr", "0.1")
    line = _one_line(err)
    assert code == 2 and "--epochs, --lr cannot change a search being resumed" in line
    assert "only --trials N (runs more trials)" in line
    assert "--trial-timeout" in line and "--max-retries" in line
    code, _, err = cli("search", "--resume", str(run), "--trials", "4")
    line = _one_line(err)
    assert code == 2 and "trials: got 4" in line and "expected at least 8" in line


def test_a_second_search_on_a_running_search_folder_is_refused(cli, tmp_path) -> None:
    import fcntl
    import os

    run = tmp_path / "run"
    run.mkdir()
    with (run / ".search.lock").open("a+") as held:  # as the running search holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242 node-7 2026-12-02T07:40:00+0000\n")
        held.flush()
        code, _, err = cli("search", "--trials", "2", "--epochs", "1", "--out", str(run))
        line = _one_line(err)
        assert code == 2 and "another search is running in" in line
        assert "(process 4242 on node-7 since 2026-12-02T07:40:00+0000)" in line
    assert not (run / "study.db").exists() and not (run / "search.json").exists()
    assert os.listdir(run) == [".search.lock"]


def test_what_the_readers_change_is_said(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from tricksearch.data import load_dataset

    for cls, size in (("a", (10, 10)), ("b", (12, 9))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full(size[::-1], 40 * i, dtype=np.uint8)).save(
                tmp_path / "imgs" / cls / f"{i}.png"
            )
    data = load_dataset(f"imagefolder:{tmp_path / 'imgs'}")
    assert data.image_size == (10, 10)
    (note,) = data.info["notes"]
    assert "6 of 12 images were resized to 10x10 (the size of the first image)" in note

    x = np.random.default_rng(0).integers(0, 255, (40, 1, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([3, 7] * 20))
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.classes == ["3", "7"]
    assert "labels {3, 7} renumbered 0..1 in sorted order" in data.info["notes"][0]


def test_resume_applies_the_trial_timeout_and_the_retries(tmp_path, monkeypatch) -> None:
    from tricksearch.tuning import cli as tuning_cli

    run = tmp_path / "run"
    run.mkdir()
    SearchConfig(trials=8, epochs=3, out=str(run)).save(run / "search.json")
    parser = __import__("tricksearch.cli", fromlist=["build_parser"]).build_parser()
    args = parser.parse_args(
        ["search", "--resume", str(run), "--trial-timeout", "90", "--max-retries", "0"]
    )
    config = tuning_cli._resumed(args)
    assert (config.trial_timeout, config.max_retries, config.trials) == (90.0, 0, 8)


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--max-retries", "-1", "--max-retries: got -1"),
        ("--trial-timeout", "0", "--trial-timeout: got 0"),
        ("--trial-timeout", "soon", "--trial-timeout: got 'soon'"),
    ],
)
def test_fault_options_take_only_sensible_values(capsys, tmp_path, flag, value, expected) -> None:
    from tricksearch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["search", flag, value, "--out", str(tmp_path / "run")])
    line = _one_line(capsys.readouterr().err)
    assert exc.value.code == 2 and expected in line, line
    assert not (tmp_path / "run").exists()


def test_a_lock_left_by_a_killed_search_is_taken_over_with_a_note(tmp_path) -> None:
    """The kernel released the killed holder's flock; its line is still in the file."""
    from tricksearch.tuning._session import LOCK_FILE, run_folder_lock

    (tmp_path / LOCK_FILE).write_text("999999 node-7 2026-12-01T10:00:00+0000\n")
    notes: list[str] = []
    with run_folder_lock(tmp_path, notes):
        pid, host, _ = (tmp_path / LOCK_FILE).read_text().split()
        assert pid == str(os.getpid()) and host
    assert notes == [
        "took over the lock of process 999999 on node-7 since 2026-12-01T10:00:00+0000, "
        "which no longer runs"
    ]
    assert (tmp_path / LOCK_FILE).read_text() == ""  # a clean end leaves no holder
    notes.clear()
    with run_folder_lock(tmp_path, notes):
        pass
    assert notes == []


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("nosuchscheme://bucket/x", "storage: cannot open 'nosuchscheme://bucket/x' ("),
        ("FILE", "storage: {FILE!r} is a file; expected a folder"),
    ],
)
def test_a_storage_that_cannot_be_used_is_one_line_before_ray(cli, tmp_path, storage, expected):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file\n")
    storage = storage.replace("FILE", str(blocker))
    expected = expected.replace("{FILE!r}", repr(str(blocker)))
    code, _, err = cli(
        "search",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--storage",
        storage,
        "--out",
        str(tmp_path / "run"),
    )
    line = _one_line(err)
    assert code == 2 and line.startswith("error: " + expected), line
    assert not (tmp_path / "run").exists()
