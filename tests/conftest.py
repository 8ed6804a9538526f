"""Shared test set-up: quiet Ray, caches under a temp folder."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Teachers and other caches go to a per-session temp folder, never to ~/.cache."""
    monkeypatch.setenv("TRICKSEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
