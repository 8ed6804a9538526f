"""The search-efficiency replay (benchmarks/search_efficiency.py) on the committed curve table:
lookups, the cost it counts, the measures it prints. The samplers and ASHA are the real ones."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import curve_table  # noqa: E402
import search_efficiency as se  # noqa: E402


@pytest.fixture(scope="module")
def table() -> se.Table:
    return se.Table("digits")


def test_the_table_holds_both_seeds_of_every_configuration_and_the_preset_rows(table) -> None:
    assert len(table.random_ids) >= 50
    named = {table.configs[i]["name"] for i in table.ids if i >= curve_table.NAMED}
    assert {"baseline", "bag-of-tricks", "sgd-cosine", "adamw-cosine"} <= named
    for i in table.ids:
        curves = table.configs[i]["val"]
        assert len(curves) in (0, 2)  # both seeds, or diverged with both
        for c in curves.values():
            assert len(c) == table.epochs and all(0.0 <= v <= 1.0 for v in c)


def test_a_configuration_reads_its_own_row(table) -> None:
    for i in table.ids[:40]:
        assert table.nearest(table.configs[i]["params"]) == i


def test_random_search_runs_every_trial_to_the_full_budget(table) -> None:
    ended: list[tuple[int, int]] = []
    se.replay(
        table,
        se.STRATEGIES["random"],
        1,
        budget=99 * table.epochs,
        slots=2,
        trials=6,
        points=[],
        ended=ended,
    )
    assert len(ended) == 6
    for row, epochs in ended:  # a configuration that diverged costs its one epoch
        assert epochs == (table.epochs if table.configs[row]["val"] else 1)


def test_asha_stops_trials_at_its_rungs_and_the_budget_ends_the_search(table) -> None:
    ended: list[tuple[int, int]] = []
    budget = 6 * table.epochs
    finished = se.replay(
        table,
        se.STRATEGIES["random+asha"],
        3,
        budget=budget,
        slots=2,
        trials=6,
        points=[],
        ended=ended,
    )
    ran = [epochs for _, epochs in ended]
    assert len(ended) > 6  # the same trial-epochs bought more trials
    assert set(ran) <= {1, 3, 9, 12}  # diverged, the rungs (grace 12 // 4 = 3, ×3), the budget
    assert 3 in ran and sum(ran) <= budget
    assert all(s <= budget for s, _, _ in finished)


def test_the_measures_on_hand_made_outcomes(table) -> None:
    finished = [(12, 0.90, table.ids[0]), (30, 0.97, table.ids[1]), (60, 0.99, table.ids[2])]
    assert se.epochs_to(finished, 0.97) == 30
    assert se.epochs_to(finished, 0.995) == math.inf
    # regret: the table's best mean test minus the mean test of the best val finished by then
    assert se.regret_at(table, finished, 40) == pytest.approx(
        table.best_test - table.mean_test[table.ids[1]]
    )
    assert se.regret_at(table, [], 40) == pytest.approx(table.best_test - se.CHANCE)


def test_the_search_evaluates_the_presets_first_and_stops_the_baseline_at_the_first_rung(
    table,
) -> None:
    points = se._points("digits", True)
    ended: list[tuple[int, int]] = []
    se.replay(
        table,
        se.STRATEGIES["tpe+asha"],
        5,
        budget=10 * table.epochs,
        slots=1,
        trials=10,
        points=points,
        ended=ended,
    )
    names = [table.configs[row]["name"] for row, _ in ended[: len(points)]]
    assert names == ["baseline", "bag-of-tricks", "sgd-cosine", "adamw-cosine"][: len(points)]
    assert ended[0][1] == 3  # the baseline: stopped at the first rung, a bar for the others
