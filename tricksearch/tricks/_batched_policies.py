"""AutoAugment, RandAugment, TrivialAugmentWide and AugMix on whole uint8 batches, per sample.

Each policy draws its per-sample parameters as tensors on the batch's device (:meth:`draw`) and
applies them over the whole batch (:meth:`apply`): the same distributions as
``torchvision.transforms.v2``'s per-image policies, whose op lists, magnitude bins and
AutoAugment sub-policy tables are read from torchvision itself (``_AUGMENTATION_SPACE``,
``AutoAugment._get_policies``), and per image the same pixels as torchvision's ops
(``_batched_ops``).

A drawn op is a *variant*: (op, magnitude bin, sign). For each image size the policy tabulates
every variant's parameters in Python floats exactly as torchvision computes them from the
magnitude (affine matrix, factor 1 + m, posterize bits, solarize threshold 255·m), so a sample's
parameters are one gather. Per slot (one op of a chain) the geometric variants share one
``grid_sample`` and each colour op is computed for the samples that drew it:

- ``"index"`` (CPU default): gather those samples, compute, scatter back — each image costs one
  op; the sample indices come from ``nonzero``, which synchronises on CUDA;
- ``"where"`` (CUDA default): compute each op for the whole batch and pick per sample with
  ``torch.where`` — no host synchronisation, but about 14× the arithmetic: on 1 CPU thread it
  is 5–13× slower than ``"index"`` (``benchmarks/augment_policies.py``); not measured on a GPU.

Both give the same pixels. Randomness: ``generator`` when given (it must live on the batch's
device), else torch's default generator of the batch's device, which ``torch.manual_seed`` (the
engine's seed) seeds; on the CPU that is the same global generator as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2

from tricksearch.tricks import _batched_ops as ops

__all__ = [
    "OP_NAMES",
    "BatchedAugMix",
    "BatchedAutoAugment",
    "BatchedPolicy",
    "BatchedRandAugment",
    "BatchedTrivialAugment",
    "Draws",
    "magnitude_of",
]

#: Every op of the four policies; the index is the op's code in the tables.
OP_NAMES = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
_CODE = {name: i for i, name in enumerate(OP_NAMES)}
_GEOMETRIC = range(_CODE["ShearX"], _CODE["Rotate"] + 1)

#: name -> (magnitudes(num_bins, height, width) or None, signed), as torchvision's policies.
Space = dict[str, tuple[Callable[[int, int, int], Tensor | None], bool]]


def magnitude_of(
    space: Space, name: str, bins: int, level: int, neg: bool, hw: tuple[int, int]
) -> float:
    """The magnitude torchvision passes to its op: ``float(magnitudes[level])``, negated when the
    op is signed and the sign draw says so; 0.0 for ops without magnitude."""
    fn, signed = space[name]
    mags = fn(bins, hw[0], hw[1])
    if mags is None:
        return 0.0
    m = float(mags[level])
    return -m if signed and neg else m


def _params(name: str, m: float, h: int, w: int) -> tuple[list[float], float, int, float]:
    """(inverse affine matrix, factor, posterize mask, solarize threshold) of one variant, as
    torchvision's ``_apply_image_or_video_transform`` derives them from the magnitude ``m``."""
    matrix = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    factor, mask, threshold = 1.0, 255, 256.0
    if name in ("ShearX", "ShearY"):  # affine(shear=atan(m) in degrees, center=[0, 0])
        shear = math.degrees(math.atan(m))
        shears = [shear, 0.0] if name == "ShearX" else [0.0, shear]
        matrix = ops.inverse_affine_matrix([-w * 0.5, -h * 0.5], 0.0, [0.0, 0.0], shears)
    elif name in ("TranslateX", "TranslateY"):  # affine(translate=int(m), default centre)
        shift = [float(int(m)), 0.0] if name == "TranslateX" else [0.0, float(int(m))]
        matrix = ops.inverse_affine_matrix([0.0, 0.0], 0.0, shift, [0.0, 0.0])
    elif name == "Rotate":  # rotate(angle=m): angle % 360, matrix of -angle
        matrix = ops.inverse_affine_matrix([0.0, 0.0], -(m % 360), [0.0, 0.0], [0.0, 0.0])
    elif name in ("Brightness", "Color", "Contrast", "Sharpness"):
        factor = 1.0 + m
    elif name == "Posterize":
        bits = int(m)
        mask = ((1 << bits) - 1) << (8 - bits) if bits < 8 else 255
    elif name == "Solarize":
        threshold = 255 * m
    return matrix, factor, mask, threshold


@dataclass(frozen=True)
class _Table:
    """Parameters of every variant ``(op·bins + level)·2 + neg`` for one image size."""

    kind: Tensor  # int64 [V]: op code
    theta: Tensor  # float32 [V, 2, 3]
    factor: Tensor  # float64 [V]
    mask: Tensor  # uint8 [V]
    threshold: Tensor  # float32 [V]
    codes: tuple[int, ...]  # op codes present


def _table(space: Space, bins: int, h: int, w: int, device: torch.device) -> _Table:
    kind, theta, factor, mask, threshold = [], [], [], [], []
    for name in space:
        for level in range(bins):
            for neg in (False, True):
                p = _params(name, magnitude_of(space, name, bins, level, neg, (h, w)), h, w)
                kind.append(_CODE[name])
                theta.append(p[0])
                factor.append(p[1])
                mask.append(p[2])
                threshold.append(p[3])
    return _Table(
        kind=torch.tensor(kind, device=device),
        theta=torch.tensor(theta, dtype=torch.float32, device=device).view(-1, 2, 3),
        factor=torch.tensor(factor, dtype=torch.float64, device=device),
        mask=torch.tensor(mask, dtype=torch.uint8, device=device),
        threshold=torch.tensor(threshold, dtype=torch.float32, device=device),
        codes=tuple(sorted({_CODE[name] for name in space})),
    )


_ColourOp = Callable[[Tensor, Tensor, _Table], Tensor]
_COLOUR: dict[str, _ColourOp] = {
    "Brightness": lambda x, v, t: ops.brightness(x, t.factor[v]),
    "Color": lambda x, v, t: ops.saturation(x, t.factor[v]),
    "Contrast": lambda x, v, t: ops.contrast(x, t.factor[v]),
    "Sharpness": lambda x, v, t: ops.sharpness(x, t.factor[v]),
    "Posterize": lambda x, v, t: ops.posterize(x, t.mask[v]),
    "Solarize": lambda x, v, t: ops.solarize(x, t.threshold[v]),
    "AutoContrast": lambda x, v, t: ops.autocontrast(x),
    "Equalize": lambda x, v, t: ops.equalize(x),
    "Invert": lambda x, v, t: ops.invert(x),
}


def _select(out: Tensor, x: Tensor, hit: Tensor, var: Tensor, fn: Callable, how: str) -> Tensor:
    """``out`` with ``fn(x, var)`` on the samples where ``hit`` (see the module docstring)."""
    if how == "where":
        return torch.where(hit.view(-1, 1, 1, 1), fn(x, var), out)
    idx = hit.nonzero().squeeze(1)
    if idx.numel() == 0:
        return out
    return out.index_put((idx,), fn(x[idx], var[idx]))


def apply_slot(x: Tensor, var: Tensor, on: Tensor, table: _Table, mode: str, how: str) -> Tensor:
    """One op per sample: variant ``var`` [B] where ``on`` [B], else the image as it is."""
    kind = torch.where(on, table.kind[var], 0)
    out = x
    if any(c in _GEOMETRIC for c in table.codes):
        geo = (kind >= _GEOMETRIC.start) & (kind < _GEOMETRIC.stop)
        out = _select(out, x, geo, var, lambda xs, v: ops.affine(xs, table.theta[v], mode), how)
    for code in table.codes:
        name = OP_NAMES[code]
        if name in _COLOUR:
            fn = _COLOUR[name]
            out = _select(out, x, kind == code, var, lambda xs, v, fn=fn: fn(xs, v, table), how)
    return out


@dataclass(frozen=True)
class Draws:
    """One batch's draws: op index into the policy's space, magnitude bin, sign (true = negated
    when the op is signed) and whether the op is applied, each [B, *slots]; AugMix adds its
    weights [B, 1 + width] (original image first)."""

    op: Tensor
    level: Tensor
    neg: Tensor
    on: Tensor
    weights: Tensor | None = None


class BatchedPolicy:
    """Base: ``policy(x, generator=None)`` draws and applies (uint8 [B, C, H, W] in and out)."""

    space: Space
    bins: int
    mode = "nearest"
    how: str | None = None  # "index" / "where"; None: by device (module docstring)

    def __init__(self) -> None:
        self._tables: dict[tuple[int, int, str], _Table] = {}

    def table(self, h: int, w: int, device: torch.device) -> _Table:
        key = (h, w, str(device))
        if key not in self._tables:
            self._tables[key] = _table(self.space, self.bins, h, w, device)
        return self._tables[key]

    def _how(self, x: Tensor) -> str:
        return self.how or ("index" if x.device.type == "cpu" else "where")

    def draw(self, b: int, device: torch.device, generator: torch.Generator | None = None) -> Draws:
        raise NotImplementedError

    def _chain(self, x: Tensor, d: Draws, index: tuple[int, ...]) -> Tensor:
        """Apply the slots ``d.*[:, *index, k]`` in order."""
        table, how = self.table(x.shape[-2], x.shape[-1], x.device), self._how(x)
        op, level, neg, on = (t[(slice(None), *index)] for t in (d.op, d.level, d.neg, d.on))
        var = (op * self.bins + level) * 2 + neg.long()
        for k in range(var.shape[1]):
            x = apply_slot(x, var[:, k], on[:, k], table, self.mode, how)
        return x

    def apply(self, x: Tensor, d: Draws) -> Tensor:
        return self._chain(x, d, ())

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.apply(x, self.draw(x.shape[0], x.device, generator))


class BatchedRandAugment(BatchedPolicy):
    """``v2.RandAugment(num_ops, magnitude, num_magnitude_bins)``: ``num_ops`` ops uniform over
    its 14 (Identity included), at bin ``magnitude``, sign ± with probability 1/2 each."""

    space = v2.RandAugment._AUGMENTATION_SPACE

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31) -> None:
        super().__init__()
        self.num_ops, self.magnitude, self.bins = num_ops, magnitude, num_magnitude_bins

    def draw(self, b: int, device: torch.device, generator: torch.Generator | None = None) -> Draws:
        shape = (b, self.num_ops)
        op = ops.integers(len(self.space), shape, device, generator)
        neg = ops.uniform(shape, device, generator) <= 0.5
        level = torch.full(shape, self.magnitude, device=device)
        return Draws(op, level, neg, torch.ones(shape, dtype=torch.bool, device=device))


class BatchedTrivialAugment(BatchedPolicy):
    """``v2.TrivialAugmentWide(num_magnitude_bins)``: one op uniform over its 14, bin uniform."""

    space = v2.TrivialAugmentWide._AUGMENTATION_SPACE

    def __init__(self, num_magnitude_bins: int = 31) -> None:
        super().__init__()
        self.bins = num_magnitude_bins

    def draw(self, b: int, device: torch.device, generator: torch.Generator | None = None) -> Draws:
        op = ops.integers(len(self.space), (b, 1), device, generator)
        level = ops.integers(self.bins, (b, 1), device, generator)
        neg = ops.uniform((b, 1), device, generator) <= 0.5
        return Draws(op, level, neg, torch.ones((b, 1), dtype=torch.bool, device=device))


class BatchedAutoAugment(BatchedPolicy):
    """``v2.AutoAugment(policy)``: one of the 25 sub-policies uniformly; each of its two ops
    applied with its probability, at its bin of 10, sign ± with probability 1/2 each."""

    space = v2.AutoAugment._AUGMENTATION_SPACE
    bins = 10

    def __init__(self, policy: str = "imagenet") -> None:
        super().__init__()
        self.policy = policy
        subs = v2.AutoAugment(v2.AutoAugmentPolicy(policy))._policies
        names = list(self.space)
        self._ops = torch.tensor([[names.index(n) for n, _, _ in s] for s in subs])
        self._levels = torch.tensor([[lv or 0 for _, _, lv in s] for s in subs])
        self._probs = torch.tensor([[p for _, p, _ in s] for s in subs], dtype=torch.float32)
        self._on_device: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    def draw(self, b: int, device: torch.device, generator: torch.Generator | None = None) -> Draws:
        if str(device) not in self._on_device:  # copied to the device once
            tables = (self._ops, self._levels, self._probs)
            self._on_device[str(device)] = tuple(t.to(device) for t in tables)
        sub_ops, levels, probs = self._on_device[str(device)]
        sub = ops.integers(len(self._ops), (b,), device, generator)
        on = ops.uniform((b, 2), device, generator) <= probs[sub]
        neg = ops.uniform((b, 2), device, generator) <= 0.5
        return Draws(sub_ops[sub], levels[sub], neg, on)


class BatchedAugMix(BatchedPolicy):
    """``v2.AugMix`` (bilinear): per sample, ``width`` chains of ``depth`` ops (1–3 uniform when
    ``depth`` ≤ 0) uniform over its 13, bin uniform below ``severity`` of 10; the original weighs
    m ~ Beta(α, α) (a 2-way Dirichlet), chain i weighs (1 − m)·w_i, w ~ Dirichlet(α, …); the
    float mix is truncated to uint8."""

    space = v2.AugMix._AUGMENTATION_SPACE
    bins = 10
    mode = "bilinear"

    def __init__(
        self, severity: int = 3, width: int = 3, depth: int = -1, alpha: float = 1.0
    ) -> None:
        super().__init__()
        self.severity, self.width, self.depth, self.alpha = severity, width, depth, alpha

    def draw(self, b: int, device: torch.device, generator: torch.Generator | None = None) -> Draws:
        alpha = torch.full((b, 2), self.alpha, device=device)
        m = torch._sample_dirichlet(alpha, generator=generator)
        alpha = torch.full((b, self.width), self.alpha, device=device)
        w = torch._sample_dirichlet(alpha, generator=generator) * m[:, 1:]
        steps = self.depth if self.depth > 0 else 3
        shape = (b, self.width, steps)
        if self.depth > 0:
            depth = torch.full((b, self.width, 1), self.depth, device=device)
        else:
            depth = 1 + ops.integers(3, (b, self.width, 1), device, generator)
        on = torch.arange(steps, device=device) < depth
        op = ops.integers(len(self.space), shape, device, generator)
        level = ops.integers(self.severity, shape, device, generator)
        neg = ops.uniform(shape, device, generator) <= 0.5
        return Draws(op, level, neg, on, torch.cat([m[:, :1], w], dim=1))

    def apply(self, x: Tensor, d: Draws) -> Tensor:
        assert d.weights is not None
        weights = d.weights.view(*d.weights.shape, 1, 1, 1)
        mix = weights[:, 0] * x
        for i in range(self.width):
            mix.add_(weights[:, 1 + i] * self._chain(x, d, (i,)))
        return mix.to(torch.uint8)
