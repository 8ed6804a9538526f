"""The command line: help without heavy imports, listings, train end to end, one-line errors.

``cli(*argv)`` (tests/conftest.py) runs ``tricksearch ARGV…`` in this process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tricksearch.cli import COMMANDS, build_parser, main
from tricksearch.recipe import Recipe, load_recipe

HEAVY = ("torch", "ray", "optuna", "matplotlib")


def _heavy_imports(importtime: str) -> list[str]:
    """The heavy packages in ``python -X importtime`` output, each with the chain of modules that
    imported it (outermost first), e.g. ``torch <- tricksearch.recipe <- tricksearch.cli``."""
    rows = []  # (depth, module) in the order imports finished: children before their parent
    for line in importtime.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)$", line)
        if m:
            rows.append((len(m.group(1)) // 2, m.group(2)))
    found = []
    for i, (depth, name) in enumerate(rows):
        if name not in HEAVY:
            continue
        chain, want = [name], depth - 1
        for d, parent in rows[i + 1 :]:
            if d == want:
                chain.append(parent)
                want -= 1
        found.append(" <- ".join(chain))
    return found


@pytest.mark.parametrize("command", [None, *(c.name for c in COMMANDS)])
def test_help_imports_no_torch_ray_optuna(command: str | None) -> None:
    """``tricksearch --help`` and ``tricksearch CMD --help`` answer at once: each command imports
    the heavy packages it needs when it runs, not when the parser is built."""
    argv = [command] if command else []
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tricksearch", *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: tricksearch" in proc.stdout
    heavy = _heavy_imports(proc.stderr)
    line = " ".join(["tricksearch", *argv, "--help"])
    assert not heavy, f"`{line}` imports: " + "; ".join(heavy)


def test_every_command_is_listed_once_and_builds() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert {"train", "search", "spaces", "ablate", "report", "export", "show"} <= set(names)
    args = build_parser().parse_args(["search", "--trials", "2", "--time-budget", "60"])
    assert (args.command, args.trials, args.time_budget) == ("search", 2, 60.0)


def test_listings(cli) -> None:
    code, out, _ = cli("datasets")
    assert code == 0 and "digits" in out and "fashion-mnist" in out
    code, out, _ = cli("models")
    assert code == 0 and "cnn-small" in out and "resnet-cifar" in out
    code, out, _ = cli("tricks")
    assert code == 0 and "[loss]" in out and "label_smoothing" in out and "search:" in out
    code, out, _ = cli("tricks", "mixup")
    assert code == 0 and "alpha" in out and "label_smoothing" not in out
    code, out, _ = cli("spaces")
    assert code == 0
    assert {"default", "bag-of-tricks", "regularization", "schedule", "minimal"} <= {
        line.split()[0] for line in out.splitlines() if line.strip()
    }
    code, out, _ = cli("spaces", "show", "minimal")
    assert code == 0 and "loss.label_smoothing.epsilon" in out and "9 dimensions" in out
    code, _, err = cli("spaces", "show", "nope")
    assert code == 2 and "nope" in err and "minimal" in err


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["train", "--epochs", "-3"], ["--epochs", "-3", "integer >= 1"]),
        (["train", "--epochs", "ten"], ["--epochs", "'ten'"]),
        (["train", "--recipe", "nope.yaml"], ["recipe", "nope.yaml", "no file"]),
        (["train", "--dataset", "imagenet"], ["imagenet", "digits"]),
        (["train", "--model", "cnn-huge"], ["cnn-huge", "cnn-small"]),
        (["tricks", "mixpu"], ["unknown trick 'mixpu'", "mixup"]),
    ],
)
def test_errors_are_one_clear_line(capsys, argv, fragments) -> None:
    with pytest.raises(SystemExit) if argv[1:2] == ["--epochs"] else _nullctx() as exc:
        code = main(argv)
    err = capsys.readouterr().err
    if exc is not None and hasattr(exc, "value"):
        code = exc.value.code
    assert code == 2
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


class _nullctx:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_bad_recipe_value_names_file_and_field(cli, tmp_path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text("budget:\n  epochs: 5\nloss:\n  label_smoothing: {epsilon: 7}\n")
    code, _, err = cli("train", "--recipe", str(bad))
    assert code == 2
    assert "r.yaml" in err and "loss.label_smoothing.epsilon" in err and "7" in err
    assert len(err.strip().splitlines()) == 1


def test_train_from_a_searched_recipe_shows_what_the_search_measured(cli, tmp_path) -> None:
    evidence = {
        "seeds": [0, 1, 2],
        "recipe": {
            "val_acc_mean": 0.9,
            "val_acc_std": 0.01,
            "test_acc_mean": 0.8,
            "test_acc_std": 0.02,
            "val_acc": [0.91, 0.9],  # seed 1 failed
            "test_acc": [0.81, 0.79],
            "failed_seeds": [1],
        },
    }
    path = tmp_path / "best_recipe.yaml"
    recipe = Recipe.from_dict({"budget": {"epochs": 1, "seed": 2}, "provenance": evidence})
    recipe.save(path)
    code, out, _ = cli("train", "--recipe", str(path), "--device", "cpu")
    assert code == 0
    assert (
        "the search measured this recipe: val_acc 0.9000 ± 0.0100, test_acc 0.8000 ± 0.0200 "
        "over seeds 0, 2 (seed 2: val_acc 0.9000, test_acc 0.7900;" in out
    )
    # a run that changes what was measured is not put next to it
    code, out, _ = cli("train", "--recipe", str(path), "--device", "cpu", "--lr", "0.1")
    assert code == 0 and "final: val_acc" in out and "the search measured" not in out


def test_train_a_recipe_found_with_a_python_model_is_one_clear_line(cli, tmp_path) -> None:
    path = Recipe.from_dict({"model": {"name": "python:mymodels.make_net"}}).save(
        tmp_path / "best_recipe.yaml"
    )
    code, out, err = cli("train", "--recipe", str(path), "--device", "cpu")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "found with a Python model (mymodels.make_net)" in err
    assert f"tricksearch.train({str(path)!r}, model=make_net)" in err
    # a registry model given on the command line replaces it
    code, out, _ = cli("train", "--recipe", str(path), "--model", "cnn-small", "--epochs", "1")
    assert code == 0 and "training cnn-small" in out


def test_train_a_recipe_found_on_python_data_is_one_clear_line(cli, tmp_path) -> None:
    path = Recipe.from_dict({"data": {"dataset": "tensors"}}).save(tmp_path / "r.yaml")
    code, _, err = cli("train", "--recipe", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "data given from Python" in err and "dataset=(x, y)" in err


def test_train_uses_the_recipes_threads_and_threads_overrides(cli, tmp_path) -> None:
    path = Recipe.from_dict({"budget": {"epochs": 1}, "runtime": {"threads": 1}}).save(
        tmp_path / "r.yaml"
    )
    code, out, _ = cli(
        "train", "--recipe", str(path), "--device", "cpu", "--out", str(tmp_path / "a")
    )
    assert code == 0 and "with 1 torch thread(s)" in out
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["threads"] == 1
    code, out, _ = cli(
        "train",
        "--recipe",
        str(path),
        "--threads",
        "2",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "b"),
    )
    assert code == 0 and "with 2 torch thread(s)" in out
    assert load_recipe(tmp_path / "b" / "recipe.yaml").runtime.threads == 2
    with pytest.raises(SystemExit) as exc:
        cli("train", "--threads", "0")
    assert exc.value.code == 2


def test_search_resume_of_a_python_model_run_says_to_resume_from_python(cli, tmp_path) -> None:
    from tricksearch.tuning import SearchConfig

    run = tmp_path / "run"
    run.mkdir()
    SearchConfig(model="python:mymodels.make_net", out=str(run)).save(run / "search.json")
    code, _, err = cli("search", "--resume", str(run))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"tricksearch.resume({str(run)!r}, model=make_net) from Python" in err


@pytest.mark.slow
def test_train_digits_reaches_95_percent(cli, tmp_path) -> None:
    out = tmp_path / "run"
    code, stdout, _ = cli(
        "train",
        "--dataset",
        "digits",
        "--model",
        "cnn-small",
        "--epochs",
        "20",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert code == 0
    assert sum(line.startswith("epoch ") for line in stdout.splitlines()) == 20
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] >= 0.95, metrics["test_acc"]
    assert len(metrics["history"]) == 20
    recipe = load_recipe(out / "recipe.yaml")
    assert recipe.budget.epochs == 20 and recipe.data.dataset == "digits"
    assert (out / "model.pt").is_file()


@pytest.mark.slow
def test_python_dash_m_entry_point(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tricksearch", "train", "--epochs", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/1" in proc.stdout and "test_acc" in proc.stdout
