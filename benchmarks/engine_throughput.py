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

With engine options, the engine is also timed with them (``runtime``: channels_last, compile
…) and images/s before → after are printed side by side.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
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
    args = p.parse_args()

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
