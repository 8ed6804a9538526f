"""``show_recipe``: a recipe for people — tricks on by family, the budget, and the evidence."""

from __future__ import annotations

import math
from typing import Any

from tricksearch.recipe import Recipe
from tricksearch.tricks._base import FAMILIES, registered_tricks

__all__ = ["evidence_lines", "fmt_number", "implicit_defaults", "show_recipe", "trick_lines"]


def fmt_number(v: object, spec: str = ".4f") -> str:
    """``v`` formatted with ``spec``, or ``"n/a"`` when it is not a finite number."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return format(v, spec)
    return "n/a"


def _value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in params.items()) or "(no parameters)"


def trick_lines(recipe: Recipe, indent: str = "  ") -> list[str]:
    """One ``[family]`` header per family with tricks on, then ``name  param=value, …``."""
    lines: list[str] = []
    width = max((len(n) for n in recipe.tricks_on()), default=0)
    for fam in FAMILIES:
        section = recipe.section(fam)
        if not section:
            continue
        lines.append(f"{indent}[{fam}]")
        for name, params in section.items():
            lines.append(f"{indent}  {name.ljust(width)}  {_params(params)}")
    return lines


def implicit_defaults(recipe: Recipe) -> list[str]:
    """Exclusive groups the recipe leaves unnamed, and the default member that then applies."""
    out = []
    on = recipe.tricks_on()
    seen: set[tuple[str, str]] = set()
    for name, spec in registered_tricks().items():
        if spec.group is None or not spec.required_default:
            continue
        key = (spec.family, spec.group)
        if key in seen:
            continue
        seen.add(key)
        members = [n for n, s in registered_tricks().items() if (s.family, s.group) == key]
        if not any(m in on for m in members):
            params = f" ({_params(spec.defaults())})" if spec.params else ""
            out.append(f"{spec.group}: {name}{params}")
    return out


def _ms(mean: object, std: object) -> str:
    if not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return "n/a"
    if isinstance(std, (int, float)) and math.isfinite(std):
        return f"{mean:.4f} ± {std:.4f}"
    return f"{mean:.4f}"


def evidence_lines(prov: dict[str, Any], indent: str = "  ") -> list[str]:
    """The evidence a search stored in ``provenance`` (or ``results.json``'s summary), as lines."""
    lines = _score_lines(prov, indent)
    if prov.get("verdict"):
        from tricksearch.tuning._evidence import verdict_lines

        lines += [indent + line for line in verdict_lines(prov)]
    search = prov.get("search") or {}
    if search:
        lines += _search_lines(search, indent)
    ds = prov.get("dataset")
    if isinstance(ds, dict) and ds:
        lines.append(
            f"{indent}dataset: {ds.get('name')} (val {ds.get('val_fraction')}, "
            f"test {ds.get('test_fraction')}, split seed {ds.get('split_seed')})"
        )
    versions = prov.get("versions") or {}
    if versions:
        lines.append(f"{indent}versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if prov.get("created"):
        lines.append(f"{indent}created: {prov['created']}")
    for key in sorted(set(prov) - _KNOWN_EVIDENCE):
        lines.append(f"{indent}{key}: {prov[key]}")
    return lines


#: The provenance keys :func:`evidence_lines` words itself (or leaves out: model, budget); any
#: other key is printed as it is.
_KNOWN_EVIDENCE = {
    "recipe",
    "baseline",
    "seeds",
    "gain",
    "search",
    "dataset",
    "versions",
    "created",
    "model",
    "budget",
    "verdict",  # these five: ``verdict_lines``
    "leader",
    "tuned_baseline",
    "minimal",
    "small_data",
}


def _score_lines(prov: dict[str, Any], indent: str) -> list[str]:
    """Recipe vs baseline on val and test, mean ± std over the seeds, and the gain."""
    rec, base = prov.get("recipe") or {}, prov.get("baseline") or {}
    if not (rec or base):
        return []
    seeds = prov.get("seeds") or []
    seed_text = f"{len(seeds)} seeds ({', '.join(map(str, seeds))})" if seeds else "seeds ?"
    lines = [f"{indent}scores, mean ± sample std over {seed_text}:"]
    for split in ("val", "test"):
        r_ms = _ms(rec.get(f"{split}_acc_mean"), rec.get(f"{split}_acc_std"))
        b_ms = _ms(base.get(f"{split}_acc_mean"), base.get(f"{split}_acc_std"))
        lines.append(f"{indent}  {split:<4} acc  recipe {r_ms}   baseline {b_ms}")
    gain = prov.get("gain") or {}
    parts = [
        f"{k.replace('_acc', '')} {v:+.4f}"
        for k, v in gain.items()
        if isinstance(v, (int, float)) and math.isfinite(v)
    ]
    if parts:
        lines.append(f"{indent}  gain over the baseline: {', '.join(parts)}")
    failed = rec.get("failed_seeds") or []
    if failed:
        lines.append(f"{indent}  recipe seeds that failed: {failed}")
    return lines


def _search_lines(search: dict[str, Any], indent: str) -> list[str]:
    """The search behind the recipe: space, sampler, trials by outcome, cost, where it came from."""
    t = search.get("trials") or {}
    total = sum(v for v in t.values() if isinstance(v, int))
    lines = [
        f"{indent}search: space {search.get('space', '?')!r}, sampler "
        f"{search.get('sampler', '?')}, metric {search.get('metric', '?')}; "
        f"{total} trials: {t.get('complete', 0)} complete, {t.get('pruned', 0)} pruned, "
        f"{t.get('fail', 0)} failed"
        + (f", {t['stopped']} stopped by the time budget" if t.get("stopped") else "")
    ]
    spent, full = search.get("trial_epochs"), search.get("full_budget_epochs")
    if isinstance(spent, (int, float)) and isinstance(full, (int, float)) and full > 0:
        lines.append(
            f"{indent}  {spent} trial-epochs of {full} at the full budget "
            f"(ASHA saved {100 * (1 - spent / full):.0f} %)"
        )
    if search.get("chosen_from"):
        source = search.get("candidates_from")
        lines.append(
            f"{indent}  chosen from: {search['chosen_from']}"
            + (f" (candidates from {source} trials)" if source else "")
        )
    if search.get("seconds") is not None:
        lines.append(f"{indent}  search time: {search['seconds']} s")
    return lines


def show_recipe(recipe: Recipe) -> str:
    """A recipe as readable text: data/model/budget, tricks on by family, defaults, evidence."""
    from tricksearch.models import is_python_model

    d, m, b = recipe.data, recipe.model, recipe.budget
    threads = recipe.runtime.threads
    lines = [
        f"data:   {d.dataset}"
        + (f" (root {d.data_root})" if d.data_root else "")
        + (f", {d.kind} data" if d.kind != "image" else "")
        + f", val {d.val_fraction}, test {d.test_fraction}, split seed {d.split_seed}"
        + (f", labels kept {d.labeled_fraction:g} of train" if d.labeled_fraction < 1 else "")
        + (f", unlabelled pool {d.unlabeled}" if d.unlabeled else ""),
        f"model:  {m.name}"
        + (f" {_params(m.options)}" if m.options else "")
        + (
            " (a Python model: train it from Python, giving it again)"
            if is_python_model(m.name)
            else ""
        ),
        f"budget: {b.epochs} epochs, batch {b.batch_size}, lr {_value(b.lr)}, seed {b.seed}"
        + (f"; {threads} torch thread(s)" if threads else ""),
        "",
    ]
    on = recipe.tricks_on()
    if on:
        lines.append(f"tricks on ({len(on)}):")
        lines += trick_lines(recipe)
    else:
        lines.append("tricks on: none (this is the baseline)")
    defaults = implicit_defaults(recipe)
    if defaults:
        lines.append("defaults in effect (group left unnamed): " + "; ".join(defaults))
    lines.append("")
    if recipe.provenance:
        lines.append("evidence (provenance):")
        lines += evidence_lines(recipe.provenance)
    else:
        lines.append(
            "evidence: none recorded (not written by a search). For seeded evidence run "
            "`tricksearch ablate --recipe FILE`."
        )
    return "\n".join(lines).rstrip() + "\n"
