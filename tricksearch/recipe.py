"""Recipe: the validated, versioned description of one training run.

A recipe names the data, the model, the budget, how it runs (``runtime``: the torch thread count
that makes its numbers reproducible on a CPU), and — one section per trick family
(``tricksearch.tricks.FAMILIES``) — the tricks that are on, each with its parameters. A trick
absent from its section is off. Everything is checked when the recipe is built (unknown keys,
wrong types, out-of-range values, tricks that clash, tricks the model cannot take: see
:mod:`tricksearch.compat`), with a message naming the field, the value and what is allowed.

The file form (YAML or JSON) is canonical: loading a file and saving it again gives the same bytes.

Example::

    schema_version: 1
    data: {dataset: digits, val_fraction: 0.15, test_fraction: 0.2, split_seed: 0}
    model: {name: cnn-small}
    budget: {epochs: 15, batch_size: 128, lr: 0.05, seed: 0}
    runtime: {threads: 1}
    schedule:
      warmup: {epochs: 2.0, kind: linear, start_factor: 0.1}
      cosine: {min_lr_factor: 0.0}
    loss:
      label_smoothing: {epsilon: 0.1}
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tricksearch._recipe_data import DataSection, _check_keys, _check_mapping, _validate_fields
from tricksearch.compat import incompatibility, teacher_missing
from tricksearch.errors import ConfigError, ConfigTypeError, read_text_file
from tricksearch.tricks._base import FAMILIES, Param, registered_tricks
from tricksearch.tricks._section import resolve_section

__all__ = [
    "SCHEMA_VERSION",
    "BudgetSection",
    "DataSection",
    "ModelSection",
    "Recipe",
    "RuntimeSection",
    "load_recipe",
]

#: Version of the recipe file format. Bump it, and add a migration to ``_MIGRATIONS``, whenever a
#: change would make an old file load differently.
SCHEMA_VERSION = 1

# version -> function that upgrades a raw mapping of that version to version + 1.
_MIGRATIONS: dict[int, Any] = {}


def _yaml_loader() -> type:
    """``yaml.SafeLoader`` that reads ``1e-3`` as a number (YAML 1.2), not the string '1e-3'."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_yaml(text: str) -> Any:
    """Parse YAML as tricksearch files are read (``1e-3`` is a float)."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


_MODEL_NAME = Param(
    "name",
    "str",
    "cnn-small",
    "model registry name, `torchvision:NAME`, or `python:MODULE.QUALNAME` (a user's factory, "
    "given again from Python)",
)
_BUDGET_PARAMS = (
    Param("epochs", "int", 15, "training epochs", 1, 100_000),
    Param("batch_size", "int", 128, "mini-batch size", 1, 1 << 20),
    Param("lr", "float", 0.05, "base learning rate (before scaling rules)", 1e-8, 100.0),
    Param("seed", "int", 0, "seed of initialisation, batching and augmentation", 0),
)
_RUNTIME_PARAMS = (
    Param(
        "threads",
        "int",
        None,
        "torch CPU threads (torch.set_num_threads); null: torch's default. CPU float sums depend "
        "on it, so the same count gives the same numbers",
        1,
        nullable=True,
    ),
    Param(
        "workers",
        "int",
        None,
        "data-parallel replicas (torch DDP) the run was trained with; null: one. The global "
        "batch is budget.batch_size, split evenly between them",
        1,
        nullable=True,
    ),
    # Engine options (tricksearch.engine.options): how fast, not what is trained.
    Param("channels_last", "bool", False, "model and 4-D image batches in channels-last format"),
    Param("cudnn_benchmark", "bool", False, "torch.backends.cudnn.benchmark (CUDA only)"),
    Param("tf32", "bool", False, "TF32 fp32 matmuls and convolutions (CUDA only)"),
    Param(
        "compile",
        "choice",
        None,
        "torch.compile mode of the training forward; null: eager",
        choices=("default", "reduce-overhead", "max-autotune"),
        nullable=True,
    ),
    Param("eval_bf16", "bool", False, "bf16 autocast for evaluation's forward passes"),
)


@dataclass(frozen=True)
class ModelSection:
    """Which model: a registry name (``cnn-small``, ``resnet-cifar``, ``torchvision:resnet18``…)."""

    name: str = "cnn-small"
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Any) -> ModelSection:
        raw = _check_mapping(raw, "model")
        _check_keys(raw, ["name", "options"], "model")
        name = _MODEL_NAME.validate(raw.get("name", "cnn-small"), "model.name")
        options = raw.get("options") or {}
        options = _check_mapping(options, "model.options")
        for key in options:
            if not isinstance(key, str):
                raise ConfigTypeError(f"model.options: got key {key!r}, expected strings.")
        return cls(name=name, options=dict(options))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.options:
            out["options"] = dict(self.options)
        return out


@dataclass(frozen=True)
class BudgetSection:
    """The budget: epochs, batch size, base learning rate, seed."""

    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.05
    seed: int = 0

    @classmethod
    def from_dict(cls, raw: Any) -> BudgetSection:
        return cls(**_validate_fields(raw, _BUDGET_PARAMS, "budget"))

    def to_dict(self) -> dict[str, Any]:
        return {p.name: getattr(self, p.name) for p in _BUDGET_PARAMS}


@dataclass(frozen=True)
class RuntimeSection:
    """How the run is executed, where it changes the numbers: ``threads`` (torch's CPU thread
    count; None: torch's default) and ``workers`` (data-parallel replicas; None: one). A search
    records what its trials used. The engine options (``channels_last``, ``cudnn_benchmark``,
    ``tf32``, ``compile``, ``eval_bf16``: :mod:`tricksearch.engine.options`) are off unless set,
    and only a set one is written."""

    threads: int | None = None
    workers: int | None = None
    channels_last: bool = False
    cudnn_benchmark: bool = False
    tf32: bool = False
    compile: str | None = None
    eval_bf16: bool = False

    @classmethod
    def from_dict(cls, raw: Any) -> RuntimeSection:
        return cls(**_validate_fields(raw, _RUNTIME_PARAMS, "runtime"))

    def to_dict(self) -> dict[str, Any]:
        """Only the fields set: an empty section is left out of the file."""
        return {p.name: getattr(self, p.name) for p in _RUNTIME_PARAMS if getattr(self, p.name)}


_TOP_KEYS = ["schema_version", "data", "model", "budget", "runtime", *FAMILIES, "provenance"]


def _validate_family(family: str, raw: Any) -> dict[str, dict[str, Any]]:
    """Validate one trick section: known trick names, their parameters, one member per group.

    Unlike the builders, the recipe does not write out a group's default member (``sgd``,
    ``constant``): absent means "the default", which keeps baseline recipes short.
    """
    if raw is None:
        return {}
    out = resolve_section(raw, family, fill_defaults=False)
    tricks = registered_tricks()
    # `constant: {}` written out is the same recipe as `constant` implied: keep one form.
    return {
        name: out[name]
        for name in sorted(out)
        if not (tricks[name].required_default and out[name] == tricks[name].defaults())
    }


def _check_contracts(recipe: Recipe) -> None:
    """Interactions between tricks that no single section can check."""
    tricks = registered_tricks()
    on = recipe.tricks_on()
    for name in on:
        spec = tricks[name]
        if teacher_missing(spec, recipe.section(spec.family)[name].get("teacher")):
            raise ConfigError(
                f"{spec.family}.{name}.teacher: got null; trick {name!r} needs a teacher: "
                "a checkpoint path (*.pt) or a model name trained once and cached."
            )
    try:
        from tricksearch.models import is_python_model, model_traits
    except ImportError:  # pragma: no cover - models package always present when installed
        return
    if is_python_model(recipe.model.name):
        return  # a user's factory: what it takes is known once it is built (the search fits it)
    traits = model_traits(recipe.model.name)
    for name in on:
        spec = tricks[name]
        reason = incompatibility(spec, traits)
        if reason is not None:
            raise ConfigError(f"{spec.family}.{name}: {reason.refusal(recipe.model.name)}")


@dataclass(frozen=True)
class Recipe:
    """One training run, fully described. Build it with :meth:`from_dict` or :func:`load_recipe`.

    Trick sections map trick name -> parameters (defaults filled in); a trick absent is off.
    ``provenance`` is free-form evidence (versions, scores, seeds) written by the search.
    """

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    budget: BudgetSection = field(default_factory=BudgetSection)
    runtime: RuntimeSection = field(default_factory=RuntimeSection)
    schedule: dict[str, dict[str, Any]] = field(default_factory=dict)
    loss: dict[str, dict[str, Any]] = field(default_factory=dict)
    mixing: dict[str, dict[str, Any]] = field(default_factory=dict)
    augment: dict[str, dict[str, Any]] = field(default_factory=dict)
    optimizer: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_tweaks: dict[str, dict[str, Any]] = field(default_factory=dict)
    procedure: dict[str, dict[str, Any]] = field(default_factory=dict)
    semi: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Any, *, check_contracts: bool = True) -> Recipe:
        """Validate a raw mapping (as read from YAML/JSON) into a Recipe."""
        raw = copy.deepcopy(_check_mapping(raw, "recipe"))
        version = raw.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(
                f"schema_version: got {version!r}, expected an integer from 1 to {SCHEMA_VERSION}."
            )
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"schema_version: got {version}, this tricksearch reads versions up to "
                f"{SCHEMA_VERSION}; upgrade tricksearch to load this recipe."
            )
        while version < SCHEMA_VERSION:
            raw = _MIGRATIONS[version](raw)
            version += 1
        _check_keys(raw, _TOP_KEYS, "recipe")
        provenance = raw.get("provenance") or {}
        _check_mapping(provenance, "provenance")
        recipe = cls(
            data=DataSection.from_dict(raw.get("data") or {}),
            model=ModelSection.from_dict(raw.get("model") or {}),
            budget=BudgetSection.from_dict(raw.get("budget") or {}),
            runtime=RuntimeSection.from_dict(raw.get("runtime") or {}),
            provenance=provenance,
            **{fam: _validate_family(fam, raw.get(fam)) for fam in FAMILIES},
        )
        if check_contracts:
            _check_contracts(recipe)
        return recipe

    def to_dict(self) -> dict[str, Any]:
        """The canonical mapping: fixed key order, defaults written out, empty sections omitted."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "budget": self.budget.to_dict(),
        }
        if self.runtime.to_dict():
            out["runtime"] = self.runtime.to_dict()
        for fam in FAMILIES:
            section = self.section(fam)
            if section:
                out[fam] = {name: dict(section[name]) for name in sorted(section)}
        if self.provenance:
            out["provenance"] = copy.deepcopy(self.provenance)
        return out

    # -- files ----------------------------------------------------------------------------
    def dumps(self, fmt: str = "yaml") -> str:
        """The recipe as YAML (default) or JSON text."""
        data = self.to_dict()
        if fmt == "json":
            return json.dumps(data, indent=2) + "\n"
        if fmt != "yaml":
            raise ConfigError(f"format: got {fmt!r}, expected 'yaml' or 'json'.")
        import yaml

        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write the recipe; ``.json`` gives JSON, anything else YAML."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.dumps("json" if path.suffix == ".json" else "yaml"))
        return path

    @classmethod
    def loads(cls, text: str, fmt: str = "yaml", *, source: str = "<string>") -> Recipe:
        try:
            if fmt == "json":
                raw = json.loads(text)
            else:
                raw = load_yaml(text)
        except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
            raise ConfigError(f"{source}: not valid {fmt.upper()}: {exc}") from None
        if raw is None:
            raise ConfigError(f"{source}: the file is empty; expected a recipe mapping.")
        try:
            return cls.from_dict(raw)
        except ConfigError as exc:
            raise type(exc)(f"{source}: {exc}") from None

    # -- queries and edits ----------------------------------------------------------------
    def section(self, family: str) -> dict[str, dict[str, Any]]:
        if family not in FAMILIES:
            raise ConfigError(f"section: got {family!r}, expected one of {', '.join(FAMILIES)}.")
        return getattr(self, family)

    def tricks_on(self) -> dict[str, dict[str, Any]]:
        """Every trick that is on, by name, in family order."""
        out: dict[str, dict[str, Any]] = {}
        for fam in FAMILIES:
            out.update(self.section(fam))
        return out

    def with_changes(self, **changes: Any) -> Recipe:
        """A new, re-validated recipe with top-level sections replaced (mappings or sections)."""
        raw = self.to_dict()
        for key, value in changes.items():
            if key not in _TOP_KEYS:
                raise ConfigError(f"{key}: unknown recipe section; allowed: {', '.join(_TOP_KEYS)}")
            raw[key] = value.to_dict() if hasattr(value, "to_dict") else value
        return Recipe.from_dict(raw)

    def with_trick(self, name: str, params: dict[str, Any] | None = None) -> Recipe:
        """A copy with trick ``name`` on (replacing other members of its group)."""
        spec = registered_tricks().get(name)
        if spec is None:
            raise ConfigError(
                f"unknown trick {name!r}; known tricks: {', '.join(registered_tricks())}"
            )
        section = {
            n: p
            for n, p in self.section(spec.family).items()
            if spec.group is None or registered_tricks()[n].group != spec.group
        }
        section[name] = dict(params or {})
        return self.with_changes(**{spec.family: section})

    def without_trick(self, name: str) -> Recipe:
        """A copy with trick ``name`` off."""
        spec = registered_tricks().get(name)
        if spec is None:
            raise ConfigError(
                f"unknown trick {name!r}; known tricks: {', '.join(registered_tricks())}"
            )
        section = {n: p for n, p in self.section(spec.family).items() if n != name}
        return self.with_changes(**{spec.family: section})

    def baseline(self) -> Recipe:
        """The same data, model, budget and runtime with every trick off (the reference for
        gains)."""
        return Recipe(data=self.data, model=self.model, budget=self.budget, runtime=self.runtime)

    def without_provenance(self) -> Recipe:
        return self.with_changes(provenance={})


def load_recipe(path: str | Path) -> Recipe:
    """Load a recipe file (``.yaml``/``.yml`` or ``.json``); errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe: no file at {str(path)!r}.")
    fmt = "json" if path.suffix == ".json" else "yaml"
    text = read_text_file(path, "recipe", "a YAML or JSON recipe file")
    return Recipe.loads(text, fmt, source=str(path))
