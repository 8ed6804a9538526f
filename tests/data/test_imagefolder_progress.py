"""Reading a large ImageFolder prints progress to stderr: a line every 10 % of the files or every
2 s (whichever comes first), with elapsed and an estimate of the time left; plain lines when
stderr is not a terminal, a line rewritten in place when it is; nothing for small folders."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest

from tricksearch.data import _imagefolder
from tricksearch.data._imagefolder import _Progress, read_imagefolder


def _tree(root: Path, n: int, corrupt: int = 0) -> None:
    from PIL import Image

    for i in range(n):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        if i < corrupt:
            (folder / f"{i:03d}.png").write_bytes(b"not a png")
        else:
            Image.new("L", (4, 4), i % 256).save(folder / f"{i:03d}.png")


def _plant_clock(monkeypatch: pytest.MonkeyPatch, step: float) -> None:
    """Each reading of the clock is ``step`` seconds after the one before."""
    ticks = itertools.count(1)
    monkeypatch.setattr(_imagefolder, "_now", lambda: next(ticks) * step)


def test_a_line_every_tenth_of_the_files_with_the_estimate(tmp_path, monkeypatch, capsys) -> None:
    _tree(tmp_path, 100, corrupt=1)
    monkeypatch.setattr(_imagefolder, "PROGRESS_MIN_FILES", 20)
    _plant_clock(monkeypatch, 0.04)  # 25 files a second: never 2 s between lines
    raw = read_imagefolder(str(tmp_path), skip_corrupt=True)
    assert len(raw.x) == 99 and raw.info["n_skipped"] == 1  # the skipped file counts as read
    err = capsys.readouterr().err
    assert "\r" not in err and "\033" not in err  # not a terminal
    lines = err.splitlines()
    label = f"dataset 'imagefolder:{tmp_path}'"
    assert [line.split(": read ")[1].split(" images")[0] for line in lines] == [
        f"{k}/100" for k in range(10, 101, 10)
    ]
    # 10 files in 0.4 s: 90 more take 3.6 s
    assert lines[0] == f"{label}: read 10/100 images (10%), 0:00 elapsed, ~0:04 left"
    assert lines[4] == f"{label}: read 50/100 images (50%), 0:02 elapsed, ~0:02 left"
    assert lines[-1] == f"{label}: read 100/100 images (100%), 0:04 elapsed"


def test_a_line_every_two_seconds_when_reading_is_slow(tmp_path, monkeypatch, capsys) -> None:
    _tree(tmp_path, 30)
    monkeypatch.setattr(_imagefolder, "PROGRESS_MIN_FILES", 20)
    _plant_clock(monkeypatch, 1.0)  # one file a second: 2 s pass before 10 % (3 files) do
    read_imagefolder(str(tmp_path))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 15  # after files 2, 4, …, 30
    assert lines[0].endswith(": read 2/30 images (6%), 0:02 elapsed, ~0:28 left")
    assert lines[6].endswith(": read 14/30 images (46%), 0:14 elapsed, ~0:16 left")
    assert lines[-1].endswith(": read 30/30 images (100%), 0:30 elapsed")


def test_small_folders_read_quietly(tmp_path, capsys) -> None:
    _tree(tmp_path, 30)  # below the default of 2,000 files
    read_imagefolder(str(tmp_path))
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_rewritten_in_place(monkeypatch) -> None:
    monkeypatch.setattr(_imagefolder, "PROGRESS_MIN_FILES", 5)
    _plant_clock(monkeypatch, 1.0)
    term = _Terminal()
    progress = _Progress(10, "x", term)
    for done in range(1, 11):
        progress.tick(done)  # 10 % each: a redraw each
    progress.end()  # already ended by the last file: no second newline
    text = term.getvalue()
    assert text.count("\r\033[K") == 10 and text.count("\n") == 1 and text.endswith("\n")
    assert text.split("\r\033[K")[-1] == "x: read 10/10 images (100%), 0:10 elapsed\n"
    stopped = _Terminal()
    progress = _Progress(10, "x", stopped)
    progress.tick(2)
    progress.end()  # an error stops the reading: the line is ended for the message after it
    assert stopped.getvalue().endswith("left\n")
