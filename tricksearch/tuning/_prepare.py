"""The preparation before Ray starts: everything that can be wrong with the input is found here.

    the caller's SearchConfig (left untouched) -> a copy with absolute paths -> the base recipe
    -> the data (loaded once, or the caller's; the base recipe takes its kind) -> the space,
    fitted to the model, the device and the data, with the baseline's lr and batch size as
    allowed points -> the pre-flight (``_preflight``: the baseline and every trick alone trained
    one step on a tiny slice of the data; what fails is left out with its reason) -> the
    sampler's extra packages checked

A search on a user's model factory (``python:MODULE.QUALNAME``) or on data given from Python
(dataset ``"tensors"``) needs them given again to resume: :func:`resume_hint` says how, and
:func:`prepare` refuses such a search without them, saying the same.

The model is probed by building it (``models.probe_model``) with the builder options of every
model tweak, derived here from the trick registry: a tweak whose option the model does not take
is left out of the search, with a note, and no tweak can be forgotten by the probe.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tricksearch.errors import ConfigError
from tricksearch.tuning._config import SearchConfig

if TYPE_CHECKING:
    from torch import nn

    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe
    from tricksearch.spaces import SearchSpace

__all__ = [
    "TENSORS",
    "Prepared",
    "absolute_paths",
    "base_recipe",
    "model_option_probes",
    "model_traits_for",
    "prepare",
    "resume_hint",
    "trial_threads",
]

#: The dataset name a search records for data given from Python (tensors or DatasetSplits).
TENSORS = "tensors"


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
    preflight_line: str = ""
    resume_notes: tuple[str, ...] = ()
    packing_notes: tuple[str, ...] = ()  # --gpus-per-trial auto: what the probe decided

    @property
    def notes(self) -> list[str]:
        """What the user should know before the search starts: a space file edited since a
        resumed search started, what the data reader changed (images resized, labels
        renumbered), what the space left out and why, image files that could not be read, the
        unlabelled pool's size."""
        notes = [*self.resume_notes, *self.data.info.get("notes", []), *self.space.notes]
        notes += self.packing_notes
        if self.data.x_unlabeled is not None:
            notes.append(f"semi-supervised data: {self.data.summary()}")
        if self.data.info.get("n_skipped"):
            notes.append(
                f"skipped {self.data.info['n_skipped']} unreadable image file(s), e.g. "
                f"{self.data.info['skipped_files'][0]}"
            )
        return notes


#: The search's own copy of its space, in the run folder: a resume searches the same space even
#: when the space file was edited since (Optuna refuses a changed distribution mid-study).
SPACE_COPY = "space.yaml"


def prepare(
    config: SearchConfig,
    *,
    data: DatasetSplits | None = None,
    model_factory: Callable[..., nn.Module] | None = None,
    resume: bool = False,
) -> Prepared:
    """Check and load everything a search needs, without Ray; ``config`` is not changed. On
    ``resume`` the space is the run folder's copy (:data:`SPACE_COPY`) when there is one."""
    from tricksearch.api import for_data
    from tricksearch.tuning._preflight import preflight
    from tricksearch.tuning._probe import resolve_auto, resolve_on_cpu
    from tricksearch.tuning._searcher import make_sampler

    _check_python_objects(config, data, model_factory)
    config, packing_notes = resolve_on_cpu(absolute_paths(config))  # auto without CUDA: 0
    base = base_recipe(config)
    own_data = data
    if data is None:
        from tricksearch.engine import load_data

        data = load_data(base)
    base = for_data(base, data)
    device = "cuda" if config.gpus_per_trial == "auto" or config.gpus_per_trial > 0 else "cpu"
    _check_local_gpu(config)
    traits = model_traits_for(base, data, model_factory)
    space, resume_notes = _space_to_search(config, resume)
    space = (
        space.for_model(traits)
        .for_device(device, config.workers, _has_batch_norm(base, data, model_factory, config))
        .for_data(
            data.kind,
            data.image_size if data.kind == "image" else None,
            unlabeled=data.unlabeled_count,  # semi tricks need a pool
        )
        .with_budget_points(lr=base.budget.lr, batch_size=base.budget.batch_size)
    )
    checked = preflight(space, base, data, model_factory, device)  # every trick, one step
    make_sampler(config.sampler, config.seed, config.trials)  # checks extras before Ray starts
    if config.gpus_per_trial == "auto":  # the probe: trials per GPU from memory and throughput
        config, packing_notes = resolve_auto(config, base, checked.space, data, model_factory)
    return Prepared(
        config=config,
        run_dir=Path(config.out).resolve(),
        base=base,
        data=data,
        own_data=own_data,
        model_factory=model_factory,
        space=checked.space,
        device=device,
        preflight_line=checked.line,
        resume_notes=tuple(resume_notes),
        packing_notes=tuple(packing_notes),
    )


def _space_to_search(config: SearchConfig, resume: bool) -> tuple[SearchSpace, list[str]]:
    """The space as the user gave it; on resume the run folder's copy of it, with a note when
    the space file has been edited since the search started."""
    from tricksearch.spaces import load_space

    copy = Path(config.out).resolve() / SPACE_COPY
    if not (resume and copy.is_file()):
        return load_space(config.space), []
    kept = load_space(str(copy))
    try:
        now = load_space(config.space).to_dict()
    except Exception:  # the file is gone or broken now: the copy is all there is
        return kept, [
            f"the space {config.space!r} cannot be read now; the resume searches "
            f"the search's own copy ({copy})"
        ]
    differing = _differing_keys(kept.to_dict(), now)
    if not differing:
        return kept, []
    shown = ", ".join(differing[:8]) + (
        f" and {len(differing) - 8} more" if len(differing) > 8 else ""
    )
    return kept, [
        f"the space {config.space!r} has changed since this search started ({shown}); a "
        f"study cannot change its space midway, so the resume searches the search's own copy "
        f"({copy}); start a new search with another --out to search the edited space"
    ]


def _differing_keys(before: Any, after: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts (added and removed too)."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [] if before == after else [prefix or "(the whole space)"]
    keys = sorted(set(before) | set(after), key=str)
    out: list[str] = []
    for key in keys:
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in before or key not in after:
            out.append(where)
        else:
            out.extend(_differing_keys(before[key], after[key], where))
    return out


def _check_local_gpu(config: SearchConfig) -> None:
    """On this machine (no ``--address``), GPU trials need a GPU here: refused before Ray starts
    (a cluster's GPUs are checked once Ray is up, ``_session.check_resources``)."""
    import torch

    if config.gpus_per_trial == "auto":  # resolved to 0 without CUDA (``resolve_on_cpu``)
        return
    if config.gpus_per_trial > 0 and not config.address and not torch.cuda.is_available():
        raise ConfigError(
            f"gpus_per_trial: got {config.gpus_per_trial}, but this machine has 0 GPU(s) "
            "(torch sees no CUDA device); use --gpus-per-trial 0, or --address to run on a "
            "Ray cluster that has GPUs."
        )


def _python_only(config: SearchConfig) -> dict[str, str]:
    """What a search needs given again from Python: ``{"data": …, "model": …}`` (empty: none)."""
    from tricksearch.models import PYTHON_PREFIX, is_python_model

    needs: dict[str, str] = {}
    if config.dataset == TENSORS:
        needs["data"] = "<the same data>"
    if is_python_model(config.model):
        needs["model"] = config.model[len(PYTHON_PREFIX) :].rsplit(".", 1)[-1]
    return needs


def resume_hint(config: SearchConfig) -> str:
    """How to continue the search of ``config``: ``tricksearch search --resume OUT``, or, for a
    search on a user's model factory or on data given from Python (the command line can rebuild
    neither), ``tricksearch.resume('OUT', data=<the same data>, model=make_net) from Python``
    naming what to give again."""
    needs = _python_only(config)
    if not needs:
        return f"tricksearch search --resume {config.out}"
    args = "".join(f", {k}={v}" for k, v in needs.items())
    what = " and ".join(
        {"data": "data given from Python", "model": f"a Python model ({config.model})"}[k]
        for k in needs
    )
    return (
        f"tricksearch.resume({config.out!r}{args}) from Python (the search ran on {what}, "
        "which the command line cannot rebuild)"
    )


def _check_python_objects(
    config: SearchConfig, data: DatasetSplits | None, factory: Callable[..., nn.Module] | None
) -> None:
    """Refuse a search recorded with a Python model or Python data that are not given again."""
    needs = _python_only(config)
    missing = [
        k for k, given in (("data", data), ("model", factory)) if k in needs and given is None
    ]
    if not missing:
        return
    what = {
        "data": f"dataset {config.dataset!r} (data given from Python)",
        "model": f"model {config.model!r} (a Python model)",
    }
    if (Path(config.out) / "search.json").is_file():
        how = f"resume it from Python: {resume_hint(config)}"
    else:
        how = "give them from Python: tricksearch.search(dataset=..., model=...)"
    raise ConfigError(
        f"{' and '.join(what[k] for k in missing)}: cannot be rebuilt from a name; {how}"
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
        unlabeled=None if config.unlabeled is None else _absolute_dataset(config.unlabeled),
    )


def _absolute_dataset(name: str) -> str:
    """``imagefolder:rel/path`` -> absolute: Ray workers run in other folders (datasets and
    unlabelled pools)."""
    for prefix in ("imagefolder:", "npz:"):
        if name.startswith(prefix):
            return prefix + str(Path(name[len(prefix) :]).expanduser().resolve())
    return name


def trial_threads(config: SearchConfig) -> int:
    """The torch thread count of every trial and retraining: ``max(1, floor(cpus_per_trial))``."""
    return max(1, math.floor(config.cpus_per_trial))


def base_recipe(config: SearchConfig) -> Recipe:
    """The recipe every trial starts from: the data, the model, the budget and the trials'
    thread count (``runtime.threads``, :func:`trial_threads`), no trick. Its ``data.kind`` is
    the default until :func:`prepare` gives it the kind of the data loaded."""
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
                "unlabeled": (
                    None if config.unlabeled is None else _absolute_dataset(config.unlabeled)
                ),
                "labeled_fraction": config.labeled_fraction,
            },
            "model": {"name": config.model},
            "budget": {
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "seed": config.seed,
            },
            "runtime": {
                "threads": trial_threads(config),
                "workers": config.workers if config.workers > 1 else None,  # DDP trials
                **(config.engine or {}),  # channels_last, compile … (engine/options.py)
            },
        }
    )


def _has_batch_norm(
    base: Recipe, data: DatasetSplits, factory: Callable[..., nn.Module] | None, config: Any
) -> bool:
    """Whether the model has BatchNorm layers (``sync_bn``); only built for multi-GPU trials."""
    if config.gpus_per_trial == "auto" or config.gpus_per_trial < 2:
        return True  # sync_bn is left out for the device anyway
    from torch import nn

    from tricksearch.engine import make_model

    net = make_model(base, data, factory)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


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
        kind=data.kind,
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
