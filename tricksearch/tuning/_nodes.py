"""Before the first trial on a Ray cluster: every node can run one.

On a cluster (``--address``) the search ships its own package to the workers (Ray's
``runtime_env`` ``py_modules``: :func:`runtime_env`), so a node without tricksearch installed, or
with another version, imports the driver's. Then :func:`check_nodes` runs one small task on every
alive node (pinned there with ``NodeAffinitySchedulingStrategy``) that imports tricksearch, its
torch and torchvision, and looks for the dataset's files; a node that cannot is named in one line
before any trial runs (otherwise every trial placed there fails, e.g. ``No module named
'tricksearch'``). A node that joins later is not checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tricksearch.errors import ConfigError

__all__ = ["check_nodes", "data_paths", "runtime_env"]


def runtime_env() -> dict[str, Any]:
    """The runtime environment every worker of a cluster search gets: this tricksearch."""
    import tricksearch

    return {"py_modules": [str(Path(tricksearch.__file__).parent)]}


def data_paths(dataset: str, data_root: str | None, unlabeled: str | None = None) -> list[str]:
    """The local paths a dataset is read from (``imagefolder:PATH``, ``npz:PATH``, a
    ``--data-root``, an ``--unlabeled`` pool): each node must see them. A bundled dataset
    (digits) has none."""
    paths = [data_root] if data_root else []
    for spec in (dataset, unlabeled or ""):
        kind, sep, rest = spec.partition(":")
        if sep and rest and kind.isidentifier():
            paths.append(rest)
    return paths


def _probe(paths: list[str]) -> dict[str, Any]:
    """Runs on one node: the versions it imports and the data paths it cannot see."""
    import platform

    import torch
    import torchvision

    import tricksearch

    return {
        "host": platform.node(),
        "tricksearch": tricksearch.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "missing": [p for p in paths if not Path(p).expanduser().exists()],
    }


def check_nodes(
    dataset: str, data_root: str | None, *, unlabeled: str | None = None, timeout: float = 120.0
) -> int:
    """Run :func:`_probe` on every alive node; one ConfigError naming each node that cannot run
    a trial (and why). Returns the number of nodes checked."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    import tricksearch
    from tricksearch.tuning._failures import cause_line

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    paths = data_paths(dataset, data_root, unlabeled)
    refs = {
        f"{n['NodeManagerAddress']} ({n['NodeID'][:8]})": probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(paths)
        for n in nodes
    }
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    problems = []
    for name, ref in refs.items():
        if ref not in ready:
            problems.append(f"{name}: no answer within {timeout:g} s")
            continue
        try:
            found = ray.get(ref)
        except Exception as exc:  # e.g. the node's Python lacks torch
            while getattr(exc, "cause", None) is not None:
                exc = exc.cause
            problems.append(f"{name}: {cause_line(exc)}")
            continue
        if found["tricksearch"] != tricksearch.__version__:
            problems.append(
                f"{name}: imports tricksearch {found['tricksearch']}, the driver runs "
                f"{tricksearch.__version__}"
            )
        if found["missing"]:
            problems.append(f"{name}: cannot see {', '.join(map(repr, found['missing']))}")
    if problems:
        raise ConfigError(
            f"cluster: {len(problems)} of {len(refs)} node(s) cannot run trials: "
            + "; ".join(problems)
            + ". Install torch, torchvision and ray there (tricksearch itself is shipped), and "
            "put the dataset at the same path on every node (or on shared storage)."
        )
    return len(refs)
