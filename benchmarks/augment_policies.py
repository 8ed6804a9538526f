"""The per-sample augmentation policies, per image (torchvision v2) against batched, side by side.

For each policy (AutoAugment cifar10, RandAugment N=2 M=9, TrivialAugmentWide, AugMix) and
random erasing (p = 0.5), at 28×28 grey and 32×32 RGB: seconds per 10,000 uint8 images for

- per image: the torchvision transform called on each image in a Python loop (the former
  ``BatchAugment``);
- batched: ``tricks._batched_policies`` on batches of ``--batch`` images, with each selection
  strategy (``index``: the samples of each op gathered; ``where``: every op on the whole batch,
  picked per sample — the CUDA default, no host synchronisation).

    python benchmarks/augment_policies.py [--images 10000] [--batch 256] [--device cpu]
        [--threads N]

On a CPU shared with other work, ``--threads 1`` gives steadier numbers: torch's intra-op
threads wait on each other when the cores are busy.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.transforms import v2

from tricksearch.tricks import _batched_ops as ops
from tricksearch.tricks import _batched_policies as P
from tricksearch.tricks.augment import ERASING_RATIO, ERASING_SCALE

POLICIES: dict[str, tuple[Callable[[], object], Callable[[], P.BatchedPolicy]]] = {
    "autoaugment": (
        lambda: v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10),
        lambda: P.BatchedAutoAugment("cifar10"),
    ),
    "randaugment": (lambda: v2.RandAugment(2, 9, 31), lambda: P.BatchedRandAugment(2, 9, 31)),
    "trivialaugment": (v2.TrivialAugmentWide, P.BatchedTrivialAugment),
    "augmix": (v2.AugMix, P.BatchedAugMix),
}
SHAPES = {"28x28x1": (1, 28, 28), "32x32x3": (3, 32, 32)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[Tensor], Tensor], batches: list[Tensor]) -> float:
    fn(batches[0])  # warm-up (tables, allocator)
    _sync(batches[0].device)
    t = time.perf_counter()
    for x in batches:
        fn(x)
    _sync(batches[0].device)
    return time.perf_counter() - t


def _per_image(transform: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def run(x: Tensor) -> Tensor:
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = transform(x[i])
        return out

    return run


def _erase_batched(x: Tensor) -> Tensor:
    b, _, h, w = x.shape
    top, left, bh, bw = ops.erasing_boxes(
        b, h, w, scale=ERASING_SCALE, ratio=ERASING_RATIO, device=x.device, generator=None
    )
    chosen = ops.uniform((b,), x.device, None) < 0.5
    mask = ops.box_mask(h, w, top, left, bh * chosen, bw)
    return x.masked_fill(mask[:, None], 0)


def _row(name: str, shape: str, per_image: float, batched: dict[str, float], scale: float) -> str:
    cells = "  ".join(
        f"{how} {t * scale:7.3f} s ({per_image / t:5.1f}×)" for how, t in batched.items()
    )
    return f"{name:15s} {shape:8s} per image {per_image * scale:7.3f} s   {cells}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-image-images", type=int, default=2048, help="images timed per image")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    print(f"seconds per 10,000 images, batch {args.batch}, {device}, {threads} CPU threads")
    for shape_name, (c, h, w) in SHAPES.items():
        n_batches = max(1, args.images // args.batch)
        batches = [
            torch.randint(0, 256, (args.batch, c, h, w), dtype=torch.uint8, device=device)
            for _ in range(n_batches)
        ]
        few = batches[: max(1, args.per_image_images // args.batch)]
        scale_all = 10_000 / (n_batches * args.batch)
        scale_few = 10_000 / (len(few) * args.batch)
        for name, (torchvision_policy, batched_policy) in POLICIES.items():
            per_image = _timed(_per_image(torchvision_policy()), few) * scale_few
            times = {}
            for how in ("index", "where"):
                policy = batched_policy()
                policy.how = how
                times[how] = _timed(policy, batches) * scale_all
            print(_row(name, shape_name, per_image, times, 1.0))
        eraser = v2.RandomErasing(p=0.5, scale=ERASING_SCALE, ratio=ERASING_RATIO, value=0)
        per_image = _timed(_per_image(eraser), few) * scale_few
        batched = {"mask": _timed(_erase_batched, batches) * scale_all}
        print(_row("random_erasing", shape_name, per_image, batched, 1.0))


if __name__ == "__main__":
    main()
