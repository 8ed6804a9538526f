"""A damaged study.db is refused in one line, never silently started over (which would lose the
search's history) and never a 70-line sqlalchemy traceback."""

from __future__ import annotations

import re

import pytest

from tricksearch.errors import ConfigError
from tricksearch.tuning._tune import open_study


def _real_study(run) -> bytes:
    study, _ = open_study(run, "max")
    for _ in range(5):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, 0.5)
    return (run / "study.db").read_bytes()


def test_an_intact_study_opens_with_its_trials(tmp_path) -> None:
    _real_study(tmp_path)
    study, _ = open_study(tmp_path, "max")
    assert len(study.trials) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty (0 bytes): the search's history is lost or damaged"),
        (b"\x00\x01garbage" * 100, "is not a SQLite database"),
    ],
)
def test_an_emptied_or_overwritten_study_is_refused(tmp_path, content, message) -> None:
    (tmp_path / "study.db").write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        open_study(tmp_path, "max")
    assert "\n" not in str(err.value) and "another --out" in str(err.value)
    assert (tmp_path / "study.db").read_bytes() == content  # left as it was


@pytest.mark.parametrize("keep", [0.5, 0.04])
def test_a_truncated_study_is_refused_in_one_line(tmp_path, keep) -> None:
    data = _real_study(tmp_path)
    (tmp_path / "study.db").write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ConfigError, match=r"cannot be read \(DatabaseError: .*malformed") as err:
        open_study(tmp_path, "max")
    assert "\n" not in str(err.value)


def test_the_copy_restores_a_damaged_study_with_every_trial(tmp_path) -> None:
    """SQLite's backup API copies the study (also while a connection holds it open); the
    refusal names the copy and the command, which brings every trial back."""
    import shlex
    import shutil

    from tricksearch.tuning._study import STUDY_COPY, backup_study

    study, storage = open_study(tmp_path, "max")
    for _ in range(5):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, 0.5)
    assert backup_study(tmp_path) == tmp_path / STUDY_COPY
    storage.engine.dispose()
    (tmp_path / "study.db").write_bytes(b"")  # emptied
    with pytest.raises(ConfigError) as err:
        open_study(tmp_path, "max")
    message = str(err.value)
    assert "\n" not in message and "A copy made after its last finished trial is kept" in message
    command = re.search(r"`(cp [^`]+)`", message).group(1)
    _, src, dst = shlex.split(command)
    shutil.copyfile(src, dst)
    restored, _ = open_study(tmp_path, "max")
    assert len(restored.trials) == 5 and all(t.value == 0.5 for t in restored.trials)


def test_no_copy_of_an_unreadable_study_and_the_old_copy_is_kept(tmp_path) -> None:
    from tricksearch.tuning._study import STUDY_COPY, backup_study

    _real_study(tmp_path)
    assert backup_study(tmp_path) is not None
    good = (tmp_path / STUDY_COPY).read_bytes()
    (tmp_path / "study.db").write_bytes(b"\x00garbage" * 50)
    assert backup_study(tmp_path) is None
    assert (tmp_path / STUDY_COPY).read_bytes() == good
    assert not list(tmp_path.glob("*.tmp"))
