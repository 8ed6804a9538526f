"""Fixtures of the report tests: a search's run folder whose results.json carries the retrained
configurations' learning curves (``"curves"``, one per seed, as the retraining records them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: The val accuracy after each of 6 epochs, per configuration and seed (seeds 0, 1, 2).
PLANTED_CURVES: dict[str, list[list[float]]] = {
    "trial 7": [
        [0.60, 0.75, 0.85, 0.90, 0.93, 0.946],
        [0.62, 0.77, 0.86, 0.91, 0.94, 0.950],
        [0.64, 0.79, 0.87, 0.92, 0.95, 0.954],
    ],
    "trial 3": [
        [0.58, 0.72, 0.83, 0.89, 0.92, 0.937],
        [0.60, 0.74, 0.84, 0.90, 0.93, 0.940],
        [0.62, 0.76, 0.85, 0.91, 0.94, 0.943],
    ],
    "baseline": [
        [0.50, 0.70, 0.80, 0.88, 0.90, 0.915],
        [0.55, 0.72, 0.82, 0.89, 0.91, 0.920],
        [0.60, 0.74, 0.84, 0.90, 0.92, 0.925],
    ],
}


def plant_curves(run: Path, curves: dict[str, list[list[float]]] = PLANTED_CURVES) -> Path:
    """Add ``curves`` to the candidates of ``run``'s results.json (by label); return ``run``."""
    path = run / "results.json"
    results = json.loads(path.read_text())
    for cand in results["candidates"]:
        if cand["label"] in curves:
            cand["curves"] = curves[cand["label"]]
    path.write_text(json.dumps(results))
    return run


@pytest.fixture
def planted_curves() -> dict[str, list[list[float]]]:
    """:data:`PLANTED_CURVES`: what ``curves_run`` holds."""
    return PLANTED_CURVES


@pytest.fixture
def curves_run(search_run: Path) -> Path:
    """``search_run`` with :data:`PLANTED_CURVES` in its results.json."""
    return plant_curves(search_run)
