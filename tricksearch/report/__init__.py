"""Results you can trust and read: ablation with seeds, the report of a search, export, show.

- :func:`ablate` — the recipe, the baseline, each trick removed and each trick alone, n seeds;
- :func:`write_report` — ``report.md`` with history, importance, ablation and cost figures;
- :func:`export_recipe` — the recipe for timm's or torchvision's training script, or as JSON,
  listing every trick the target cannot express;
- :func:`show_recipe` — a recipe as readable text, with its evidence.

Neither ray nor optuna is imported here: Ray only inside ``ablate(parallel=True)``, Optuna only
inside ``write_report``.
"""

from __future__ import annotations

from tricksearch.report._ablation import AblationResult, AblationRow, ablate
from tricksearch.report._export import (
    ExportResult,
    export_recipe,
    parse_timm_args,
    parse_torchvision_command,
)
from tricksearch.report._importance import ImportanceResult, trick_importance
from tricksearch.report._report import write_report
from tricksearch.report._show import show_recipe

__all__ = [
    "AblationResult",
    "AblationRow",
    "ExportResult",
    "ImportanceResult",
    "ablate",
    "export_recipe",
    "parse_timm_args",
    "parse_torchvision_command",
    "show_recipe",
    "trick_importance",
    "write_report",
]
