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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tricksearch.errors import ConfigError, ConfigTypeError, read_text_file
from tricksearch.spaces._entry import TrickEntry, make_entry
from tricksearch.spaces._errors import SpaceError, SpaceTypeError
from tricksearch.spaces._keys import BUDGET_NAMES, budget_key
from tricksearch.spaces._ranges import DEFAULT_BATCH_SIZE, DEFAULT_LR, resolve_budget
from tricksearch.spaces._space import SearchSpace
from tricksearch.tricks._base import registered_tricks

if TYPE_CHECKING:  # pragma: no cover - yaml is imported where a file is read
    import yaml

__all__ = ["PRESETS_DIR", "list_presets", "load_space", "space_from_dict"]

#: Where the preset space files live (shipped as package data).
PRESETS_DIR = Path(__file__).with_name("presets")

_TOP_KEYS = ("description", "extends", "include", "exclude", "budget", "tricks")


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
        """The line of field ``where`` or of the nearest field above it; a note after the path
        (``"tricks.mixup.alpha (declared range)"``) is ignored."""
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

    @contextmanager
    def located(self) -> Iterator[None]:
        """Prefix the refusal of a space's validator with the file and the line of its field."""
        try:
            yield
        except SpaceTypeError as exc:
            raise ConfigTypeError(self.prefix(exc.field) + str(exc)) from None
        except SpaceError as exc:
            raise ConfigError(self.prefix(exc.field) + str(exc)) from None


def _line_map(text: str, label: str) -> dict[str, int]:
    """Dotted field path -> line (1-based), from the YAML node marks; refuses duplicate keys."""
    import yaml

    lines: dict[str, int] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)

    def walk(node: yaml.Node, path: str) -> None:
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

    text = read_text_file(path, label, "a YAML space file")
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


def _names(value: Any, where: str, src: _Source, extra: str = "") -> list[str]:
    """A list of known, distinct trick names (``extra`` adds to what a refusal allows)."""
    tricks = registered_tricks()
    if not isinstance(value, list):
        src.fail(where, f"got {value!r}, expected a list of trick names{extra}.", ConfigTypeError)
    out: list[str] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in tricks:
            src.fail(f"{where}[{i}]", f"unknown trick {name!r}; known tricks: " + ", ".join(tricks))
        if name in out:
            src.fail(f"{where}[{i}]", f"got {name!r} twice; name each trick once.")
        out.append(name)
    return out


def _include(raw: Mapping[str, Any], src: _Source) -> list[str] | str | None:
    """The ``include`` field: None (absent), ``"all"``, or a list of trick names."""
    if "include" not in raw:
        return None
    if raw["include"] == "all":
        return "all"
    return _names(raw["include"], "include", src, " or `all`")


@dataclass
class _Fields:
    """The fields of a space file, each checked before the space is composed."""

    description: str | None
    include: list[str] | str | None
    exclude: list[str]
    tricks: Mapping[str, Any]
    budget: dict[str, Any]


@dataclass
class _Composed:
    """A space under composition: its entries, budget and given notes."""

    entries: dict[str, TrickEntry]
    lr: Any = DEFAULT_LR
    batch_size: Any = DEFAULT_BATCH_SIZE
    notes: list[str] = field(default_factory=list)


def _parse(
    raw: Any, src: _Source, name: str, base_dir: Path, stack: tuple[str, ...]
) -> SearchSpace:
    """Check every field of ``raw``, then compose: ``extends``, ``include``, ``tricks``,
    ``exclude``, ``budget`` (see the module docstring)."""
    fields = _check_fields(raw, src)
    description = fields.description
    if "extends" in raw:
        base = _resolve_extends(raw["extends"], src, base_dir, stack)
        space = _Composed(dict(base.tricks), base.lr, base.batch_size, list(base.given_notes))
        if description is None:
            description = f"extends {raw['extends']}"
    else:
        space = _Composed({})
    if fields.include is not None:
        space.entries = _included(space, fields, src)
    with src.located():
        for trick, value in fields.tricks.items():
            base = space.entries.get(trick)
            space.entries[trick] = make_entry(trick, value, f"tricks.{trick}", base=base)
    for trick in fields.exclude:
        space.entries.pop(trick, None)
    included = {t for t, e in space.entries.items() if e.switch != "off"}
    notes = [n for n in space.notes if n.split(" ", 1)[0] not in included]
    with src.located():
        return SearchSpace(
            space.entries,
            lr=fields.budget.get("lr", space.lr),
            batch_size=fields.budget.get("batch_size", space.batch_size),
            name=name,
            description=" ".join((description or "").split()),
            notes=notes,
        )


def _check_fields(raw: Any, src: _Source) -> _Fields:
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
    include = _include(raw, src)
    exclude = _names(raw.get("exclude") or [], "exclude", src)
    if isinstance(include, list):
        for i, trick in enumerate(exclude):
            if trick in include:
                src.fail(
                    f"exclude[{i}]",
                    f"{trick!r} is also in include "
                    f"(include[{include.index(trick)}]); name it in one of them.",
                )
    tricks = _check_tricks(raw.get("tricks") or {}, exclude, src)
    budget = _check_budget(raw.get("budget") or {}, src)
    return _Fields(description, include, exclude, tricks, budget)


def _check_tricks(tricks: Any, exclude: list[str], src: _Source) -> Mapping[str, Any]:
    """The ``tricks`` mapping: known trick names, none of them excluded."""
    if not isinstance(tricks, Mapping):
        src.fail(
            "tricks",
            f"got {tricks!r}, expected a mapping of trick name -> {{switch, parameters}}.",
            ConfigTypeError,
        )
    known = registered_tricks()
    for trick in tricks:
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
    return tricks


def _check_budget(budget: Any, src: _Source) -> dict[str, Any]:
    """The ``budget`` mapping (``lr``, ``batch_size``), each entry resolved."""
    if not isinstance(budget, Mapping):
        src.fail(
            "budget",
            f"got {budget!r}, expected a mapping with keys " + ", ".join(BUDGET_NAMES),
            ConfigTypeError,
        )
    for key in budget:
        if key not in BUDGET_NAMES:
            src.fail(
                budget_key(key),
                "unknown key; allowed: "
                + ", ".join(BUDGET_NAMES)
                + " (epochs and seed come from the search budget, not the space)",
            )
    with src.located():
        return {k: resolve_budget(k, v, budget_key(k)) for k, v in budget.items()}


def _included(space: _Composed, fields: _Fields, src: _Source) -> dict[str, TrickEntry]:
    """The entries ``include`` keeps: those of the base, else the declared ranges; ``all``
    leaves out the tricks that are not searchable or need a teacher (with a note)."""
    known = registered_tricks()
    include = fields.include
    names = list(known) if include == "all" else list(include or [])
    kept: dict[str, TrickEntry] = {}
    for i, trick in enumerate(names):
        spec = known[trick]
        if trick in space.entries:
            kept[trick] = space.entries[trick]
            continue
        if trick in fields.tricks:
            continue
        if include == "all" and (not spec.searchable or spec.needs_teacher):
            if spec.needs_teacher:
                space.notes.append(
                    f"{trick} left out: it needs a teacher; add `tricks: {{{trick}: "
                    "{teacher: resnet-cifar}}` to a space file to search it."
                )
            continue
        where = "include" if include == "all" else f"include[{i}]"
        try:
            kept[trick] = make_entry(trick, None, f"tricks.{trick}")
        except SpaceTypeError as exc:
            raise ConfigTypeError(f"{src.prefix(where)}{where}: {exc}") from None
        except SpaceError as exc:
            raise ConfigError(f"{src.prefix(where)}{where}: {exc}") from None
    return kept
