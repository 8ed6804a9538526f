"""What every export target shares: the result, the log of what was consumed, small helpers.

An exporter reads the tricks of a recipe through :meth:`ExportLog.take` (which records them as
consumed) or declares one inexpressible with :meth:`ExportLog.cannot`. At the end,
:meth:`ExportLog.report_unconsumed` lists every trick that is on and that the exporter neither
consumed nor declared as unsupported: a trick the exporter does not know about is reported,
never dropped silently, without any per-trick table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tricksearch.recipe import Recipe
from tricksearch.tricks._base import registered_tricks

__all__ = [
    "ExportLog",
    "ExportResult",
    "data_note",
    "group_member",
    "model_name",
    "num",
    "peak_lr",
    "warmup_epochs",
]


@dataclass
class ExportResult:
    """The exported text, the tricks it could not express, and notes on every compromise.

    ``unsupported`` holds trick names (``"flooding"``) or ``trick.param`` names
    (``"lookahead.k"``) of the recipe that the target cannot express; ``consumed`` the tricks of
    the recipe the exporter read (expressed, possibly with an unsupported parameter).
    """

    text: str
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    target: str = "json"
    consumed: list[str] = field(default_factory=list)


class ExportLog:
    """The tricks an exporter consumed, those it cannot express (with why), approximation notes."""

    def __init__(self, target: str, recipe: Recipe) -> None:
        self.target = target
        self.on = recipe.tricks_on()
        self.consumed: list[str] = []
        self.unsupported: list[str] = []
        self.reasons: list[str] = []
        self.approx: list[str] = []

    def take(self, name: str) -> dict[str, Any] | None:
        """The parameters of trick ``name`` if it is on (recorded as consumed), else ``None``."""
        params = self.on.get(name)
        if params is not None and name not in self.consumed:
            self.consumed.append(name)
        return params

    def cannot(self, what: str, why: str) -> None:
        """Record ``what`` (a trick or ``trick.param``) as inexpressible for the target."""
        if what not in self.unsupported:
            self.unsupported.append(what)
            self.reasons.append(f"{what}: {why}")

    def approx_note(self, text: str) -> None:
        if text not in self.approx:
            self.approx.append(text)

    def report_unconsumed(self, why_not: dict[str, str]) -> None:
        """List every trick that is on and was neither consumed nor declared unsupported.

        ``why_not`` may give a better reason than the generic one for some tricks; a trick
        missing from it is reported all the same.
        """
        for name in self.on:
            if name not in self.consumed and name not in self.unsupported:
                self.cannot(name, why_not.get(name, f"{self.target} has no equivalent"))

    def header(self, title: str) -> list[str]:
        lines = [f"# {title}", "# exported by tricksearch"]
        if self.reasons:
            lines.append(f"# NOT EXPRESSED — the recipe has these, {self.target} cannot take them:")
            lines += [f"#   - {r}" for r in self.reasons]
        else:
            lines.append(f"# every trick of the recipe is expressed for {self.target}.")
        if self.approx:
            lines.append("# approximations and differences:")
            lines += [f"#   - {a}" for a in self.approx]
        return lines

    def result(self, text: str, target: str) -> ExportResult:
        return ExportResult(
            text=text,
            unsupported=list(self.unsupported),
            notes=[*self.reasons, *self.approx],
            target=target,
            consumed=list(self.consumed),
        )


def num(value: float) -> float:
    """A float that prints short but round-trips exactly (no ``0.30000000000000004``)."""
    value = float(value)
    short = float(f"{value:.12g}")
    return short if math.isclose(short, value, rel_tol=1e-12, abs_tol=0.0) else value


def peak_lr(recipe: Recipe) -> float:
    from tricksearch.tricks.schedule import scaled_lr  # imports torch: only when exporting

    return scaled_lr(recipe.schedule, recipe.budget.lr, recipe.budget.batch_size)


def group_member(log: ExportLog, family: str, group: str) -> tuple[str, dict[str, Any]]:
    """The member of an exclusive group the recipe names (consumed), or the group's default."""
    default = ("", {})
    for name, spec in registered_tricks().items():
        if spec.family != family or spec.group != group:
            continue
        params = log.take(name)
        if params is not None:
            return name, dict(params)
        if spec.required_default:
            default = (name, spec.defaults())
    return default


def warmup_epochs(log: ExportLog, recipe: Recipe, target: str) -> tuple[int, dict[str, Any] | None]:
    """Whole warmup epochs (both trainers take an int) and the warmup parameters, if any."""
    warm = log.take("warmup")
    if warm is None:
        return 0, None
    epochs = min(recipe.budget.epochs, math.floor(float(warm["epochs"]) + 0.5))
    if float(warm["epochs"]) != epochs:
        log.approx_note(
            f"warmup.epochs={warm['epochs']} rounded to {epochs}: {target} takes whole epochs."
        )
    return epochs, warm


def model_name(recipe: Recipe, log: ExportLog, target: str) -> str:
    name = recipe.model.name
    if name.startswith("torchvision:"):
        short = name.split(":", 1)[1]
        if target == "timm":
            log.approx_note(
                f"model {name!r} written as timm's {short!r}; timm's implementation may differ."
            )
        return short
    log.approx_note(
        f"model {name!r} is tricksearch's own; pass a {target} model of similar size instead."
    )
    if recipe.model.options:
        log.approx_note(f"model.options {recipe.model.options} have no {target} equivalent.")
    return name


def data_note(recipe: Recipe, log: ExportLog, target: str) -> None:
    d = recipe.data
    log.approx_note(
        f"data: point {target} at your copy of {d.dataset!r}; tricksearch's split (val "
        f"{d.val_fraction} of train, test {d.test_fraction}, split_seed {d.split_seed}) is its own."
    )
    if d.kind != "image":
        log.approx_note(f"data kind {d.kind!r}: {target}'s training script reads images.")
    if d.unlabeled or d.labeled_fraction < 1:
        pool = [f"unlabeled {d.unlabeled}"] if d.unlabeled else []
        if d.labeled_fraction < 1:
            pool.append(f"labeled_fraction {d.labeled_fraction:g}")
        log.approx_note(
            f"data: the unlabelled pool ({', '.join(pool)}) has no {target} equivalent; it trains "
            "on the labels given."
        )
