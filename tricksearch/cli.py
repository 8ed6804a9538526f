"""The command line: parses, calls the API, prints. Nothing here that the API cannot do.

The commands are the :class:`~tricksearch._command.Command` records of :data:`COMMANDS`: this
module's (``train`` and the listings), then ``tuning/cli.py``'s (``search``, ``spaces``) and
``report/cli.py``'s (``ablate``, ``report``, ``export``, ``show``). Building the parser imports
no torch, ray or optuna: each command imports what it needs when it runs, so ``--help`` is
instant.

Errors caused by the user's input are printed as one line (``error: …``) with exit status 2;
Ctrl-C exits with 130 after saying what was kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tricksearch import __version__
from tricksearch._command import (
    Command,
    add_engine_options,
    add_unlabeled_options,
    engine_overrides,
    nonneg_int,
    positive_int,
    print_table,
)
from tricksearch.errors import TricksearchError
from tricksearch.report import cli as report_cli
from tricksearch.tuning import cli as tuning_cli

if TYPE_CHECKING:
    from tricksearch.engine import EpochMetrics
    from tricksearch.recipe import Recipe
    from tricksearch.tricks._base import SearchSpec

__all__ = ["COMMANDS", "build_parser", "main"]


# --- train -------------------------------------------------------------------------------------
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="recipe file (YAML/JSON); default: the no-trick baseline")
    p.add_argument("--dataset", help="dataset name (see `tricksearch datasets`); default digits")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--skip-corrupt", action="store_true", help="skip unreadable image files")
    add_unlabeled_options(p)
    p.add_argument("--model", help="model name (see `tricksearch models`); default cnn-small")
    p.add_argument("--epochs", type=positive_int, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, help="mini-batch size")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--seed", type=nonneg_int, help="seed (init, batches, augmentation)")
    p.add_argument(
        "--threads",
        type=positive_int,
        help="torch CPU threads; default: the recipe's runtime.threads (a search records its "
        "trials' count), else torch's default",
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--workers",
        type=positive_int,
        help="data-parallel processes (torch DDP: gloo on CPU, NCCL on GPUs, one each); the batch "
        "size is the global batch; default: the recipe's runtime.workers, else 1",
    )
    p.add_argument("--out", help="folder for recipe.yaml, metrics.json and model.pt")
    add_engine_options(p)


def _apply_overrides(recipe: Recipe, args: argparse.Namespace) -> Recipe:
    """The recipe with the command line's --dataset, --model, --epochs … put in."""
    data = recipe.data.to_dict()
    if getattr(args, "dataset", None):
        data["dataset"] = args.dataset
    if getattr(args, "data_root", None):
        data["data_root"] = args.data_root
    if getattr(args, "skip_corrupt", False):
        data["skip_corrupt"] = True
    for key in ("unlabeled", "labeled_fraction"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    budget = recipe.budget.to_dict()
    for key in ("epochs", "batch_size", "lr", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            budget[key] = value
    model = recipe.model.to_dict()
    if getattr(args, "model", None):
        model = {"name": args.model}
    runtime = recipe.runtime.to_dict()
    if getattr(args, "threads", None) is not None:
        runtime["threads"] = args.threads
    if getattr(args, "workers", None) is not None:
        runtime["workers"] = args.workers if args.workers > 1 else None
    runtime.update(engine_overrides(args))
    return recipe.with_changes(data=data, budget=budget, model=model, runtime=runtime)


def _python_only(recipe: Recipe, source: str | None) -> str | None:
    """Why the command line cannot train ``recipe`` (found with a Python model or on data given
    from Python), with the Python call that can; None when it can."""
    from tricksearch.models import is_python_model, python_model_refusal
    from tricksearch.tuning._prepare import TENSORS

    where = repr(source) if source else "recipe"
    if is_python_model(recipe.model.name):
        return python_model_refusal(recipe.model.name, where)
    if recipe.data.dataset == TENSORS:
        return (
            f"data.dataset: the recipe was found on data given from Python (dataset "
            f"{TENSORS!r}); give a --dataset, or train it from Python: "
            f"tricksearch.train({where}, dataset=(x, y))"
        )
    return None


def _epoch_printer(total: int) -> Callable[[EpochMetrics], None]:
    def show(m: EpochMetrics) -> None:
        print(
            f"epoch {m.epoch:>{len(str(total))}}/{total}  train_loss {m.train_loss:.4f}  "
            f"val_loss {m.val_loss:.4f}  val_acc {m.val_acc:.4f}  lr {m.lr:.3g}  "
            f"{m.epoch_seconds:.1f}s",
            flush=True,
        )

    return show


def _search_evidence(recipe: Recipe, args: argparse.Namespace) -> str | None:
    """The line that puts this run next to what the search measured for the same recipe (its
    retraining over seeds), or None when the recipe carries no such evidence or the run changed
    what it was measured on (dataset, model, epochs, batch size, lr)."""
    prov = recipe.provenance or {}
    rec = prov.get("recipe") or {}
    changed = (
        *("dataset", "data_root", "unlabeled", "labeled_fraction"),
        *("model", "epochs", "batch_size", "lr"),
    )
    if not rec.get("val_acc") or any(getattr(args, k, None) is not None for k in changed):
        return None
    failed = set(rec.get("failed_seeds") or [])
    seeds = [s for s in prov.get("seeds") or [] if s not in failed]
    line = (
        f"the search measured this recipe: val_acc {rec['val_acc_mean']:.4f} ± "
        f"{rec['val_acc_std']:.4f}, test_acc {rec['test_acc_mean']:.4f} ± "
        f"{rec['test_acc_std']:.4f} over seeds {', '.join(map(str, seeds))}"
    )
    seed = recipe.budget.seed
    if seed in seeds and len(seeds) == len(rec["val_acc"]) == len(rec.get("test_acc") or []):
        i = seeds.index(seed)
        threads = recipe.runtime.threads
        same = (
            f"the same device and {threads} torch thread(s), as recorded in the recipe"
            if threads and getattr(args, "threads", None) is None
            else "the same device and torch thread count as the trials (runtime.threads)"
        )
        line += (
            f" (seed {seed}: val_acc {rec['val_acc'][i]:.4f}, test_acc {rec['test_acc'][i]:.4f}; "
            f"identical numbers need {same})"
        )
    return line


def run_train(args: argparse.Namespace) -> int:
    from tricksearch.api import as_recipe, train
    from tricksearch.engine import load_data, resolve_device
    from tricksearch.errors import ConfigError

    recipe = _apply_overrides(as_recipe(args.recipe), args)
    refusal = _python_only(recipe, args.recipe)
    if refusal:
        raise ConfigError(refusal)
    resolve_device(args.device)  # bad input is refused before anything starts
    data = load_data(recipe)  # cached: train() below reuses it
    print(f"data: {data.summary()}", flush=True)
    print(
        f"training {recipe.model.name} on {recipe.data.dataset} for {recipe.budget.epochs} epochs"
        + (f" with {recipe.runtime.threads} torch thread(s)" if recipe.runtime.threads else "")
        + (f", {recipe.runtime.workers} data-parallel workers" if recipe.runtime.workers else "")
        + f"; tricks on: {', '.join(recipe.tricks_on()) or 'none (baseline)'}",
        flush=True,
    )
    metrics = train(
        recipe, device=args.device, out=args.out, on_epoch=_epoch_printer(recipe.budget.epochs)
    )
    print(
        f"final: val_acc {metrics['val_acc']:.4f}  test_acc {metrics['test_acc']:.4f}  "
        f"({metrics['seconds']:.1f}s on {metrics['device']})"
    )
    evidence = _search_evidence(recipe, args)
    if evidence:
        print(evidence)
    skipped = metrics["skipped_files"]
    if skipped:
        shown = ", ".join(str(f) for f in skipped[:5]) + (" …" if len(skipped) > 5 else "")
        print(f"note: skipped {len(skipped)} unreadable image file(s): {shown}")
    if args.out:
        print(f"wrote {args.out}/recipe.yaml, metrics.json, model.pt")
    return 0


# --- listings ----------------------------------------------------------------------------------
def run_datasets(args: argparse.Namespace) -> int:
    from tricksearch.data import list_datasets

    print_table(sorted(list_datasets().items()))
    return 0


def run_models(args: argparse.Namespace) -> int:
    from tricksearch.models import list_models

    print_table(sorted(list_models().items()))
    return 0


def _add_tricks(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one trick in full")


def run_tricks(args: argparse.Namespace) -> int:
    from tricksearch.tricks import get_trick, registered_tricks

    specs = [get_trick(args.name)] if args.name else list(registered_tricks().values())
    family = None
    for spec in specs:
        if spec.family != family:
            family = spec.family
            print(f"[{family}]")
        extra = f"  (one of group {spec.group!r})" if spec.group else ""
        print(f"  {spec.name}: {spec.summary}{extra}")
        if args.name and spec.paper:
            print(f"    paper: {spec.paper}")
        for p in spec.params:
            rng = "not searched" if p.search is None else _fmt_search(p.search)
            print(f"    {p.name} = {p.default!r}   allowed: {p.allowed()};  search: {rng}")
    return 0


def _fmt_search(s: SearchSpec) -> str:
    if s.choices is not None:
        return "{" + ", ".join(repr(c) for c in s.choices) + "}"
    return f"{s.low}..{s.high}" + (" (log)" if s.log else "")


# --- entry point -------------------------------------------------------------------------------
COMMANDS: tuple[Command, ...] = (
    Command(
        "train",
        "train once from a recipe (no Ray): prints a line per epoch, val and test accuracy",
        run_train,
        _add_train,
    ),
    Command("datasets", "list the datasets", run_datasets),
    Command("models", "list the models", run_models),
    Command(
        "tricks",
        "list the tricks with their parameters and default search ranges",
        run_tricks,
        _add_tricks,
    ),
    *tuning_cli.COMMANDS,
    *report_cli.COMMANDS,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to get help), not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in :data:`COMMANDS` (the one chosen is ``args.command``)."""
    parser = _Parser(
        prog="tricksearch",
        description="Find the combination of training tricks that works for your dataset.",
    )
    parser.add_argument("--version", action="version", version=f"tricksearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in COMMANDS:
        cmd.add_arguments(sub.add_parser(cmd.name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    handler = next(cmd.run for cmd in COMMANDS if cmd.name == args.command)
    try:
        return handler(args)
    except TricksearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
