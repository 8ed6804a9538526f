"""Space files: YAML that declares a search space, validated completely before anything runs.

Format (every key optional)::

    description: what this space is for
    extends: default            # a preset name or another file; without it: an empty space
    include: [warmup, cosine, label_smoothing, mixup]   # only these tricks (or `all`)
    exclude: [adversarial]
    budget:
      lr: {low: 0.01, high: 0.5, log: true}   # a range, a fixed value, or null (the base's)
      batch_size: 128
    tricks:
      label_smoothing: {epsilon: {low: 0.0, high: 0.2}}
      mixup: {switch: on, alpha: 0.2}          # forced on, alpha fixed
      warmup: {kind: {choices: [linear]}}
      distillation: {teacher: resnet-cifar}

Composition, in this order: start from ``extends``; ``include`` keeps exactly the tricks it names
(adding those the base lacks, with their declared ranges; ``all`` = every searchable trick);
``tricks`` adds or overrides the tricks it names (naming a trick includes it); ``exclude`` removes.
A refusal is a :class:`~tricksearch.errors.ConfigError` (or ``ConfigTypeError``) that names the
file, the line, the field, the value received and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.spaces._space import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LR,
    SearchSpace,
    TrickEntry,
    make_entry,
    resolve_budget,
)
from tricksearch.tricks._base import registered_tricks

__all__ = ["PRESETS_DIR", "list_presets", "load_space", "space_from_dict"]

#: Where the preset space files live (shipped as package data).
PRESETS_DIR = Path(__file__).with_name("presets")

_TOP_KEYS = ("description", "extends", "include", "exclude", "budget", "tricks")
_BUDGET_KEYS = ("lr", "batch_size")


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description (the ``description:`` of each preset file)."""
    import yaml

    out: dict[str, str] = {}
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            raw = None
        desc = raw.get("description", "") if isinstance(raw, dict) else ""
        out[path.stem] = " ".join(str(desc).split())
    return out


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """Load a preset (by name, see :func:`list_presets`) or a space file (by path)."""
    text = os.fspath(name_or_path)
    presets = list_presets()
    if text in presets:
        return _load_preset(text, ())
    path = Path(text)
    if path.is_file():
        return _load_file(path, ())
    raise ConfigError(
        f"space: got {text!r}, which is neither a preset ({', '.join(presets)}) nor a file."
    )


def space_from_dict(
    raw: Any,
    *,
    source: str = "<space>",
    name: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> SearchSpace:
    """Validate the file form of a space (as from :meth:`SearchSpace.to_dict` or YAML)."""
    src = _Source(source, {})
    return _parse(raw, src, name or source, Path(base_dir) if base_dir else Path.cwd(), ())


# ------------------------------------------------------------------------------------------


class _Source:
    """Where a space comes from: its name for messages, and the line of each field."""

    def __init__(self, label: str, lines: dict[str, int]) -> None:
        self.label = label
        self.lines = lines

    def _line(self, where: str) -> int | None:
        path = where.split(" ", 1)[0]
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def prefix(self, where: str) -> str:
        line = self._line(where)
        return f"{self.label}, line {line}: " if line is not None else f"{self.label}: "

    def fail(self, where: str, message: str, cls: type[Exception] = ConfigError) -> NoReturn:
        raise cls(f"{self.prefix(where)}{where}: {message}")

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a validator; prefix its error (which starts with the field) with file and line."""
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ConfigTypeError) as exc:
            message = str(exc)
            where = message.split(": ", 1)[0]
            raise type(exc)(self.prefix(where) + message) from None


def _line_map(text: str, label: str) -> dict[str, int]:
    """Dotted field path -> line (1-based), from the YAML node marks; refuses duplicate keys."""
    import yaml

    lines: dict[str, int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                sub = f"{path}.{key}" if path else key
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(
                        f"{label}, line {line}: {sub}: the key appears twice; write it once."
                    )
                seen.add(key)
                lines[sub] = line
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = f"{path}[{i}]"
                lines[sub] = item.start_mark.line + 1
                walk(item, sub)

    if root is not None:
        walk(root, "")
    return lines


def _read(path: Path, label: str) -> tuple[Any, dict[str, int]]:
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the file: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
        lines = _line_map(text, label)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"{label}{where}: not valid YAML: {detail}") from None
    if raw is None:
        raise ConfigError(
            f"{label}: the file is empty; expected a mapping (see `extends`, "
            "`include`, `exclude`, `budget`, `tricks`)."
        )
    return raw, lines


def _load_preset(name: str, stack: tuple[str, ...]) -> SearchSpace:
    path = PRESETS_DIR / f"{name}.yaml"
    label = f"preset {name!r} ({path})"
    raw, lines = _read(path, label)
    return _parse(raw, _Source(label, lines), name, PRESETS_DIR, (*stack, f"preset:{name}"))


def _load_file(path: Path, stack: tuple[str, ...]) -> SearchSpace:
    label = f"space file {str(path)!r}"
    raw, lines = _read(path, label)
    key = f"file:{path.resolve()}"
    return _parse(raw, _Source(label, lines), str(path), path.parent, (*stack, key))


def _resolve_extends(
    value: Any, src: _Source, base_dir: Path, stack: tuple[str, ...]
) -> SearchSpace:
    presets = list_presets()
    if not isinstance(value, str) or not value:
        src.fail(
            "extends",
            f"got {value!r}, expected a preset name ({', '.join(presets)}) or a file path.",
            ConfigTypeError,
        )
    path: Path | None = None
    if value in presets:
        key = f"preset:{value}"
    else:
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            src.fail(
                "extends",
                f"got {value!r}: unknown preset and no such file ({path}); presets: "
                + ", ".join(presets),
            )
        key = f"file:{path.resolve()}"
    if key in stack:
        src.fail(
            "extends",
            f"got {value!r}, which extends itself (cycle: " + " -> ".join([*stack, key]) + ").",
        )
    return _load_preset(value, stack) if path is None else _load_file(path, stack)


def _names(value: Any, where: str, src: _Source, allow_all: bool) -> list[str] | str:
    """A list of known, distinct trick names (or ``all``)."""
    tricks = registered_tricks()
    if allow_all and value == "all":
        return "all"
    if not isinstance(value, list):
        extra = " or `all`" if allow_all else ""
        src.fail(where, f"got {value!r}, expected a list of trick names{extra}.", ConfigTypeError)
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in tricks:
            src.fail(f"{where}[{i}]", f"unknown trick {name!r}; known tricks: " + ", ".join(tricks))
        if name in out:
            src.fail(f"{where}[{i}]", f"got {name!r} twice; name each trick once.")
        out.append(name)
    return out


def _parse(
    raw: Any, src: _Source, name: str, base_dir: Path, stack: tuple[str, ...]
) -> SearchSpace:
    if not isinstance(raw, Mapping):
        raise ConfigTypeError(
            f"{src.label}: got {raw!r}, expected a mapping with keys " + ", ".join(_TOP_KEYS)
        )
    for key in raw:
        if key not in _TOP_KEYS:
            src.fail(str(key), "unknown key; allowed: " + ", ".join(_TOP_KEYS))

    description = raw.get("description")
    if description is not None and not isinstance(description, str):
        src.fail("description", f"got {description!r}, expected a string.", ConfigTypeError)

    # -- every field checked before the space is composed ---------------------------------
    include = _names(raw["include"], "include", src, True) if "include" in raw else None
    exclude = _names(raw.get("exclude") or [], "exclude", src, False)
    if isinstance(include, list):
        for i, trick in enumerate(exclude):
            if trick in include:
                src.fail(
                    f"exclude[{i}]",
                    f"{trick!r} is also in include "
                    f"(include[{include.index(trick)}]); name it in one of them.",
                )
    tricks_raw = raw.get("tricks") or {}
    if not isinstance(tricks_raw, Mapping):
        src.fail(
            "tricks",
            f"got {tricks_raw!r}, expected a mapping of trick name -> {{switch, parameters}}.",
            ConfigTypeError,
        )
    known = registered_tricks()
    for trick in tricks_raw:
        if trick not in known:
            src.fail(
                f"tricks.{trick}", f"unknown trick {trick!r}; known tricks: " + ", ".join(known)
            )
        if trick in exclude:
            src.fail(
                f"tricks.{trick}",
                f"{trick!r} is also in exclude "
                f"(exclude[{exclude.index(trick)}]); configure it or exclude it.",
            )
    budget_raw = raw.get("budget") or {}
    if not isinstance(budget_raw, Mapping):
        src.fail(
            "budget",
            f"got {budget_raw!r}, expected a mapping with keys " + ", ".join(_BUDGET_KEYS),
            ConfigTypeError,
        )
    for key in budget_raw:
        if key not in _BUDGET_KEYS:
            src.fail(
                f"budget.{key}",
                "unknown key; allowed: "
                + ", ".join(_BUDGET_KEYS)
                + " (epochs and seed come from the search budget, not the space)",
            )
    budget = {k: src.run(resolve_budget, k, v, f"budget.{k}") for k, v in budget_raw.items()}

    # -- compose --------------------------------------------------------------------------
    if "extends" in raw:
        base = _resolve_extends(raw["extends"], src, base_dir, stack)
        entries: dict[str, TrickEntry] = dict(base.tricks)
        lr, batch_size, notes = base.lr, base.batch_size, list(base.given_notes)
        if description is None:
            description = f"extends {raw['extends']}"
    else:
        entries, lr, batch_size, notes = {}, DEFAULT_LR, DEFAULT_BATCH_SIZE, []

    if include is not None:
        names = list(known) if include == "all" else include
        kept: dict[str, TrickEntry] = {}
        for i, trick in enumerate(names):
            spec = known[trick]
            if trick in entries:
                kept[trick] = entries[trick]
                continue
            if trick in tricks_raw:
                continue
            if include == "all" and (not spec.searchable or spec.needs_teacher):
                if spec.needs_teacher:
                    notes.append(
                        f"{trick} left out: it needs a teacher; add `tricks: {{{trick}: "
                        "{teacher: resnet-cifar}}` to a space file to search it."
                    )
                continue
            where = "include" if include == "all" else f"include[{i}]"
            try:
                kept[trick] = make_entry(trick, None, f"tricks.{trick}")
            except (ConfigError, ConfigTypeError) as exc:
                raise type(exc)(f"{src.prefix(where)}{where}: {exc}") from None
        entries = kept
    for trick, value in tricks_raw.items():
        entries[trick] = src.run(
            make_entry, trick, value, f"tricks.{trick}", base=entries.get(trick)
        )
    for trick in exclude:
        entries.pop(trick, None)
    lr = budget.get("lr", lr)
    batch_size = budget.get("batch_size", batch_size)
    included = {t for t, e in entries.items() if e.switch != "off"}
    notes = [n for n in notes if n.split(" ", 1)[0] not in included]
    return src.run(
        SearchSpace,
        entries,
        lr=lr,
        batch_size=batch_size,
        name=name,
        description=" ".join((description or "").split()),
        notes=notes,
    )
