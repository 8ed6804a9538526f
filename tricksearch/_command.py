"""What a command of the command line is, and the argparse value types the commands share.

Each CLI module (``cli.py``, ``tuning/cli.py``, ``report/cli.py``) lists its commands as
:class:`Command` records; ``cli.py`` puts the lists together. This module imports nothing of
tricksearch, so every CLI module can use it without importing another.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "Command",
    "add_unlabeled_options",
    "fraction",
    "nonneg_float",
    "nonneg_int",
    "number_arg",
    "positive_float",
    "positive_int",
    "print_table",
]

#: A command's handler: the parsed arguments in, the exit status out.
Handler = Callable[[argparse.Namespace], int]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``add_arguments`` of a command that takes none."""


@dataclass(frozen=True)
class Command:
    """One sub-command: ``tricksearch NAME``.

    ``add_arguments`` adds its options to its sub-parser; ``run`` does the work. Both must be
    cheap to import: heavy packages (torch, ray, optuna) are imported inside ``run``, so
    ``tricksearch NAME --help`` answers at once.
    """

    name: str
    help: str
    run: Handler
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments


N = TypeVar("N", int, float)


def number_arg(kind: type[N], *, minimum: float, strict: bool = False) -> Callable[[str], N]:
    """An argparse ``type=`` that parses ``kind`` and refuses values below ``minimum`` (or equal
    to it when ``strict``), naming the value and what is allowed (argparse adds the option)."""
    noun = "an integer" if kind is int else "a number"
    allowed = f"{noun} {'>' if strict else '>='} {minimum:g}"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {allowed}") from None
        if value < minimum or (strict and value == minimum) or value != value:  # NaN too
            raise argparse.ArgumentTypeError(f"got {text}, expected {allowed}")
        return value

    return parse


positive_int = number_arg(int, minimum=1)
nonneg_int = number_arg(int, minimum=0)
positive_float = number_arg(float, minimum=0, strict=True)
nonneg_float = number_arg(float, minimum=0)


def fraction(text: str) -> float:
    """``--labeled-fraction``: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected a number in (0, 1]") from None
    if not 0.0 < value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"got {text}, expected a number in (0, 1]")
    return value


def add_unlabeled_options(g: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--unlabeled SPEC`` and ``--labeled-fraction F``, shared by ``train`` and ``search``."""
    g.add_argument(
        "--unlabeled",
        metavar="SPEC",
        help="an unlabelled pool for the semi-supervised tricks: imagefolder:PATH (images under "
        "PATH, no class folders) or npz:PATH (its array x_unlabeled)",
    )
    g.add_argument(
        "--labeled-fraction",
        type=fraction,
        metavar="F",
        help="keep a stratified fraction F in (0, 1] of the train split's labels; the other "
        "train images become unlabelled (default: 1, all labels)",
    )


#: Engine options (recipe ``runtime``, tricksearch.engine.options): flag -> help.
ENGINE_FLAGS = {
    "channels_last": "model and image batches in channels-last memory format",
    "cudnn_benchmark": "let cuDNN pick the fastest algorithms (CUDA; may change the numbers)",
    "tf32": "TF32 for fp32 matmuls and convolutions (CUDA)",
    "eval_bf16": "evaluate under bf16 autocast",
}


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """``--channels-last``, ``--cudnn-benchmark``, ``--tf32``, ``--compile MODE``,
    ``--eval-bf16``: set the recipe's ``runtime`` engine options (default: the recipe's)."""
    for name, text in ENGINE_FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", action="store_true", default=None, help=text)
    p.add_argument(
        "--compile",
        choices=("default", "reduce-overhead", "max-autotune"),
        help="torch.compile the training forward with this mode (default: eager)",
    )


def engine_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The engine options given on the command line, as ``runtime`` fields."""
    out: dict[str, object] = {n: True for n in ENGINE_FLAGS if getattr(args, n, None)}
    if getattr(args, "compile", None):
        out["compile"] = args.compile
    return out


def print_table(rows: list[tuple[str, str]]) -> None:
    """Two aligned columns, indented by two spaces (the listings)."""
    width = max((len(a) for a, _ in rows), default=0)
    for a, b in rows:
        print(f"  {a.ljust(width)}  {b}")
