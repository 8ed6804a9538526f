"""Engine throughput against a loop built the usual way, measured side by side in one run.

Both train the same model (cnn-small) with the same optimizer, batch size and augmentation
(random horizontal flip + random crop with 2 px padding) on the same images, then evaluate on
the validation split, for the same number of epochs:

- engine:    ``tricksearch.engine.fit`` — the split lives on the device as one uint8 tensor,
             batches are cut, flipped and cropped on the device, no worker processes;
- reference: a torch ``Dataset`` with per-sample torchvision transforms (PIL image ->
             RandomHorizontalFlip -> RandomCrop -> ToTensor -> Normalize) and a ``DataLoader``
             with worker processes.

Prints images/s (training images per second of wall time, evaluation included) for each and
their ratio. Fashion-MNIST when installed (Debian's dataset-fashion-mnist), else digits.

    python benchmarks/engine_throughput.py [--epochs 2] [--limit 20000] [--workers 2]
        [--channels-last] [--compile MODE] [--cudnn-benchmark] [--tf32] [--eval-bf16]
        [--skip-reference]
    python benchmarks/engine_throughput.py --cpu-options [--quick] [--repeats 3] [--threads 1,2]

With engine options, the engine is also timed with them (``runtime``: channels_last, compile
…) and images/s before → after are printed side by side.

``--cpu-options`` measures instead what each engine option and evaluation setting is worth in a
CPU trial (cnn-small; a Fashion-MNIST subset with the real validation split, and digits; at each
thread count): train-epoch images/s and evaluation images/s of the reference (the defaults
before issue 11's CPU work: evaluation in batches of 1024 under ``no_grad``) against
channels_last, torch.compile (its first, compiling epoch timed apart), evaluation batches of 256
and 128, ``inference_mode``, channels-last and bf16 evaluation, and ``evaluate``'s current
default. Interleaved (A, B, A, B …, ``--repeats`` times, median), so that load from other
processes hits every side alike; one ``ratio <option>/reference images/s`` line per option.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from tricksearch._command import add_engine_options, engine_overrides
from tricksearch.data import DatasetSplits, load_dataset
from tricksearch.engine import fit, make_model
from tricksearch.errors import DataError
from tricksearch.recipe import Recipe


class _PerSampleDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: transforms.Compose) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = transforms.functional.to_pil_image(self.x[i])
        return self.transform(img), int(self.y[i])


def _subset(data: DatasetSplits, limit: int) -> DatasetSplits:
    if limit <= 0 or limit >= len(data.y_train):
        return data
    data.x_train, data.y_train = data.x_train[:limit], data.y_train[:limit]
    return data


def reference_loop(
    recipe: Recipe, data: DatasetSplits, workers: int, device: str = "cpu"
) -> tuple[float, float]:
    """The usual way; returns (seconds, final val accuracy)."""
    size = data.image_size
    train_tf = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(size, padding=2, padding_mode="reflect"),
            transforms.ToTensor(),
            transforms.Normalize(data.mean, data.std),
        ]
    )
    eval_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    b = recipe.budget
    kwargs = dict(
        num_workers=workers, persistent_workers=workers > 0, pin_memory=device.startswith("cuda")
    )
    train = DataLoader(
        _PerSampleDataset(data.x_train, data.y_train, train_tf),
        b.batch_size,
        shuffle=True,
        **kwargs,
    )
    val = DataLoader(_PerSampleDataset(data.x_val, data.y_val, eval_tf), 1024, **kwargs)
    model = make_model(recipe, data).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=b.lr, momentum=0.9)
    t0 = time.perf_counter()
    acc = 0.0
    for _ in range(b.epochs):
        model.train()
        for x, y in train:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
        acc = correct / len(data.y_val)
    return time.perf_counter() - t0, acc


def _engine_with_options(
    recipe: Recipe,
    data: DatasetSplits,
    args: argparse.Namespace,
    options: dict[str, object],
    n: int,
    plain: tuple[float, float],
) -> None:
    """The engine again with the recipe's ``runtime`` engine options (a warm-up epoch first,
    which also holds torch.compile's compilation); images/s before → after, side by side."""
    tuned = recipe.with_changes(runtime=recipe.runtime.to_dict() | options)
    t0 = time.perf_counter()
    fit(
        tuned.with_changes(budget=recipe.budget.to_dict() | {"epochs": 1}),
        data=data,
        device=args.device,
    )
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = fit(tuned, data=data, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    before, after = n / plain[0], n / seconds
    label = ", ".join(f"{k}={v}" for k, v in options.items())
    print(f"{'':<10}{'images/s':>10}{'seconds':>10}{'val_acc':>10}")
    print(f"{'plain':<10}{before:>10.0f}{plain[0]:>10.1f}{plain[1]:>10.4f}")
    print(f"{'options':<10}{after:>10.0f}{seconds:>10.1f}{res.val_acc:>10.4f}  ({label})")
    print(f"ratio options/plain: {after / before:.2f}x (first epoch with options: {warm:.1f} s)")


# --- --cpu-options: what each engine option / evaluation setting is worth in a CPU trial ---

#: Training variants: the recipe's ``runtime`` engine options.
_TRAIN_VARIANTS: dict[str, dict[str, object]] = {
    "reference": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile": "default"},
}


def _eval_variants(data: DatasetSplits) -> dict[str, Callable[[nn.Module], tuple[float, float]]]:
    """Evaluation variants of the same network: ``net -> (accuracy, loss)`` on the val split."""
    from tricksearch.engine.options import EngineOptions
    from tricksearch.engine.setup import evaluate

    dev = torch.device("cpu")
    x, y = data.x_val, data.y_val

    def call(batch_size: int | None = None, inference: bool = False, **opts: bool):
        kwargs = {} if batch_size is None else {"batch_size": batch_size}

        def run(net: nn.Module) -> tuple[float, float]:
            ctx = torch.inference_mode() if inference else contextlib.nullcontext()
            with ctx:
                return evaluate(net, x, y, data, dev, options=EngineOptions(**opts), **kwargs)

        return run

    return {
        "reference": call(1024),  # evaluate's default before issue 11's CPU work
        "eval_batch_256": call(256),
        "eval_batch_128": call(128),
        "inference_mode": call(1024, inference=True),
        "eval_channels_last": call(1024, channels_last=True),
        "eval_bf16": call(1024, eval_bf16=True),
        "evaluate_default": call(),  # whatever ``evaluate`` does today without arguments
    }


def _prepared_run(recipe: Recipe, data: DatasetSplits) -> Any:
    """A ``fit`` run prepared as ``fit`` does (model, loader, pieces, engine options)."""
    from tricksearch.engine import distributed
    from tricksearch.engine import options as engine_options

    fit_module = importlib.import_module("tricksearch.engine.fit")  # the module, not fit()

    run = fit_module._prepare(recipe, None, data, torch.device("cpu"), None, None)
    distributed.attach(run, recipe, None)
    engine_options.attach(run, recipe.runtime)
    return run


def _measure_config(
    name: str,
    data: DatasetSplits,
    threads: int,
    repeats: int,
    train_names: list[str],
    eval_names: list[str],
) -> list[tuple[str, str, float, str]]:
    """Rows (kind, variant, images/s (median), note) for one dataset at one thread count."""
    fit_module = importlib.import_module("tricksearch.engine.fit")

    torch.set_num_threads(threads)
    base = Recipe.from_dict(
        {
            "data": {"dataset": name},
            "model": {"name": "cnn-small"},
            "budget": {"epochs": repeats + 1, "batch_size": 128, "lr": 0.05},
            "augment": {"hflip": {}, "random_crop": {"padding": 2}},
        }
    )
    n_train, n_val = len(data.y_train), len(data.y_val)
    train_variants = {k: v for k, v in _TRAIN_VARIANTS.items() if k in train_names}
    runs, first, times = {}, {}, {k: [] for k in train_variants}
    for key, opts in train_variants.items():
        recipe = base.with_changes(runtime=base.runtime.to_dict() | opts)
        runs[key] = _prepared_run(recipe, data)
        t0 = time.perf_counter()
        fit_module._train_epoch(runs[key], 0)  # the first epoch (compilation, allocator)
        first[key] = time.perf_counter() - t0
    for rep in range(repeats):  # interleaved: A, B, C, A, B, C …
        for key, run in runs.items():
            t0 = time.perf_counter()
            fit_module._train_epoch(run, rep + 1)
            times[key].append(time.perf_counter() - t0)
    rows = []
    for key in train_variants:
        note = f"first epoch {first[key]:.1f} s"
        rows.append(("train", key, n_train / statistics.median(times[key]), note))
    net = runs["reference"].net
    variants = {k: v for k, v in _eval_variants(data).items() if k in eval_names}
    cl_net = copy.deepcopy(net).to(memory_format=torch.channels_last)
    nets = {k: (cl_net if k == "eval_channels_last" else net) for k in variants}
    etimes = {k: [] for k in variants}
    scores = {k: variants[k](nets[k]) for k in variants}  # warm-up, and the numbers compared
    passes = max(1, -(-2000 // n_val))  # a small split (digits: 270) is timed over ≥ 2,000 images
    for _ in range(repeats):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(passes):
                fn(nets[key])
            etimes[key].append((time.perf_counter() - t0) / passes)
    ref_acc, ref_loss = scores["reference"]
    for key in variants:
        acc, loss = scores[key]
        note = f"val_acc {acc:.4f} ({acc - ref_acc:+.4f}), val_loss {loss - ref_loss:+.1e}"
        rows.append(("eval", key, n_val / statistics.median(etimes[key]), note))
    return rows


def cpu_options(args: argparse.Namespace) -> None:
    """``--cpu-options``: the table and one ratio line per option (see the module's text)."""
    quick = args.quick
    repeats = args.repeats or (2 if quick else 3)
    threads = [int(t) for t in (args.threads or ("2" if quick else "1,2")).split(",")]
    eval_names = list(_eval_variants(load_dataset("digits")))
    train_names = list(_TRAIN_VARIANTS)
    if quick:  # no compile (its first epoch alone takes minutes on a loaded 2-core machine)
        train_names = ["reference", "channels_last"]
        eval_names = ["reference", "eval_batch_128", "eval_channels_last", "evaluate_default"]
    configs = []
    try:
        fm = load_dataset("fashion-mnist", data_root=args.data_root)
        limit = 2000 if quick else 5000
        fm.x_train, fm.y_train = fm.x_train[:limit], fm.y_train[:limit]
        configs.append(("fashion-mnist", fm))
    except DataError:
        print("fashion-mnist not installed: digits only")
    configs.append(("digits", load_dataset("digits")))
    print(
        f"CPU trial options: cnn-small, batch 128, flip + crop(2); {repeats} interleaved repeats "
        f"(median); torch {torch.__version__}"
    )
    header = f"{'data':<15}{'thr':>4} {'kind':<6}{'variant':<20}{'images/s':>10}{'ratio':>7}  note"
    print(header)
    ratios: dict[str, list[float]] = {}
    for name, data in configs:
        for t in threads:
            rows = _measure_config(name, data, t, repeats, train_names, eval_names)
            ref = {kind: ips for kind, key, ips, _ in rows if key == "reference"}
            label = f"{name} ({len(data.y_train)}/{len(data.y_val)})"
            for kind, key, ips, note in rows:
                ratio = ips / ref[kind]
                print(f"{label:<15}{t:>4} {kind:<6}{key:<20}{ips:>10.0f}{ratio:>7.2f}  {note}")
                if key != "reference":
                    ratios.setdefault(f"{kind} {key}", []).append(ratio)
            sys.stdout.flush()
    for option, values in ratios.items():
        each = ", ".join(f"{v:.2f}" for v in values)
        print(
            f"ratio {option}/reference images/s: {statistics.median(values):.2f} "
            f"(median of {len(values)}: {each})"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit", type=int, default=20000, help="training images used (0: all)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="cnn-small", help="cnn-small, resnet-cifar, …")
    p.add_argument("--data-root", default=None, help="Fashion-MNIST's folder (default: Debian's)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--skip-reference", action="store_true", help="engine runs only")
    add_engine_options(p)  # --channels-last, --compile MODE …: also timed with them, side by side
    p.add_argument("--cpu-options", action="store_true", help="CPU trial options, see above")
    p.add_argument("--quick", action="store_true", help="--cpu-options in about a minute")
    p.add_argument("--repeats", type=int, default=0, help="--cpu-options: repeats (3; quick 2)")
    p.add_argument("--threads", default=None, help="--cpu-options: thread counts (1,2; quick 2)")
    args = p.parse_args()
    if args.cpu_options:
        cpu_options(args)
        return

    try:
        name = "fashion-mnist"
        data = load_dataset(name, data_root=args.data_root)
    except DataError:
        name = "digits"
        data = load_dataset(name)
    data = _subset(data, args.limit)
    recipe = Recipe.from_dict(
        {
            "data": {"dataset": name},
            "model": {"name": args.model},
            "budget": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.05},
            "augment": {"hflip": {}, "random_crop": {"padding": 2}},
        }
    )
    n = len(data.y_train) * args.epochs
    print(
        f"dataset {name}: {len(data.y_train)} training images x {args.epochs} epochs, "
        f"{args.model}, batch {args.batch_size}, flip + crop(2), {torch.get_num_threads()} threads"
    )
    fit(
        recipe.with_changes(budget=recipe.budget.to_dict() | {"epochs": 1}),
        data=data,
        device=args.device,
    )  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    res = fit(recipe, data=data, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_engine = time.perf_counter() - t0
    options = engine_overrides(args)
    if options:
        _engine_with_options(recipe, data, args, options, n, (t_engine, res.val_acc))
    if args.skip_reference:
        return
    t_ref, acc_ref = reference_loop(recipe, data, args.workers, args.device)
    e, r = n / t_engine, n / t_ref
    print(f"{'':<10}{'images/s':>10}{'seconds':>10}{'val_acc':>10}")
    print(f"{'engine':<10}{e:>10.0f}{t_engine:>10.1f}{res.val_acc:>10.4f}")
    print(f"{'reference':<10}{r:>10.0f}{t_ref:>10.1f}{acc_ref:>10.4f}")
    print(f"ratio engine/reference: {e / r:.2f}x (target >= 1.5x on CPU, >= 3x on a GPU)")
    if args.json:
        import json

        numbers = {"model": args.model, "device": args.device, "dataset": name}
        numbers |= {"engine_images_per_s": e, "reference_images_per_s": r, "ratio": e / r}
        numbers |= {"engine_val_acc": res.val_acc, "reference_val_acc": acc_ref}
        with open(args.json, "w") as fh:
            json.dump(numbers, fh, indent=2)


if __name__ == "__main__":
    main()
