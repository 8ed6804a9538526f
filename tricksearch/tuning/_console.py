"""Output plumbing: Ray's output to a log file, our own progress lines to the console."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["ray_output_to", "say"]

#: Ray's Python loggers, sent to the log file while a search runs.
_RAY_LOGGERS = ("ray", "ray.tune", "ray.train")


@contextlib.contextmanager
def ray_output_to(log_path: Path) -> Iterator[IO[str]]:
    """Send everything written to fds 1 and 2 and Ray's Python loggers (Ray's tables, logs, C++
    warnings) to ``log_path``; yield a stream on the original stdout for our own progress lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        real_stdout = sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):  # e.g. captured by pytest / a notebook
        real_stdout = False
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    console = os.fdopen(os.dup(saved_out), "w", buffering=1) if real_stdout else sys.stdout
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved_loggers = {}
    for name in _RAY_LOGGERS:
        lg = logging.getLogger(name)
        saved_loggers[name] = (lg.handlers[:], lg.propagate)
        lg.handlers = [file_handler]
        lg.propagate = False
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        yield console
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        for name, (handlers, propagate) in saved_loggers.items():
            lg = logging.getLogger(name)
            lg.handlers, lg.propagate = handlers, propagate
        file_handler.close()
        if console is not sys.stdout:
            console.close()


def say(stream: IO[str] | None, text: str) -> None:
    """Write one line of progress to ``stream`` at once (nothing when it is None: quiet)."""
    if stream is not None:
        stream.write(text + "\n")
        stream.flush()
