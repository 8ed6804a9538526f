"""GPU checks in one short run, for a session that is lent a GPU machine (torch only: no ray,
optuna or scikit-learn needed; synthetic CIFAR-sized data, so no dataset files either).

1. every registered trick trains one epoch on the device (cuda paths: autocast bf16/fp16 with
   GradScaler, EMA, per-sample augmentation policies, adversarial, multi-scale, …);
2. same seed, same device -> same numbers (twice the same recipe);
3. engine throughput on the device against a DataLoader loop with per-sample transforms, side by
   side (the CPU figure is in the README).

    python benchmarks/gpu_check.py [--device cuda] [--n 20000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from tricksearch.data import dataset_from_tensors
from tricksearch.engine import fit
from tricksearch.recipe import Recipe
from tricksearch.tricks import registered_tricks


def synthetic(n: int, seed: int = 0) -> object:
    """Learnable CIFAR-sized data: the class sets the mean colour of a noisy 3x32x32 image."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    base = (y.float() * 20 + 30).view(-1, 1, 1, 1).expand(n, 3, 32, 32)
    noise = torch.randn(n, 3, 32, 32, generator=g) * 40
    x = (base + noise).clamp(0, 255).to(torch.uint8)
    return dataset_from_tensors(x, y, name="synthetic")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    dev = args.device
    print(
        f"torch {torch.__version__}, device {dev}"
        + (f" ({torch.cuda.get_device_name()})" if dev.startswith("cuda") else "")
    )
    small = synthetic(2000)

    print("\n1. every trick, one epoch on the device")
    failures = []
    for name, spec in registered_tricks().items():
        params: dict = {}
        if spec.needs_teacher:
            params = {"teacher": "cnn-small", "teacher_epochs": 1}
        model = (
            {"name": "resnet-cifar", "options": {"depth": 8}}
            if spec.needs_residual
            else {"name": "cnn-small"}
        )
        recipe = Recipe.from_dict({"model": model, "budget": {"epochs": 1}}).with_trick(
            name, params
        )
        if name == "low_precision":
            recipes = [recipe.with_trick(name, {"dtype": d}) for d in ("bf16", "fp16")]
        else:
            recipes = [recipe]
        for r in recipes:
            t0 = time.perf_counter()
            try:
                res = fit(r, data=small, device=dev)
                status = f"ok  val_acc {res.val_acc:.3f}"
            except Exception as exc:  # report and go on: the point is to see every trick
                status = f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                failures.append(name)
            label = name + (f"[{r.procedure[name]['dtype']}]" if name == "low_precision" else "")
            print(f"  {label:<22} {time.perf_counter() - t0:6.2f}s  {status}")

    print("\n2. determinism")
    r = Recipe.from_dict({"budget": {"epochs": 2}, "augment": {"hflip": {}, "random_crop": {}}})
    a, b = fit(r, data=small, device=dev), fit(r, data=small, device=dev)
    same = [m.train_loss for m in a.history] == [m.train_loss for m in b.history]
    print(f"  same seed twice -> identical train losses: {same}")

    print("\n3. throughput")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from engine_throughput import reference_loop

    data = synthetic(args.n)
    recipe = Recipe.from_dict(
        {
            "model": {"name": "cnn-small"},
            "budget": {"epochs": args.epochs, "batch_size": 512, "lr": 0.05},
            "augment": {"hflip": {}, "random_crop": {"padding": 2}},
        }
    )
    fit(recipe.with_changes(budget=recipe.budget.to_dict() | {"epochs": 1}), data=data, device=dev)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fit(recipe, data=data, device=dev)
    if dev.startswith("cuda"):
        torch.cuda.synchronize()
    t_engine = time.perf_counter() - t0
    import os

    t_ref, _ = reference_loop(recipe, data, workers=min(4, os.cpu_count() or 1), device=dev)
    n = len(data.y_train) * args.epochs
    print(
        f"  engine {n / t_engine:9.0f} images/s   reference {n / t_ref:9.0f} images/s   "
        f"ratio {t_ref / t_engine:.2f}x"
    )
    print(f"\nfailed tricks: {failures or 'none'}")


if __name__ == "__main__":
    main()
