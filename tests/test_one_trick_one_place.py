"""One trick = its family module + its test: every other place that must know a trick is checked.

For every registered trick: its family's builder dispatch (``BUILDERS``) has an entry, each
exporter either consumed it (and the output changed) or listed it as unsupported, and the
README's trick table has its row with the family and data kinds it declares. The checks are plain
functions, so a test can show that they catch a trick missing from any of these places.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from torch import nn

from tricksearch.components import build
from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report._export import EXPORTERS
from tricksearch.report._export_common import ExportResult
from tricksearch.tricks import (
    FAMILIES,
    TrickSpec,
    augment,
    loss,
    mixing,
    model_tweaks,
    optimizer,
    procedure,
    registered_tricks,
    schedule,
    semi,
)
from tricksearch.tricks import _base as registry

README = Path(__file__).resolve().parents[1] / "README.md"
FAMILY_MODULES: dict[str, ModuleType] = {
    "schedule": schedule,
    "loss": loss,
    "mixing": mixing,
    "augment": augment,
    "optimizer": optimizer,
    "model_tweaks": model_tweaks,
    "procedure": procedure,
    "semi": semi,
}
TRAINERS = ("timm", "torchvision")
BASE = Recipe.from_dict({"model": {"name": "resnet-cifar"}, "budget": {"epochs": 10}})


def _with(name: str, spec: TrickSpec) -> Recipe:
    return BASE.with_trick(name, {"teacher": "resnet-cifar"} if spec.needs_teacher else {})


def builder_problems(tricks: dict[str, TrickSpec]) -> list[str]:
    """Tricks without an entry in their family's dispatch table, and entries without a trick."""
    problems = [
        f"{name}: no entry in tricks/{spec.family}.py BUILDERS"
        for name, spec in tricks.items()
        if name not in FAMILY_MODULES[spec.family].BUILDERS
    ]
    for family, module in FAMILY_MODULES.items():
        stale = set(module.BUILDERS) - {n for n, s in tricks.items() if s.family == family}
        problems += [f"{name}: BUILDERS entry in tricks/{family}.py, no trick" for name in stale]
    return problems


def export_problems(
    tricks: dict[str, TrickSpec], target: str, export: Callable[[Recipe], ExportResult]
) -> list[str]:
    """Tricks an exporter neither expressed (consumed, output changed) nor listed as unsupported."""
    plain = export(BASE).text
    problems = []
    for name, spec in tricks.items():
        if spec.required_default:
            continue  # sgd / constant with their defaults are what the baseline already does
        res = export(_with(name, spec))
        listed = any(u == name or u.startswith(f"{name}.") for u in res.unsupported)
        if listed:
            continue
        if name not in res.consumed:
            problems.append(f"{name}: {target} neither consumed nor listed it")
        elif res.text == plain:
            problems.append(f"{name}: {target} consumed it but the output did not change")
    return problems


def readme_rows(text: str) -> dict[str, tuple[str, str]]:
    """``trick -> (family, data)`` from the table of the README's "## Tricks" section."""
    section = text.split("\n## Tricks\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| ([^|]+) \|", section, flags=re.M)
    return {name: (family, data.strip()) for name, family, data in rows}


def _data_cell(spec: TrickSpec) -> str:
    if spec.data_kinds == frozenset(registry.DATA_KINDS):
        return "all"
    kinds = " or ".join({"image": "images"}.get(k, k) for k in sorted(spec.data_kinds))
    return kinds + (f" (≥ {spec.min_image_side} px)" if spec.min_image_side > 1 else "")


def readme_problems(tricks: dict[str, TrickSpec], text: str) -> list[str]:
    rows = readme_rows(text)
    problems = []
    for name, spec in tricks.items():
        if name not in rows:
            problems.append(f"{name}: no row in the README's trick table")
        elif rows[name] != (spec.family, _data_cell(spec)):
            problems.append(f"{name}: README row {rows[name]}, declared ({spec.family}, ...)")
    problems += [f"{name}: README row, no trick" for name in set(rows) - set(tricks)]
    return problems


# ----------------------------------------------------------------------------------- the checks


def test_every_trick_has_a_builder_entry() -> None:
    assert builder_problems(registered_tricks()) == []


@pytest.mark.parametrize("target", TRAINERS)
def test_every_trick_is_consumed_or_listed_by_each_exporter(target: str) -> None:
    assert export_problems(registered_tricks(), target, EXPORTERS[target]) == []


def test_every_trick_has_its_row_in_the_readme() -> None:
    assert readme_problems(registered_tricks(), README.read_text()) == []


def test_json_export_consumes_everything() -> None:
    res = EXPORTERS["json"](_with("mixup", registered_tricks()["mixup"]))
    assert res.consumed == ["mixup"] and res.unsupported == []


# --------------------------------------------------------- the checks catch a missing place

DUMMY = TrickSpec(name="dummy_loss", family="loss", summary="a trick declared and nothing else")


@pytest.fixture
def dummy(monkeypatch: pytest.MonkeyPatch) -> dict[str, TrickSpec]:
    """A trick registered (as a new family-module declaration would) with no builder entry and
    no README row."""
    monkeypatch.setitem(registry._REGISTRY, DUMMY.name, DUMMY)
    return {DUMMY.name: DUMMY}


def test_a_trick_without_builder_entry_is_caught(dummy: dict[str, TrickSpec]) -> None:
    assert "dummy_loss: no entry in tricks/loss.py BUILDERS" in builder_problems(
        registered_tricks()
    )
    # ... and building it is an error naming it and the tricks that have builders.
    net = nn.Linear(4, 3)
    with pytest.raises(ConfigError, match=r"loss\.dummy_loss: no builder .*label_smoothing"):
        build(BASE.with_trick("dummy_loss"), net, num_classes=3, steps_per_epoch=1)


def test_a_trick_without_readme_row_is_caught(dummy: dict[str, TrickSpec]) -> None:
    problems = readme_problems(registered_tricks(), README.read_text())
    assert "dummy_loss: no row in the README's trick table" in problems
    stale = README.read_text().replace(
        "| `flooding` | loss | all |", "| `flooding` | loss | images |"
    )
    assert any(p.startswith("flooding: README row") for p in readme_problems(dummy, stale))


@pytest.mark.parametrize("target", TRAINERS)
def test_an_exporter_reports_an_unknown_trick_by_itself(
    dummy: dict[str, TrickSpec], target: str
) -> None:
    """No table to extend: a trick the exporter does not know is listed as unsupported."""
    res = EXPORTERS[target](BASE.with_trick("dummy_loss"))
    assert "dummy_loss" in res.unsupported and "dummy_loss" not in res.consumed
    assert "#   - dummy_loss: " in res.text
    assert export_problems(dummy, target, EXPORTERS[target]) == []


def test_an_exporter_that_drops_a_trick_silently_is_caught(dummy: dict[str, TrickSpec]) -> None:
    def forgetful(recipe: Recipe) -> ExportResult:  # claims every trick, writes none of them
        return ExportResult(text="python train.py\n", consumed=list(recipe.tricks_on()))

    def silent(recipe: Recipe) -> ExportResult:  # neither claims nor lists anything
        return ExportResult(text="python train.py\n")

    assert export_problems(dummy, "x", forgetful) == [
        "dummy_loss: x consumed it but the output did not change"
    ]
    assert export_problems(dummy, "x", silent) == ["dummy_loss: x neither consumed nor listed it"]


def test_families_of_the_table_are_the_recipe_sections() -> None:
    assert set(FAMILY_MODULES) == set(FAMILIES)
