"""CLI commands of the report package: ``ablate``, ``report``, ``dashboard``, ``export``, ``show``.

Each command imports the report module it runs when it runs, so that listing the commands and
their options imports no torch, ray or optuna.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tricksearch._command import Command, positive_int
from tricksearch.errors import ConfigError

__all__ = ["COMMANDS"]


# --- ablate ------------------------------------------------------------------------------------
def _add_ablate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", required=True, help="recipe file (YAML/JSON) to ablate")
    p.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="seeds per row (default: %(default)s)",
    )
    p.add_argument(
        "--out", help="folder for ablation.json and ablation.md (default: the recipe's folder)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--parallel",
        action="store_true",
        help="run the trainings as Ray tasks, one CPU each (the default on a machine with 2+ CPUs)",
    )
    mode.add_argument(
        "--sequential", action="store_true", help="train one configuration after the other"
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")


def run_ablate(args: argparse.Namespace) -> int:
    from tricksearch.recipe import load_recipe
    from tricksearch.report._ablation import ablate

    recipe = load_recipe(args.recipe)
    out = Path(args.out) if args.out else Path(args.recipe).resolve().parent
    n_on = len(recipe.tricks_on())
    print(
        f"ablating {args.recipe}: {n_on} trick(s) on, {2 + 2 * n_on} rows × {args.seeds} seed(s)",
        flush=True,
    )
    result = ablate(
        recipe,
        seeds=args.seeds,
        parallel=args.parallel or (not args.sequential and (os.cpu_count() or 1) >= 2),
        device=args.device,
        progress=lambda line: print(line, flush=True),
    )
    result.source = args.recipe
    print()
    print(result.table(), end="")
    json_path, md_path = result.save(out)
    print(f"wrote {json_path} and {md_path}")
    if (out / "study.db").is_file():  # the recipe of a search: its report gains the ablation
        from tricksearch.report._report import write_report

        print(f"updated {write_report(out)}")
    return 0


# --- report ------------------------------------------------------------------------------------
def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a search")


def run_report(args: argparse.Namespace) -> int:
    from tricksearch.report._html import HTML_NAME
    from tricksearch.report._report import write_report

    path = write_report(Path(args.run_dir))
    print(f"wrote {path}")
    print(f"wrote {path.with_name(HTML_NAME)} (the same, one self-contained file)")
    return 0


# --- dashboard ---------------------------------------------------------------------------------
def _add_dashboard(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a search")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port", type=positive_int, default=8080, help="port to listen on (default: %(default)s)"
    )


def run_dashboard(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    db = run_dir / "study.db"
    if not run_dir.is_dir():
        raise ConfigError(
            f"dashboard: no run folder at {str(run_dir)!r}; expected the --out folder of a "
            "`tricksearch search`."
        )
    if not db.is_file():
        raise ConfigError(
            f"dashboard: no study at {str(db)!r}; expected the Optuna SQLite study that "
            f"`tricksearch search --out {run_dir}` writes."
        )
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError(
            "dashboard: optuna-dashboard is not installed: pip install 'tricksearch[dashboard]'"
        ) from None
    storage = f"sqlite:///{db.resolve()}"
    print(
        f"optuna-dashboard on {storage} at http://{args.host}:{args.port}/ (Ctrl-C stops it)",
        flush=True,
    )
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port)
    except OSError as exc:  # the port is taken, the address is not this machine's …
        raise ConfigError(
            f"dashboard: cannot serve on {args.host}:{args.port} ({exc.strerror or exc})."
        ) from None
    except KeyboardInterrupt:
        print("dashboard stopped.")
    return 0


# --- export ------------------------------------------------------------------------------------
def _add_export(p: argparse.ArgumentParser) -> None:
    from tricksearch.report._export import TARGETS

    p.add_argument("recipe", help="recipe file (YAML/JSON)")
    p.add_argument(
        "--to",
        required=True,
        choices=list(TARGETS),
        help="; ".join(f"{k}: {v}" for k, v in TARGETS.items()),
    )
    p.add_argument("--out", help="write to this file instead of stdout")


def run_export(args: argparse.Namespace) -> int:
    from tricksearch.recipe import load_recipe
    from tricksearch.report._export import export_recipe

    result = export_recipe(load_recipe(args.recipe), args.to)
    if args.out:
        out = Path(args.out)
        if out.is_dir():
            raise ConfigError(f"--out: {str(out)!r} is a folder; expected a file path.")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.text)
        print(f"wrote {out}")
    else:
        sys.stdout.write(result.text)
    if result.unsupported:
        print(
            f"note: {len(result.unsupported)} part(s) of the recipe cannot be expressed for "
            f"{args.to} and are NOT in the output: {', '.join(result.unsupported)} "
            "(reasons in the comment block at its top)",
            file=sys.stderr,
        )
    return 0


# --- show --------------------------------------------------------------------------------------
def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe file (YAML/JSON)")


def run_show(args: argparse.Namespace) -> int:
    from tricksearch.recipe import load_recipe
    from tricksearch.report._show import show_recipe

    recipe = load_recipe(args.recipe)
    print(f"recipe: {args.recipe}")
    sys.stdout.write(show_recipe(recipe))
    return 0


COMMANDS: tuple[Command, ...] = (
    Command(
        "ablate",
        "one-trick-off / one-trick-on table of a recipe, trained with several seeds",
        run_ablate,
        _add_ablate,
    ),
    Command(
        "report",
        "write RUN_DIR/report.md and report.html: history, importance, learning curves, "
        "ablation and cost",
        run_report,
        _add_report,
    ),
    Command(
        "dashboard",
        "open the search's Optuna study in optuna-dashboard (pip install 'tricksearch[dashboard]')",
        run_dashboard,
        _add_dashboard,
    ),
    Command(
        "export",
        "export a recipe for timm's or torchvision's train.py, or as JSON",
        run_export,
        _add_export,
    ),
    Command(
        "show",
        "print a recipe: tricks on by family, data/model/budget, and its evidence",
        run_show,
        _add_show,
    ),
)
