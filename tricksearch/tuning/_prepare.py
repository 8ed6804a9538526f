"""The preparation before Ray starts: everything that can be wrong with the input is found here.

    the caller's SearchConfig (left untouched) -> a copy with absolute paths -> the base recipe
    -> the data (loaded once, or the caller's) -> the space, fitted to the model and the device
    -> the sampler's extra packages checked

The model is probed by building it (``models.probe_model``) with the builder options of every
model tweak, derived here from the trick registry: a tweak whose option the model does not take
is left out of the search, with a note, and no tweak can be forgotten by the probe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricksearch.tuning._config import SearchConfig

if TYPE_CHECKING:
    from torch import nn

    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace

__all__ = [
    "Prepared",
    "absolute_paths",
    "base_recipe",
    "model_option_probes",
    "model_traits_for",
    "prepare",
]


@dataclass(frozen=True)
class Prepared:
    """A search ready to start. ``config``: the caller's settings with absolute paths (what
    ``search.json`` holds); ``own_data``: the caller's data, shipped to the trials (None: each
    worker loads the dataset by name); ``device``: where trials train."""

    config: SearchConfig
    run_dir: Path
    base: Recipe
    data: DatasetSplits
    own_data: DatasetSplits | None
    model_factory: Callable[..., nn.Module] | None
    space: SearchSpace
    device: str

    @property
    def notes(self) -> list[str]:
        """What the user should know before the search starts: what the space left out and why,
        image files that could not be read."""
        notes = list(self.space.notes)
        if self.data.info.get("n_skipped"):
            notes.append(
                f"skipped {self.data.info['n_skipped']} unreadable image file(s), e.g. "
                f"{self.data.info['skipped_files'][0]}"
            )
        return notes


def prepare(
    config: SearchConfig,
    *,
    data: DatasetSplits | None = None,
    model_factory: Callable[..., nn.Module] | None = None,
) -> Prepared:
    """Check and load everything a search needs, without Ray; ``config`` is not changed."""
    from tricksearch.spaces import load_space
    from tricksearch.tuning._searcher import make_sampler

    config = absolute_paths(config)
    base = base_recipe(config)
    own_data = data
    if data is None:
        from tricksearch.engine import load_data

        data = load_data(base)
    device = "cuda" if config.gpus_per_trial > 0 else "cpu"
    traits = model_traits_for(base, data, model_factory)
    space = load_space(config.space).for_model(traits).for_device(device)
    make_sampler(config.sampler, config.seed, config.trials)  # checks extras before Ray starts
    return Prepared(
        config=config,
        run_dir=Path(config.out).resolve(),
        base=base,
        data=data,
        own_data=own_data,
        model_factory=model_factory,
        space=space,
        device=device,
    )


def absolute_paths(config: SearchConfig) -> SearchConfig:
    """A copy of ``config`` with its paths absolute (space file, data root, dataset path): trials
    run in other folders, and a resume may start elsewhere. ``out`` is kept as the user wrote it
    (messages repeat it)."""
    space = config.space
    if Path(space).expanduser().is_file():
        space = str(Path(space).expanduser().resolve())
    root = config.data_root
    return dataclasses.replace(
        config,
        space=space,
        data_root=None if root is None else str(Path(root).expanduser().resolve()),
        dataset=_absolute_dataset(config.dataset),
    )


def _absolute_dataset(name: str) -> str:
    """``imagefolder:rel/path`` -> absolute: Ray workers run in other folders."""
    for prefix in ("imagefolder:", "npz:"):
        if name.startswith(prefix):
            return prefix + str(Path(name[len(prefix) :]).expanduser().resolve())
    return name


def base_recipe(config: SearchConfig) -> Recipe:
    """The recipe every trial starts from: the data, the model and the budget, no trick."""
    from tricksearch.recipe import Recipe

    root = config.data_root
    return Recipe.from_dict(
        {
            "data": {
                "dataset": _absolute_dataset(config.dataset),
                "data_root": None if root is None else str(Path(root).expanduser().resolve()),
                "val_fraction": config.val_fraction,
                "test_fraction": config.test_fraction,
                "split_seed": config.split_seed,
                "skip_corrupt": config.skip_corrupt,
            },
            "model": {"name": config.model},
            "budget": {
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "seed": config.seed,
            },
        }
    )


def model_traits_for(
    base: Recipe, data: DatasetSplits, factory: Callable[..., nn.Module] | None
) -> dict[str, Any]:
    """What the model can take, for ``SearchSpace.for_model``: ``residual`` and ``adaptive_pool``
    (``models.model_traits``), ``model_options`` and ``norm_groups`` (``models.probe_model``).
    The model is built, not trained."""
    from tricksearch.components import model_options
    from tricksearch.models import model_traits, probe_model

    if factory is None:
        traits: dict[str, Any] = model_traits(base.model.name)
    else:
        from tricksearch.engine import make_model

        traits = model_traits(make_model(base, data, factory))
    probed = probe_model(
        base.model.name if factory is None else factory,
        in_channels=data.channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
        base_options=model_options(base),
        probes=model_option_probes(),
    )
    return traits | probed


def model_option_probes() -> dict[str, list[dict[str, Any]]]:
    """For every builder option a registered trick declares (``TrickSpec.model_option``), the
    builder options that trick gives at its defaults and at each value of each of its choice
    parameters (``model_tweaks.model_options``): what ``models.probe_model`` builds with."""
    from tricksearch.tricks import registered_tricks
    from tricksearch.tricks.model_tweaks import model_options as tweak_options

    probes: dict[str, list[dict[str, Any]]] = {}
    for spec in registered_tricks().values():
        if spec.model_option is None:
            continue
        settings = [{}] + [{p.name: c} for p in spec.params if p.choices for c in p.choices]
        options = probes.setdefault(spec.model_option, [])
        for params in settings:
            built = tweak_options({spec.name: params})
            if built not in options:
                options.append(built)
    return probes
