"""The Ray session of a search: started (or joined), its resources checked, and SIGTERM read as
Ctrl-C so that a killed search still closes cleanly and can be resumed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from tricksearch.errors import ConfigError
from tricksearch.tuning._config import SearchConfig
from tricksearch.tuning._console import ray_output_to
from tricksearch.tuning._nodes import check_nodes, runtime_env

__all__ = ["RaySession", "check_resources", "ray_session", "sigterm_as_interrupt"]


@dataclass(frozen=True)
class RaySession:
    """What a search learns when Ray is up: parallel trial slots, the console stream (the
    original stdout; Ray's own output goes to ``ray.log``), and how long Ray took to start."""

    slots: int
    console: IO[str]
    start_seconds: float


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


#: What ``timeout``, Slurm and Kubernetes send (SIGTERM) and a closed terminal or SSH session
#: (SIGHUP): both stop a search as Ctrl-C does.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM and SIGHUP like Ctrl-C so a killed search still closes cleanly and can be
    resumed."""
    try:
        previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """``ray.init`` installs its own SIGTERM handler (it exits at once, printing nothing): the
    handlers in place before it (:func:`sigterm_as_interrupt`'s during a search) are put back,
    so ``timeout``, Slurm and Kubernetes stop a search as cleanly as Ctrl-C does."""
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread / not Python's
                signal.signal(sig, handler)


#: The lock file of a run folder: held (``flock``) by the search running in it, with its pid.
LOCK_FILE = ".search.lock"


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, notes: list[str] | None = None) -> Iterator[None]:
    """Hold the run folder for this process: a second search (or resume) on the same ``--out``
    while this one runs is refused in one line naming the holder (process, host, start time),
    instead of both writing into one study. The lock is the kernel's (``flock``), so it ends
    with its process; a file naming a process that is gone is taken over, said in ``notes``."""
    import fcntl

    handle = (run_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = _holder(handle.read())
        handle.close()
        raise ConfigError(
            f"out: another search is running in {str(run_dir)!r} ({holder}); wait for it "
            "to end (or stop it, then --resume), or choose another --out."
        ) from None
    handle.seek(0)
    before = handle.read()
    mine = before.split(maxsplit=1)[:1] == [str(os.getpid())]  # this process held it before
    if before.strip() and not mine and notes is not None:
        notes.append(f"took over the lock of {_holder(before)}, which no longer runs")
    if not mine:
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        handle.write(f"{os.getpid()} {socket.gethostname()} {started}\n")
        handle.flush()
    try:
        yield
    finally:
        if not mine:  # a clean end leaves no holder behind (a killed one does: taken over)
            handle.seek(0)
            handle.truncate()
            handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _holder(text: str) -> str:
    """``process 4242 on host-a since 2026-12-02T07:40:00+0000`` from a lock file's line."""
    parts = text.split()
    if not parts:
        return "process ?"
    where = f" on {parts[1]}" if len(parts) > 1 else ""
    since = f" since {parts[2]}" if len(parts) > 2 else ""
    return f"process {parts[0]}{where}{since}"


@contextlib.contextmanager
def ray_session(config: SearchConfig, run_dir: Path) -> Iterator[RaySession]:
    """Ray inside the block: the running session, the cluster at ``config.address``, or a local
    one (shut down at the end). Ray's output goes to ``run_dir/ray.log`` meanwhile; the per-trial
    request is checked against the cluster before anything runs."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ctrl-C reaches us; resume handles it
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_output_to(run_dir / "ray.log") as console:
        started = False
        t0 = time.monotonic()
        if not ray.is_initialized():
            with _sigterm_kept():
                _init(config, run_dir)
            started = True
        start_seconds = time.monotonic() - t0
        try:
            slots = check_resources(config)
            if config.address:  # every node can run a trial, before the first one runs
                check_nodes(config.dataset, config.data_root, unlabeled=config.unlabeled)
            yield RaySession(slots, console, start_seconds)
        finally:
            if started:
                ray.shutdown()


def _init(config: SearchConfig, run_dir: Path) -> None:
    """``ray.init``: a local cluster, or the one at ``config.address`` (a clear error if it cannot
    be joined)."""
    import ray

    if config.address:
        _check_reachable(config.address)
        _join_auth_mode()
    try:
        ray.init(
            address=config.address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            # A cluster's workers import the driver's tricksearch, installed there or not.
            runtime_env=runtime_env() if config.address else None,
        )
    except (ConnectionError, RuntimeError) as exc:
        if not config.address:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"address: could not join the Ray cluster at {config.address!r} ({first}). "
            "Check the address (host:port of `ray start --head`, or ray://host:10001); "
            "a cluster with token authentication also needs its token here "
            "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) and "
            f"RAY_AUTH_MODE=token. Ray's log: {run_dir / 'ray.log'}"
        ) from None


def check_resources(config: SearchConfig) -> int:
    """Compare the per-trial request with what Ray has; return the number of parallel slots."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
    if config.gpus_per_trial > 0 and gpus < config.gpus_per_trial:
        raise ConfigError(
            f"gpus_per_trial: got {config.gpus_per_trial}, but "
            f"{'the cluster' if config.address else 'this machine'} has {gpus:g} GPU(s); "
            "use --gpus-per-trial 0 (Ray would wait forever for a GPU that is not there)."
        )
    if cpus < config.cpus_per_trial:
        raise ConfigError(
            f"cpus_per_trial: got {config.cpus_per_trial}, but only {cpus:g} CPU(s) are available."
        )
    if cpus < config.cpus_per_trial * config.workers:
        raise ConfigError(
            f"workers_per_trial: {config.workers} replicas of {config.cpus_per_trial:g} CPU(s) "
            f"each, but only {cpus:g} CPU(s) are available (Ray would wait forever)."
        )
    slots = int(cpus // (config.cpus_per_trial * config.workers))  # replicas of a trial
    if config.gpus_per_trial > 0:
        slots = min(slots, int(gpus // (config.gpus_per_worker * config.workers)))
    slots = max(1, slots)
    if config.max_concurrent is not None:
        slots = min(slots, config.max_concurrent)
    return slots


def _join_auth_mode() -> None:
    """Joining an existing cluster: Ray 2.60 enables token authentication on clusters it starts,
    but a client given an address only sends the token in token mode. Turn it on when the user has
    not chosen (RAY_AUTH_MODE unset) and a token is at hand — what ``ray.init()`` does by itself
    for a local cluster."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: leave it to the user's RAY_AUTH_MODE
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at ``host:port``."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"address: got {address!r}, but nothing answers there ({exc}); expected the "
            "host:port printed by `ray start --head` (default port 6379), ray://host:10001 or "
            "auto."
        ) from None
