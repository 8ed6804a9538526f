"""The verdict on data nobody tuned for: a default-space search on two datasets the tool was not
built around, printing what a user would check (failed trials, the verdict, the gain with its
interval, what the pre-flight left out).

1. ``signals``: synthetic 1-D signals (3 classes told apart by a frequency, plus noise) given as
   float tensors ``(N, 1, L)`` through the Python API, with a user's Conv1d + LazyLinear model.
2. ``imagefolder``: a small ImageFolder of 200 grey 25x25 images in 2 classes (val 30, test 40
   images), through ``imagefolder:PATH``.

    python benchmarks/verdict_demo.py --out /tmp/verdict-demo [--trials 24] [--epochs 8]

Runs a few minutes per dataset on 2 CPU cores. Nothing here is a test: the numbers are for the
record (NOTES.md and the issue's closing note).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import nn


def make_net(in_channels: int, num_classes: int, **_: object) -> nn.Module:
    """A user's 1-D CNN: Conv1d layers and a lazily initialised classifier."""
    return nn.Sequential(
        nn.Conv1d(in_channels, 8, 5, padding=2),
        nn.ReLU(),
        nn.Conv1d(8, 8, 5, padding=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(8),
        nn.Flatten(),
        nn.LazyLinear(num_classes),
    )


def signals(n: int = 900, length: int = 64, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    t = torch.arange(length).float()
    freq = (1.0 + y.float() * 0.35)[:, None]
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    x = torch.sin(freq * t[None] * 2 * math.pi / length * 4 + phase)
    x = x + 1.2 * torch.randn(n, length, generator=g)
    x = (x * 3.0 + 10.0)[:, None, :]  # not standardised: the tool must do it
    cut = int(n * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def image_folder(root: Path, seed: int = 0) -> Path:
    """200 grey 25x25 PNGs, 2 classes: a faint blob top-left (class a) or bottom-right (b)."""
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(100):
            img = torch.rand(25, 25, generator=g) * 160
            r, c = (torch.randint(2, 9, (2,), generator=g) + (0 if k == 0 else 14)).tolist()
            img[r : r + 5, c : c + 5] += 110
            Image.fromarray(img.clamp(0, 255).byte().numpy(), mode="L").save(
                root / name / f"{i:03d}.png"
            )
    return root


def report(name: str, run: Path) -> dict[str, object]:
    summary = json.loads((run / "results.json").read_text())["summary"]
    v = summary.get("verdict") or {}
    test = v.get("test") or {}
    out = {
        "dataset": name,
        "trials": summary["search"]["trials"],
        "failures": summary["search"].get("failures", []),
        "exported": v.get("exported"),
        "verdict": v.get("summary"),
        "gain": test.get("gain"),
        "interval": [test.get("low"), test.get("high")],
        "recipe_test": (summary["recipe"]["test_acc_mean"], summary["recipe"]["test_acc_std"]),
        "baseline_test": (
            summary["baseline"]["test_acc_mean"],
            summary["baseline"]["test_acc_std"],
        ),
        "tuned_baseline": (summary.get("tuned_baseline") or {}).get("verdict"),
        "minimal": (summary.get("minimal") or {}).get("tricks"),
        "small_data": summary.get("small_data"),
    }
    print(json.dumps(out, indent=1, default=str))
    return out


def main() -> None:
    import tricksearch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--only", choices=("signals", "imagefolder"))
    p.add_argument("--cv", type=int, help="K-fold retraining (--cv K of the search)")
    p.add_argument("--seeds", default="3", help="seeds of the retraining: N or auto")
    args = p.parse_args()
    seeds = args.seeds if args.seeds == "auto" else int(args.seeds)
    common = {"trials": args.trials, "epochs": args.epochs, "space": "default", "seeds": seeds}
    if args.cv:
        common["cv"] = args.cv
    if args.only in (None, "signals"):
        run = args.out / "signals"
        tricksearch.search(dataset=signals(), model=make_net, out=run, **common)
        report("signals", run)
    if args.only in (None, "imagefolder"):
        folder = image_folder(args.out / "folder")
        run = args.out / "imagefolder"
        tricksearch.search(dataset=f"imagefolder:{folder}", model="cnn-small", out=run, **common)
        report("imagefolder", run)


if __name__ == "__main__":
    main()
