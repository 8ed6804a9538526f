"""``tricksearch dashboard RUN``: optuna-dashboard on the run's study.db when the extra is
installed; one line and exit 2 for a missing folder, a folder without study, a missing extra.
And ``tricksearch report RUN`` names both files it writes."""

from __future__ import annotations

import inspect
import sys
import types
from pathlib import Path

import pytest


def test_missing_run_folder(cli, tmp_path: Path) -> None:
    code, out, err = cli("dashboard", str(tmp_path / "nope"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "no run folder at" in err and str(tmp_path / "nope") in err


def test_folder_without_study(cli, tmp_path: Path) -> None:
    code, out, err = cli("dashboard", str(tmp_path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(tmp_path / "study.db") in err


def test_missing_extra_says_how_to_install_it(cli, search_run: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails, installed or not
    code, out, err = cli("dashboard", str(search_run))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "pip install 'tricksearch[dashboard]'" in err


def test_serves_the_run_study(cli, search_run: Path, monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("optuna_dashboard")
    fake.run_server = lambda storage, **kw: calls.append((storage, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "optuna_dashboard", fake)
    code, out, _ = cli("dashboard", str(search_run), "--port", "8123", "--host", "0.0.0.0")
    storage = f"sqlite:///{(search_run / 'study.db').resolve()}"
    assert code == 0
    assert calls == [(storage, {"host": "0.0.0.0", "port": 8123})]
    assert storage in out and "http://0.0.0.0:8123/" in out


def test_a_port_in_use_is_one_line(cli, search_run: Path, monkeypatch) -> None:
    def refuse(storage: str, host: str, port: int) -> None:
        raise OSError(98, "Address already in use")

    fake = types.ModuleType("optuna_dashboard")
    fake.run_server = refuse  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "optuna_dashboard", fake)
    code, _, err = cli("dashboard", str(search_run))
    assert code == 2 and err.count("\n") == 1
    assert "127.0.0.1:8080" in err and "Address already in use" in err


def test_real_run_server_takes_these_arguments() -> None:
    dashboard = pytest.importorskip(
        "optuna_dashboard", reason="the dashboard extra is not installed"
    )
    inspect.signature(dashboard.run_server).bind("sqlite:///x.db", host="127.0.0.1", port=8080)


def test_report_command_prints_both_paths(cli, search_run: Path) -> None:
    code, out, _ = cli("report", str(search_run))
    assert code == 0
    assert f"wrote {search_run / 'report.md'}" in out
    assert f"wrote {search_run / 'report.html'}" in out
    assert (search_run / "report.html").is_file()
