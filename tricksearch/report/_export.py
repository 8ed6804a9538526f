"""Export a recipe to another trainer: timm's ``train.py``, torchvision's reference script, JSON.

- ``timm``: the ``args.yaml`` that ``python train.py DATA --config args.yaml`` reads
  (:mod:`tricksearch.report._export_timm`);
- ``torchvision``: a command line for ``references/classification/train.py`` of torchvision
  (:mod:`tricksearch.report._export_torchvision`);
- ``json``: the recipe itself as JSON.

Neither trainer can express every trick. Every trick (or trick parameter) the target cannot
express is listed in :attr:`ExportResult.unsupported`, explained in :attr:`ExportResult.notes`
and written as a comment block at the top of the text — never dropped silently: each exporter
records the tricks it consumed, and every other trick of the recipe is reported automatically
(:class:`~tricksearch.report._export_common.ExportLog`).
"""

from __future__ import annotations

from collections.abc import Callable

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe
from tricksearch.report._export_common import ExportResult
from tricksearch.report._export_timm import export_timm, parse_timm_args
from tricksearch.report._export_torchvision import (
    export_torchvision,
    parse_torchvision_command,
    torchvision_ema_decay,
)

__all__ = [
    "EXPORTERS",
    "TARGETS",
    "ExportResult",
    "export_recipe",
    "parse_timm_args",
    "parse_torchvision_command",
    "torchvision_ema_decay",
]

#: Export targets: name -> what it produces.
TARGETS: dict[str, str] = {
    "timm": "args.yaml for timm's train.py --config",
    "torchvision": "command line for torchvision's references/classification/train.py",
    "json": "the recipe as JSON",
}


def _json(recipe: Recipe) -> ExportResult:
    return ExportResult(text=recipe.dumps("json"), target="json", consumed=list(recipe.tricks_on()))


#: The exporter of each target.
EXPORTERS: dict[str, Callable[[Recipe], ExportResult]] = {
    "timm": export_timm,
    "torchvision": export_torchvision,
    "json": _json,
}


def export_recipe(recipe: Recipe, to: str) -> ExportResult:
    """Export ``recipe`` for another trainer; ``to`` is ``timm``, ``torchvision`` or ``json``.

    The result's ``unsupported`` lists every trick (or trick parameter) of the recipe the target
    cannot express; the text's comment block repeats them with the reason.
    """
    if not isinstance(recipe, Recipe):
        raise ConfigTypeError(f"recipe: got {type(recipe).__name__}, expected a Recipe.")
    exporter = EXPORTERS.get(to)
    if exporter is None:
        raise ConfigError(f"to: got {to!r}, expected one of {', '.join(TARGETS)}.")
    return exporter(recipe)
