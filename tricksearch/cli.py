"""The command line: parses, calls the API, prints. Nothing here that the API cannot do.

Errors caused by the user's input are printed as one line (``error: …``) with exit status 2;
Ctrl-C exits with 130 after saying what was kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tricksearch import __version__
from tricksearch.errors import TricksearchError

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str) -> Callable[[Handler], Handler]:
    """Register a sub-command: ``@command("train", "…")`` on ``run_train(args)``.

    Its arguments are added by ``_add_train(parser)`` defined in the same module, if any.
    """

    def deco(fn: Handler) -> Handler:
        adder = fn.__globals__.get(f"_add_{name.replace('-', '_')}")
        _COMMANDS[name] = (adder or (lambda p: None), fn)
        fn.__doc__ = fn.__doc__ or help
        _HELP[name] = help
        return fn

    return deco


_HELP: dict[str, str] = {}


def number_arg(
    field: str, kind: type = int, *, minimum: float = 1, strict: bool = False
) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and refuses values below ``minimum`` (or equal
    to it when ``strict``), naming the option, the value and what is allowed."""
    noun = "an integer" if kind is int else "a number"
    allowed = f"{noun} {'>' if strict else '>='} {minimum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {allowed}") from None
        if value < minimum or (strict and value == minimum) or value != value:  # NaN too
            raise argparse.ArgumentTypeError(f"got {text}, expected {allowed}")
        return value

    return parse


def _positive_int(field: str) -> Callable[[str], int]:
    return number_arg(field, int, minimum=1)


def _nonneg_int(field: str) -> Callable[[str], int]:
    return number_arg(field, int, minimum=0)


def _print_table(rows: list[tuple[str, str]]) -> None:
    width = max((len(a) for a, _ in rows), default=0)
    for a, b in rows:
        print(f"  {a.ljust(width)}  {b}")


# --- train -------------------------------------------------------------------------------------
def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="recipe file (YAML/JSON); default: the no-trick baseline")
    p.add_argument("--dataset", help="dataset name (see `tricksearch datasets`); default digits")
    p.add_argument("--data-root", help="folder holding the dataset files")
    p.add_argument("--skip-corrupt", action="store_true", help="skip unreadable image files")
    p.add_argument("--model", help="model name (see `tricksearch models`); default cnn-small")
    p.add_argument("--epochs", type=_positive_int("--epochs"), help="training epochs")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), help="mini-batch size")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--seed", type=_nonneg_int("--seed"), help="seed (init, batches, augmentation)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--out", help="folder for recipe.yaml, metrics.json and model.pt")


def _apply_overrides(recipe: Any, args: argparse.Namespace) -> Any:
    data = recipe.data.to_dict()
    if getattr(args, "dataset", None):
        data["dataset"] = args.dataset
    if getattr(args, "data_root", None):
        data["data_root"] = args.data_root
    if getattr(args, "skip_corrupt", False):
        data["skip_corrupt"] = True
    budget = recipe.budget.to_dict()
    for key in ("epochs", "batch_size", "lr", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            budget[key] = value
    model = recipe.model.to_dict()
    if getattr(args, "model", None):
        model = {"name": args.model}
    return recipe.with_changes(data=data, budget=budget, model=model)


def _epoch_printer(total: int) -> Callable[[Any], None]:
    def show(m: Any) -> None:
        print(
            f"epoch {m.epoch:>{len(str(total))}}/{total}  train_loss {m.train_loss:.4f}  "
            f"val_loss {m.val_loss:.4f}  val_acc {m.val_acc:.4f}  lr {m.lr:.3g}  "
            f"{m.epoch_seconds:.1f}s",
            flush=True,
        )

    return show


def _search_evidence(recipe: Any, args: argparse.Namespace) -> str | None:
    """The line that puts this run next to what the search measured for the same recipe (its
    retraining over seeds), or None when the recipe carries no such evidence or the run changed
    what it was measured on (dataset, model, epochs, batch size, lr)."""
    prov = recipe.provenance or {}
    rec = prov.get("recipe") or {}
    changed = ("dataset", "data_root", "model", "epochs", "batch_size", "lr")
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
        line += (
            f" (seed {seed}: val_acc {rec['val_acc'][i]:.4f}, test_acc {rec['test_acc'][i]:.4f}; "
            "identical numbers need the same device and torch thread count as the trials)"
        )
    return line


@command(
    "train", "train once from a recipe (no Ray): prints a line per epoch, val and test accuracy"
)
def run_train(args: argparse.Namespace) -> int:
    from tricksearch.api import as_recipe, train
    from tricksearch.engine import load_data, resolve_device

    recipe = _apply_overrides(as_recipe(args.recipe), args)
    resolve_device(args.device)  # bad input is refused before anything starts
    load_data(recipe)  # cached: train() below reuses it
    print(
        f"training {recipe.model.name} on {recipe.data.dataset} for {recipe.budget.epochs} epochs; "
        f"tricks on: {', '.join(recipe.tricks_on()) or 'none (baseline)'}",
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
@command("datasets", "list the datasets")
def run_datasets(args: argparse.Namespace) -> int:
    from tricksearch.data import list_datasets

    _print_table(sorted(list_datasets().items()))
    return 0


@command("models", "list the models")
def run_models(args: argparse.Namespace) -> int:
    from tricksearch.models import list_models

    _print_table(sorted(list_models().items()))
    return 0


def _add_tricks(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one trick in full")


@command("tricks", "list the tricks with their parameters and default search ranges")
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


def _fmt_search(s: Any) -> str:
    if s.choices is not None:
        return "{" + ", ".join(repr(c) for c in s.choices) + "}"
    return f"{s.low}..{s.high}" + (" (log)" if s.log else "")


# --- entry point -------------------------------------------------------------------------------
def _load_extra_commands() -> None:
    # Commands defined in other modules register themselves on import.
    import importlib

    for mod in ("tricksearch.tuning.cli", "tricksearch.report.cli"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus where to get help), not the whole usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    _load_extra_commands()
    parser = _Parser(
        prog="tricksearch",
        description="Find the combination of training tricks that works for your dataset.",
    )
    parser.add_argument("--version", action="version", version=f"tricksearch {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (adder, _) in _COMMANDS.items():
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
        adder(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    _, handler = _COMMANDS[args.command]
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
