"""SearchConfig: everything a search needs, validated before Ray starts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from tricksearch.errors import ConfigError, ConfigTypeError, read_text_file

__all__ = ["METRICS", "SAMPLERS", "TRACKERS", "SearchConfig"]

#: Samplers offered by ``--sampler``, with the extra package each needs (None: none).
SAMPLERS: dict[str, str | None] = {
    "tpe": None,
    "random": None,
    "cmaes": "cmaes",
    "gp": "scipy",
    "qmc": "scipy",
    "nsga2": None,
}
#: Trackers offered by ``--track``: the package each writes with, and how to install it.
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboardX", "pip install tensorboardX"),  # comes with ray[tune]
    "mlflow": ("mlflow", "pip install 'tricksearch[mlflow]'"),
    "wandb": ("wandb", "pip install 'tricksearch[wandb]'"),
}
#: Metrics a search may optimise, with their direction.
METRICS: dict[str, str] = {"val_acc": "max", "val_loss": "min"}


@dataclass
class SearchConfig:
    """The settings of one search; saved as ``search.json`` in the run folder for ``--resume``."""

    dataset: str = "digits"
    data_root: str | None = None
    model: str = "cnn-small"
    space: str = "default"
    trials: int = 32
    epochs: int = 12
    batch_size: int = 128
    lr: float = 0.05
    out: str = "runs/search"
    sampler: str = "tpe"
    seed: int = 0
    warm_start: str | None = None  # an earlier search's folder: its trials are a prior (_warmstart)
    metric: str = "val_acc"
    grace_period: int | None = None  # None: max(1, epochs // 4)
    reduction_factor: int = 3
    fidelity: str = "auto"  # ASHA's early rungs on epochs, or on a fraction of the data (_fidelity)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str = 0.0  # or "auto": trials packed per GPU by a probe (_packing)
    workers_per_trial: int = 1  # data-parallel replicas of one trial on CPUs (torch DDP, gloo)
    max_concurrent: int | None = None
    time_budget: float | None = None
    trial_timeout: float | None = None  # seconds one trial may run; then it fails ("timeout")
    max_retries: int = 2  # restarts of a trial whose worker or node died (from its checkpoint)
    top_k: int = 3
    seeds: int | str = 3  # or "auto": race seeds until the verdict is decided (max_seeds at most)
    max_seeds: int = 10
    tuned_baseline: int | None = None  # trials of the lr/batch-size-only search; None: auto, 0: off
    minimal: bool = True  # look for the minimal recipe (ablation path) after the winner
    cv: int | None = None  # K-fold on train + val for the retraining and the verdict
    address: str | None = None
    storage: str | None = None  # Ray's storage path (trial checkpoints); None: RUN/ray
    val_fraction: float = 0.15
    test_fraction: float = 0.2
    split_seed: int = 0
    skip_corrupt: bool = False
    unlabeled: str | None = None  # an unlabelled pool: imagefolder:PATH or npz:PATH
    labeled_fraction: float = 1.0  # stratified fraction of the train split's labels kept
    track: tuple[str, ...] = ()  # trackers the trials and retrainings are logged to (TRACKERS)
    engine: dict[str, Any] | None = None  # recipe runtime engine options (engine/options.py)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def grace(self) -> int:
        """ASHA's grace period: given, or a quarter of the budget (warmup needs a few epochs)."""
        return self.grace_period if self.grace_period is not None else max(1, self.epochs // 4)

    @property
    def first_seeds(self) -> list[int]:
        """The seeds every candidate and the baseline are retrained with (``--seeds auto`` starts
        with 3 and races more, up to ``max_seeds``, for the leader and the baseline)."""
        n = min(3, self.max_seeds) if self.seeds == "auto" else int(self.seeds)
        return [self.seed + i for i in range(n)]

    @property
    def tuned_baseline_trials(self) -> int:
        """Trials of the tuned baseline's search (lr and batch size only, no trick)."""
        if self.tuned_baseline is not None:
            return self.tuned_baseline
        return max(4, self.trials // 4)

    @property
    def workers(self) -> int:
        """Data-parallel replicas of one trial: ``gpus_per_trial`` when it is 2 or more (one GPU
        each), else ``workers_per_trial`` (1: a plain trial)."""
        gpus = self.gpus_per_trial
        return int(gpus) if not isinstance(gpus, str) and gpus >= 2 else self.workers_per_trial

    @property
    def gpus_per_worker(self) -> float:
        """GPUs of each replica of a trial (one in a multi-GPU trial; ``auto`` is resolved by
        the search's preparation, ``_probe.resolve_auto``, before anything asks)."""
        gpus = self.gpus_per_trial
        if isinstance(gpus, str):
            return 1.0
        return 1.0 if gpus >= 2 else gpus

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    def validate(self) -> None:
        def integer(name: str, low: int, value: Any = None) -> None:
            value = getattr(self, name) if value is None else value
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigTypeError(f"{name}: got {value!r}, expected an integer >= {low}.")
            if value < low:
                raise ConfigError(f"{name}: got {value}, expected an integer >= {low}.")

        def number(name: str, low: float, *, strict: bool) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigTypeError(f"{name}: got {value!r}, expected a number.")
            if value < low or (strict and value == low):
                rel = ">" if strict else ">="
                raise ConfigError(f"{name}: got {value}, expected a number {rel} {low}.")

        for name in ("trials", "epochs", "batch_size", "top_k", "max_seeds"):
            integer(name, 1)
        if self.seeds != "auto":
            if isinstance(self.seeds, str):
                raise ConfigTypeError(
                    f"seeds: got {self.seeds!r}, expected an integer >= 1 or 'auto'."
                )
            integer("seeds", 1)
        if self.tuned_baseline is not None:
            integer("tuned_baseline", 0)
        if self.cv is not None:
            integer("cv", 2)
        if not isinstance(self.minimal, bool):
            raise ConfigTypeError(f"minimal: got {self.minimal!r}, expected true or false.")
        if self.grace_period is not None:
            integer("grace_period", 1)
        integer("reduction_factor", 2)
        integer("seed", 0)
        integer("split_seed", 0)
        self._check_unlabeled()
        if self.max_concurrent is not None:
            integer("max_concurrent", 1)
        number("lr", 0.0, strict=True)
        number("cpus_per_trial", 0.0, strict=True)
        self._check_gpus()
        if self.time_budget is not None:
            number("time_budget", 0.0, strict=True)
        if self.trial_timeout is not None:
            number("trial_timeout", 0.0, strict=True)
        integer("max_retries", 0)
        if self.grace_period is not None and self.grace_period > self.epochs:
            raise ConfigError(
                f"grace_period: got {self.grace_period}, expected at most epochs ({self.epochs}): "
                "ASHA's first rung must come before the end of training."
            )
        self._check_workers(integer)
        self._check_fidelity()
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"sampler: got {self.sampler!r}, expected one of {', '.join(SAMPLERS)}."
            )
        if self.metric not in METRICS:
            raise ConfigError(f"metric: got {self.metric!r}, expected one of {', '.join(METRICS)}.")
        for name in ("dataset", "model", "space", "out"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigTypeError(f"{name}: got {getattr(self, name)!r}, expected a string.")
        self._check_track()
        self._check_warm_start()
        if self.storage is not None and (not isinstance(self.storage, str) or not self.storage):
            raise ConfigTypeError(
                f"storage: got {self.storage!r}, expected a folder or a URI (s3://…, gs://…)."
            )

    def _check_fidelity(self) -> None:
        """``fidelity``: one of ``_fidelity.FIDELITIES``; ``data`` needs trials that are not
        data-parallel (their replicas would each need the subset)."""
        from tricksearch.tuning._fidelity import FIDELITIES

        if self.fidelity not in FIDELITIES:
            raise ConfigError(
                f"fidelity: got {self.fidelity!r}, expected one of {', '.join(FIDELITIES)}."
            )
        if self.fidelity == "data" and self.workers != 1:
            raise ConfigError(
                f"fidelity: got 'data' with {self.workers} data-parallel replicas per trial; "
                "data fidelity trains single-process trials: use --fidelity epochs or auto."
            )

    def _check_unlabeled(self) -> None:
        """``unlabeled``: None or a pool form; ``labeled_fraction``: a number in (0, 1]."""
        from tricksearch._recipe_data import parse_unlabeled

        if self.unlabeled is not None:
            parse_unlabeled(self.unlabeled)
        value = self.labeled_fraction
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"labeled_fraction: got {value!r}, expected a number in (0, 1].")
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"labeled_fraction: got {value}, expected a number in (0, 1].")

    def _check_gpus(self) -> None:
        """``gpus_per_trial``: ``auto`` or a number >= 0 (``_packing.parse_gpus``)."""
        from tricksearch.tuning._packing import AUTO, parse_gpus

        if isinstance(self.gpus_per_trial, bool) or not isinstance(
            self.gpus_per_trial, (int, float, str)
        ):
            raise ConfigTypeError(
                f"gpus_per_trial: got {self.gpus_per_trial!r}, expected 'auto' or a number >= 0."
            )
        self.gpus_per_trial = parse_gpus(self.gpus_per_trial)
        if self.gpus_per_trial == AUTO and self.workers_per_trial != 1:
            raise ConfigError(
                f"workers_per_trial: got {self.workers_per_trial} with gpus_per_trial auto; "
                "auto packs single-GPU trials: leave --workers-per-trial out."
            )

    def _check_workers(self, integer: Any) -> None:
        """``workers_per_trial`` >= 1; ``gpus_per_trial`` above 1 a whole number of GPUs (one
        replica each); the global batch split evenly between the replicas."""
        integer("workers_per_trial", 1)
        gpus = 0.0 if isinstance(self.gpus_per_trial, str) else self.gpus_per_trial
        if gpus > 1 and gpus != int(gpus):
            raise ConfigError(
                f"gpus_per_trial: got {gpus}; a trial on several GPUs takes a whole number of "
                "them (one data-parallel replica each): use 2, 3, … or a value in (0, 1]."
            )
        if gpus > 1 and self.workers_per_trial not in (1, int(gpus)):
            raise ConfigError(
                f"workers_per_trial: got {self.workers_per_trial} with gpus_per_trial {gpus:g}; "
                "a multi-GPU trial runs one replica per GPU: leave --workers-per-trial out."
            )
        if gpus > 1 and gpus < 2:
            raise ConfigError(f"gpus_per_trial: got {gpus}, expected a value in (0, 1] or >= 2.")
        if self.batch_size % self.workers:
            raise ConfigError(
                f"workers_per_trial: {self.workers} replicas do not divide the batch size "
                f"{self.batch_size} (the global batch is split evenly between them); use a batch "
                f"size that is a multiple of {self.workers}."
            )

    def _check_track(self) -> None:
        """``track``: names of :data:`TRACKERS` (a single name is a list of one; repeats are
        dropped), each with its package installed: said here, before Ray starts."""
        import importlib.util

        track = (self.track,) if isinstance(self.track, str) else self.track
        if not isinstance(track, (list, tuple)):
            raise ConfigTypeError(
                f"track: got {self.track!r}, expected a list of {', '.join(TRACKERS)}."
            )
        for name in track:
            if not isinstance(name, str) or name not in TRACKERS:
                raise ConfigError(f"track: got {name!r}, expected one of {', '.join(TRACKERS)}.")
            module, install = TRACKERS[name]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"track: {name} needs the package {module!r}, which is not installed: {install}"
                )
        self.track = tuple(dict.fromkeys(track))

    def _check_warm_start(self) -> None:
        """``warm_start``: None or an existing folder other than ``out``, made absolute (a resume
        from elsewhere reads the same prior)."""
        if self.warm_start is None:
            return
        if not isinstance(self.warm_start, str) or not self.warm_start:
            raise ConfigTypeError(
                f"warm_start: got {self.warm_start!r}, expected the folder of an earlier search."
            )
        from tricksearch.tuning._warmprior import check_prior_folder

        folder = check_prior_folder(self.warm_start).resolve()
        if folder == Path(self.out).expanduser().resolve():
            raise ConfigError(
                f"warm_start: got {self.warm_start!r}, the search's own --out folder; expected "
                "the folder of another, earlier search."
            )
        self.warm_start = str(folder)

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"search settings: unknown key(s) {', '.join(unknown)}; allowed: "
                + ", ".join(sorted(known))
            )
        return cls(**raw)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> SearchConfig:
        path = run_dir / "search.json"
        if not path.is_file():
            raise ConfigError(
                f"resume: {str(run_dir)!r} holds no search (no search.json); give the --out "
                "folder of an earlier `tricksearch search`."
            )
        try:
            raw = json.loads(read_text_file(path, "resume", "the search.json of a search"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"resume: {str(path)!r} is not valid JSON ({exc}).") from None
        if isinstance(raw, dict):  # saved before --fidelity existed: it searched over epochs
            raw.setdefault("fidelity", "epochs")
        return cls.from_dict(raw)
