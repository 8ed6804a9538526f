"""What a search ends with: its result, or the two errors that end it without one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricksearch.errors import TricksearchError

if TYPE_CHECKING:
    from tricksearch.recipe import Recipe

__all__ = ["SearchFailed", "SearchInterrupted", "SearchResult"]


class SearchFailed(TricksearchError):
    """No usable trial: every trial failed (or the search was stopped before any finished)."""

    exit_code = 1


class SearchInterrupted(TricksearchError):
    """The search was interrupted (Ctrl-C / SIGTERM); it can be resumed."""

    exit_code = 130


@dataclass
class SearchResult:
    """What a finished search returns: the best recipe, where it was written, and the evidence.

    ``candidates``: one row per retrained configuration (see ``_candidates.candidate_table``);
    for a result read back from a finished run folder, results.json's summaries of them.
    """

    best: Recipe
    run_dir: Path
    recipe_path: Path
    summary: dict[str, Any]
    candidates: list[dict[str, Any]] = field(default_factory=list)
