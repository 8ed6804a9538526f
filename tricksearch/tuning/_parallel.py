"""Run independent trainings as Ray tasks: the retraining of a search, the rows of an ablation.

``tuning/`` is the only package that imports ray (DESIGN.md); others ask here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["map_tasks", "ray_running"]


@contextlib.contextmanager
def ray_running() -> Iterator[None]:
    """Ray is initialised inside the block: the running session, or a local one started (quietly:
    no dashboard, workers' output not forwarded) and shut down at the end."""
    import ray

    if ray.is_initialized():
        yield
        return
    auth_log = logging.getLogger("ray._private.authentication")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)  # "token authentication is enabled" on every local start
    try:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    finally:
        auth_log.setLevel(level)
    try:
        yield
    finally:
        ray.shutdown()


def map_tasks(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    *,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    shared: Any = None,
) -> Iterator[tuple[int, Any]]:
    """Call ``fn(*job, shared)`` for every job as a Ray task (``shared`` is put in the object
    store once); yield ``(index of the job, result)`` as tasks finish. A task that raised yields
    its exception as the result, so one failure does not stop the others."""
    import ray

    remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(fn)
    shared_ref = ray.put(shared)
    refs = {remote.remote(*job, shared_ref): i for i, job in enumerate(jobs)}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            try:
                result = ray.get(ref)
            except Exception as exc:
                result = exc
            yield refs[ref], result
