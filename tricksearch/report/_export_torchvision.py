"""Export a recipe as a command line for torchvision's ``references/classification/train.py``.

One function per trick family writes the options torchvision's script has; every trick it does
not consume is listed as unsupported by :class:`ExportLog` (``_WHY_NOT`` only gives better reasons
for some). An inexpressible member of an exclusive group (an optimizer, an LR decay) is replaced by
the group's default (SGD, constant LR), and the note says so. The script's own random-resized crop
and flip cannot be switched off: the notes say so.
"""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tricksearch.errors import ConfigError
from tricksearch.recipe import Recipe
from tricksearch.report._export_common import (
    ExportLog,
    ExportResult,
    data_note,
    group_member,
    model_name,
    num,
    peak_lr,
    warmup_epochs,
)

__all__ = ["export_torchvision", "parse_torchvision_command", "torchvision_ema_decay"]

#: torchvision's RandAugment in references/classification/presets.py uses the default num_ops.
_RA_NUM_OPS = 2
#: torch.optim.AdamW defaults, the only betas torchvision's train.py can use.
_ADAMW_BETAS = (0.9, 0.999)

_LOSS = "torchvision's train.py uses plain (label-smoothed) cross-entropy"
_MODEL = "not a train.py option (it builds the model with its defaults)"
#: Better reasons than "no equivalent" for tricks torchvision's train.py does not take
#: (optional: a trick missing here is reported all the same).
_WHY_NOT = {
    "lookahead": "torchvision's train.py has no Lookahead",
    **dict.fromkeys(("focal", "flooding", "distillation", "bias_prior"), _LOSS),
    "ricap": "torchvision's train.py has no RICAP",
    "random_crop": "train.py has no pad-and-crop (it uses random-resized crop)",
    "cutout": "train.py has no cutout (random erasing is the nearest)",
    "multiscale": "train.py trains at one crop size",
    **dict.fromkeys(
        ("dropout", "zero_gamma", "group_norm", "activation", "resnet_variant"), _MODEL
    ),
    "adversarial": "train.py has no adversarial training",
}

Args = list[tuple[str, ...]]


@dataclass
class _Ctx:
    """What the family writers share: the recipe, the log, the options being written."""

    recipe: Recipe
    log: ExportLog
    args: Args
    peak: float


def export_torchvision(recipe: Recipe) -> ExportResult:
    """The recipe as a ``train.py`` command, with a comment block of what it could not express."""
    log = ExportLog("torchvision's train.py", recipe)
    b = recipe.budget
    ctx = _Ctx(recipe, log, [], peak_lr(recipe))
    ctx.args += [
        ("--data-path", "/path/to/imagefolder"),
        ("--model", model_name(recipe, log, "torchvision")),
        ("--epochs", str(b.epochs)),
        ("--batch-size", str(b.batch_size)),
        ("--lr", repr(num(ctx.peak))),
    ]
    data_note(recipe, log, "torchvision")
    log.approx_note("--data-path: an ImageFolder tree with train/ and val/ folders.")
    if log.take("lr_scaling") is not None:
        log.approx_note(
            f"lr_scaling: folded into --lr ({num(b.lr)} scaled for batch {b.batch_size}); "
            "rescale it if you change the batch size or the number of GPUs."
        )
    log.approx_note("torchvision steps the LR scheduler once per epoch; tricksearch every step.")
    for write in (_optimizer, _schedule, _loss, _mixing, _augment, _procedure):
        write(ctx)
    log.approx_note(f"seed {b.seed}: train.py has no seed option.")
    log.report_unconsumed(_WHY_NOT)
    parts = [shlex.join(a) for a in ctx.args]
    command = "python train.py \\\n" + " \\\n".join(f"    {p}" for p in parts) + "\n"
    head = log.header("torchvision references/classification/train.py command")
    return log.result("\n".join(head) + "\n" + command, "torchvision")


def torchvision_ema_decay(
    decay: float, *, epochs: int, batch_size: int, world_size: int = 1, inverse: bool = False
) -> float:
    """Convert a per-step EMA decay to torchvision's ``--model-ema-decay`` (with steps = 1).

    torchvision rescales: α = (1 − decay_arg) · world_size · batch_size · ema_steps / epochs and
    uses 1 − α per update. ``inverse=True`` converts torchvision's value back to a per-step decay.
    """
    scale = world_size * batch_size / epochs
    if inverse:
        return 1.0 - min(1.0, (1.0 - decay) * scale)
    return 1.0 - (1.0 - decay) / scale


def _optimizer(ctx: _Ctx) -> None:
    log, args = ctx.log, ctx.args
    opt, params = group_member(log, "optimizer", "optimizer")
    if opt not in ("sgd", "adamw"):
        log.cannot(
            opt,
            "torchvision's train.py offers only SGD, RMSprop and AdamW; the command "
            "uses SGD with momentum 0.9 instead",
        )
        opt, params = "sgd", {"momentum": 0.9, "nesterov": False}
    if opt == "sgd":
        args.append(("--opt", "sgd_nesterov" if params.get("nesterov") else "sgd"))
        args.append(("--momentum", repr(num(params["momentum"]))))
    else:  # adamw
        args.append(("--opt", "adamw"))
        for i, key in enumerate(("beta1", "beta2")):
            if params[key] != _ADAMW_BETAS[i]:
                log.cannot(
                    f"adamw.{key}",
                    f"{params[key]} in the recipe; train.py uses "
                    f"AdamW's default betas {_ADAMW_BETAS}",
                )
    wd = log.take("weight_decay")
    args.append(("--wd", repr(num(wd["value"] if wd is not None else 0.0))))
    if log.take("no_bias_decay") is not None:
        args.append(("--norm-weight-decay", "0.0"))
        args.append(("--bias-weight-decay", "0.0"))
    clip = log.take("grad_clip")
    if clip is not None:
        args.append(("--clip-grad-norm", repr(num(clip["max_norm"]))))


def _schedule(ctx: _Ctx) -> None:
    """Warmup (LinearLR/ConstantLR) then the decay, in SequentialLR."""
    warm_epochs, warm = warmup_epochs(ctx.log, ctx.recipe, "torchvision")
    decay, params = group_member(ctx.log, "schedule", "decay")
    write = _DECAYS.get(decay)
    if write is None:
        ctx.log.cannot(
            decay,
            "torchvision's train.py offers StepLR, CosineAnnealingLR and "
            "ExponentialLR; the command keeps the LR constant instead",
        )
        write, params = _DECAYS["constant"], {}
    write(ctx, params, ctx.recipe.budget.epochs - warm_epochs)
    if warm is not None and warm_epochs > 0:
        ctx.args.append(("--lr-warmup-epochs", str(warm_epochs)))
        ctx.args.append(("--lr-warmup-method", warm["kind"]))
        ctx.args.append(("--lr-warmup-decay", repr(num(warm["start_factor"]))))


def _constant(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    """A StepLR that never decays."""
    ctx.args.append(("--lr-scheduler", "steplr"))
    ctx.args.append(("--lr-step-size", str(max(1, ctx.recipe.budget.epochs))))
    ctx.args.append(("--lr-gamma", "1.0"))


def _cosine(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    ctx.args.append(("--lr-scheduler", "cosineannealinglr"))
    ctx.args.append(("--lr-min", repr(num(params["min_lr_factor"] * ctx.peak))))


def _step(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    every = params["every_fraction"] * decay_epochs
    step = max(1, math.floor(every + 0.5))
    if step != every:
        ctx.log.approx_note(f"step: every {every:g} epochs rounded to {step} (--lr-step-size).")
    ctx.args.append(("--lr-scheduler", "steplr"))
    ctx.args.append(("--lr-step-size", str(step)))
    ctx.args.append(("--lr-gamma", repr(num(params["gamma"]))))


#: torchvision's writer of each LR decay it has; any other decay is reported and made constant.
_DECAYS: dict[str, Callable[[_Ctx, dict[str, Any], int], None]] = {
    "constant": _constant,
    "step": _step,
    "cosine": _cosine,
}


def _loss(ctx: _Ctx) -> None:
    smoothing = ctx.log.take("label_smoothing")
    if smoothing is not None:
        ctx.args.append(("--label-smoothing", repr(num(smoothing["epsilon"]))))


def _mixing(ctx: _Ctx) -> None:
    """train.py applies RandomChoice([MixUp, CutMix]) to every batch."""
    for name, flag in (("mixup", "--mixup-alpha"), ("cutmix", "--cutmix-alpha")):
        params = ctx.log.take(name)
        if params is None:
            continue
        ctx.args.append((flag, repr(num(params["alpha"]))))
        if params["prob"] != 1.0:
            ctx.log.cannot(
                f"{name}.prob",
                f"{params['prob']} in the recipe; train.py mixes every batch (prob 1)",
            )


def _augment(ctx: _Ctx) -> None:
    log, args = ctx.log, ctx.args
    log.approx_note(
        "train.py always applies a random-resized crop and a horizontal flip "
        "(no option switches them off)"
        + ("" if log.take("hflip") is not None else "; the recipe does not flip")
        + "."
    )
    erasing = log.take("random_erasing")
    if erasing is not None:
        args.append(("--random-erase", repr(num(erasing["prob"]))))
    if (auto := log.take("autoaugment")) is not None:
        args.append(("--auto-augment", auto["policy"]))
    if (randaugment := log.take("randaugment")) is not None:
        args.append(("--auto-augment", "ra"))
        args.append(("--ra-magnitude", str(randaugment["magnitude"])))
        if randaugment["num_ops"] != _RA_NUM_OPS:
            log.cannot(
                "randaugment.num_ops",
                f"{randaugment['num_ops']} in the recipe; train.py "
                f"uses RandAugment's default {_RA_NUM_OPS}",
            )
    if log.take("trivialaugment") is not None:
        args.append(("--auto-augment", "ta_wide"))
    if log.take("augmix") is not None:
        args.append(("--auto-augment", "augmix"))
        args.append(("--augmix-severity", "3"))


def _procedure(ctx: _Ctx) -> None:
    log, args, b = ctx.log, ctx.args, ctx.recipe.budget
    precision = log.take("low_precision")
    if precision is not None and precision["dtype"] == "fp16":
        args.append(("--amp",))
    elif precision is not None:
        log.cannot("low_precision", "dtype='bf16'; train.py's --amp is float16 autocast")
    ema = log.take("ema")
    if ema is not None:
        d = torchvision_ema_decay(ema["decay"], epochs=b.epochs, batch_size=b.batch_size)
        args.append(("--model-ema",))
        args.append(("--model-ema-steps", "1"))
        args.append(("--model-ema-decay", repr(d)))
        log.approx_note(
            f"ema: --model-ema-decay {d!r} is torchvision's rescaled form of the per-step decay "
            f"{ema['decay']} (one GPU, batch {b.batch_size}, {b.epochs} epochs, update "
            "every step)."
        )


def _parser() -> argparse.ArgumentParser:
    """The options of torchvision's train.py that the export writes (same dests and defaults)."""
    p = argparse.ArgumentParser(prog="train.py", add_help=False)
    for flag, default, typ in (
        ("--data-path", "", str),
        ("--model", "resnet18", str),
        ("--epochs", 90, int),
        ("--opt", "sgd", str),
        ("--lr", 0.1, float),
        ("--momentum", 0.9, float),
        ("--norm-weight-decay", None, float),
        ("--bias-weight-decay", None, float),
        ("--mixup-alpha", 0.0, float),
        ("--cutmix-alpha", 0.0, float),
        ("--lr-scheduler", "steplr", str),
        ("--lr-warmup-epochs", 0, int),
        ("--lr-warmup-method", "constant", str),
        ("--lr-warmup-decay", 0.01, float),
        ("--lr-step-size", 30, int),
        ("--lr-gamma", 0.1, float),
        ("--lr-min", 0.0, float),
        ("--auto-augment", None, str),
        ("--ra-magnitude", 9, int),
        ("--augmix-severity", 3, int),
        ("--random-erase", 0.0, float),
        ("--model-ema-steps", 32, int),
        ("--model-ema-decay", 0.99998, float),
        ("--clip-grad-norm", None, float),
    ):
        p.add_argument(flag, default=default, type=typ)
    p.add_argument("-b", "--batch-size", default=32, type=int)
    p.add_argument("--wd", "--weight-decay", default=1e-4, type=float, dest="weight_decay")
    p.add_argument("--label-smoothing", default=0.0, type=float, dest="label_smoothing")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--model-ema", action="store_true")
    return p


def parse_torchvision_command(text: str) -> dict[str, Any]:
    """Parse a command written by :func:`export_torchvision` into its options.

    Comment lines are skipped and line continuations joined; the words after ``train.py`` are
    parsed with the same option names, types and defaults as torchvision's script.
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    words = shlex.split("\n".join(lines).replace("\\\n", " "))
    try:
        start = next(i for i, w in enumerate(words) if w.endswith("train.py")) + 1
    except StopIteration:
        raise ConfigError("torchvision command: no `train.py` in the text.") from None
    return vars(_parser().parse_args(words[start:]))
