"""Export a recipe as the ``args.yaml`` of timm's ``train.py`` (``--config args.yaml``).

Keys are the ``dest`` names of timm's ``train.py`` argparse, checked against timm 1.0's script
(timm is not a dependency). One function per trick family writes what timm can take; every trick
it does not consume is listed as unsupported by :class:`ExportLog` (``_WHY_NOT`` only gives better
reasons for some). An inexpressible member of an exclusive group (an optimizer, an LR decay) is
replaced by the group's default (SGD, constant LR), and the note says so. timm's own default
random-resized crop and colour jitter, which the recipe does not use, are switched off.
"""

from __future__ import annotations

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

__all__ = ["export_timm", "parse_timm_args"]

#: timm's train.py builds Lookahead(optimizer) with these fixed values.
_LOOKAHEAD = {"k": 6, "alpha": 0.5}

#: Better reasons than "no equivalent" for tricks timm's train.py does not take (optional: a
#: trick missing here is reported all the same).
_WHY_NOT = {
    "adabound": "timm has no AdaBound",
    "focal": "no focal loss in timm's train.py",
    "flooding": "no flooding in timm's train.py",
    "distillation": "timm's train.py trains without a teacher (see timm's distill script)",
    "bias_prior": "timm's train.py has no class-prior bias initialisation",
    "ricap": "timm has no RICAP",
    "random_crop": "timm's train transform has no pad-and-crop (it uses random-resized crop)",
    "cutout": "timm's train.py has no cutout (random erasing is the nearest)",
    "multiscale": "timm's train.py trains at one input size",
    "trivialaugment": "timm has no TrivialAugment policy",
    "zero_gamma": "not a train.py option (timm's ResNets zero-init the last BN γ by default)",
    "group_norm": "not a train.py option; pick a timm model built with GroupNorm",
    "activation": "not a train.py option; pass model kwargs (act_layer) yourself",
    "resnet_variant": "not a train.py option; pick the timm model (e.g. resnet50d)",
    "adversarial": "timm's train.py has no adversarial training",
}


@dataclass
class _Ctx:
    """What the family writers share: the recipe, the log, the args being written."""

    recipe: Recipe
    log: ExportLog
    args: dict[str, Any]
    peak: float
    warm_epochs: int
    warm: dict[str, Any] | None


def export_timm(recipe: Recipe) -> ExportResult:
    """The recipe as timm ``args.yaml``, with a comment block of what it could not express."""
    import yaml

    log = ExportLog("timm's train.py", recipe)
    args: dict[str, Any] = {"model": model_name(recipe, log, "timm")}
    data_note(recipe, log, "timm")
    warm_epochs, warm = warmup_epochs(log, recipe, "timm")
    if warm is not None and warm["kind"] != "linear":
        log.cannot(
            "warmup", f"kind={warm['kind']!r}; timm's warmup is linear only (no warmup is written)"
        )
        warm_epochs, warm = 0, None
    ctx = _Ctx(recipe, log, args, peak_lr(recipe), warm_epochs, warm)
    for write in (_budget, _optimizer, _schedule, _loss, _mixing, _augment, _tweaks, _procedure):
        write(ctx)
    args["seed"] = recipe.budget.seed
    log.report_unconsumed(_WHY_NOT)
    body = yaml.safe_dump(args, sort_keys=False, default_flow_style=None)
    head = log.header("timm train.py config: python train.py /path/to/data --config args.yaml")
    return log.result("\n".join(head) + "\n" + body, "timm")


def parse_timm_args(text: str) -> dict[str, Any]:
    """Read a timm ``args.yaml`` (as :func:`export_timm` writes it) back into a mapping."""
    import yaml

    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigError(f"timm args: got {type(raw).__name__}, expected a YAML mapping.")
    return raw


def _budget(ctx: _Ctx) -> None:
    b, args = ctx.recipe.budget, ctx.args
    args["epochs"] = b.epochs
    args["batch_size"] = b.batch_size
    scaling = ctx.log.take("lr_scaling")
    if scaling is None:
        args["lr"] = num(b.lr)
        return
    args["lr_base"] = num(b.lr)
    args["lr_base_size"] = scaling["reference_batch"]
    args["lr_base_scale"] = scaling["rule"]
    ctx.log.approx_note(
        "lr_scaling: timm scales lr_base by its global batch (batch_size × GPUs × grad "
        "accumulation); the recipe by batch_size."
    )


def _optimizer(ctx: _Ctx) -> None:
    log, args = ctx.log, ctx.args
    opt, params = group_member(log, "optimizer", "optimizer")
    if opt not in ("sgd", "adamw", "radam"):
        why = _WHY_NOT.get(opt, f"timm has no {opt}")
        log.cannot(opt, f"{why}; the file uses timm's SGD with momentum 0.9 instead")
        opt, params = "sgd", {"momentum": 0.9, "nesterov": False}
    if opt == "sgd":  # timm's "sgd" is Nesterov SGD; "momentum" is plain momentum SGD.
        name = "nesterov" if params.get("nesterov") else "momentum"
        args["momentum"] = num(params["momentum"])
    else:
        name = opt
        args["opt_betas"] = [num(params["beta1"]), num(params["beta2"])]
    lookahead = log.take("lookahead")
    if lookahead is not None:
        name = f"lookahead_{name}"
        for key, fixed in _LOOKAHEAD.items():
            if lookahead[key] != fixed:
                log.cannot(
                    f"lookahead.{key}",
                    f"{lookahead[key]} in the recipe; timm's train.py builds Lookahead with "
                    f"{key}={fixed} (the file uses that)",
                )
    args["opt"] = name
    _decay_and_clipping(ctx)


def _decay_and_clipping(ctx: _Ctx) -> None:
    log, args = ctx.log, ctx.args
    wd = log.take("weight_decay")
    args["weight_decay"] = num(wd["value"] if wd is not None else 0.0)
    if log.take("no_bias_decay") is not None:
        log.approx_note(
            "no_bias_decay: timm's train.py exempts biases and norm weights from "
            "weight decay by default; nothing to write."
        )
    elif wd is not None:
        log.approx_note(
            "weight decay: timm's train.py never decays biases and norm weights (as if "
            "no_bias_decay were on); the recipe decays them."
        )
    clip = log.take("grad_clip")
    if clip is not None:
        args["clip_grad"] = num(clip["max_norm"])
        args["clip_mode"] = "norm"


def _schedule(ctx: _Ctx) -> None:
    """The decay starts where the warmup ends (warmup_prefix), stepped per update."""
    decay, params = group_member(ctx.log, "schedule", "decay")
    args = ctx.args
    args["sched_on_updates"] = True
    args["warmup_prefix"] = True
    args["cooldown_epochs"] = 0
    write = _DECAYS.get(decay)
    if write is None:
        ctx.log.cannot(
            decay, "timm's train.py has no such schedule; the file keeps the LR constant"
        )
        write, params = _DECAYS["constant"], {}
    write(ctx, params, ctx.recipe.budget.epochs - ctx.warm_epochs)
    args["warmup_epochs"] = ctx.warm_epochs
    args["warmup_lr"] = num(ctx.warm["start_factor"] * ctx.peak) if ctx.warm is not None else 0.0


def _constant(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    ctx.args["sched"] = "constant"


def _cosine(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    ctx.args["sched"] = "cosine"
    _floor_and_epochs(ctx, params, decay_epochs)


def _linear(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    ctx.args["sched"] = "poly"
    ctx.args["decay_rate"] = 1.0  # poly with power 1 is a linear decay
    _floor_and_epochs(ctx, params, decay_epochs)


def _floor_and_epochs(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    ctx.args["min_lr"] = num(params["min_lr_factor"] * ctx.peak)
    # cosine/poly train warmup + `epochs`: give them the epochs after the warmup.
    ctx.args["epochs"] = decay_epochs
    if ctx.warm_epochs:
        ctx.log.approx_note(
            f"epochs is {decay_epochs} = {ctx.recipe.budget.epochs} − {ctx.warm_epochs} warmup "
            "epochs: with warmup_prefix timm's cosine/poly schedules train warmup + epochs."
        )


def _restarts(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    t0, t_mult = params["t0_epochs"], params["t_mult"]
    cycles, used, length = 0, 0, t0
    while used + length <= decay_epochs:
        used += length
        cycles += 1
        length *= t_mult
    cycles = max(cycles, 1)
    ctx.args.update(
        {
            "sched": "cosine",
            "epochs": t0,
            "lr_cycle_mul": float(t_mult),
            "lr_cycle_limit": cycles,
            "lr_cycle_decay": 1.0,
            "min_lr": num(params["min_lr_factor"] * ctx.peak),
        }
    )
    if used < decay_epochs:
        ctx.args["cooldown_epochs"] = decay_epochs - used
        ctx.log.approx_note(
            f"cosine_restarts: {cycles} whole cycle(s) fit in {decay_epochs} epochs; timm "
            f"holds min_lr for the last {decay_epochs - used} (tricksearch starts another cycle)."
        )
    if params.get("snapshot_ensemble"):
        ctx.log.cannot(
            "cosine_restarts.snapshot_ensemble",
            "timm's train.py has no snapshot ensemble of the cycle ends",
        )


def _step(ctx: _Ctx, params: dict[str, Any], decay_epochs: int) -> None:
    every = params["every_fraction"] * decay_epochs
    ctx.args.update(
        {"sched": "step", "decay_epochs": num(every), "decay_rate": num(params["gamma"])}
    )
    ctx.log.approx_note("step: tricksearch rounds the step period to whole optimizer steps.")


#: timm's writer of each LR decay the recipe may name; a decay missing here is reported.
_DECAYS: dict[str, Callable[[_Ctx, dict[str, Any], int], None]] = {
    "constant": _constant,
    "step": _step,
    "linear": _linear,
    "cosine": _cosine,
    "cosine_restarts": _restarts,
}


def _loss(ctx: _Ctx) -> None:
    smoothing = ctx.log.take("label_smoothing")
    ctx.args["smoothing"] = num(smoothing["epsilon"] if smoothing is not None else 0.0)


def _mixing(ctx: _Ctx) -> None:
    args = ctx.args
    mix, cut = ctx.log.take("mixup"), ctx.log.take("cutmix")
    args["mixup"] = num(mix["alpha"]) if mix else 0.0
    args["cutmix"] = num(cut["alpha"]) if cut else 0.0
    if mix and cut:
        p1, p2 = float(mix["prob"]), float(cut["prob"])
        # tricksearch: pick one of the two uniformly, then apply it with its own prob.
        args["mixup_prob"] = num((p1 + p2) / 2)
        args["mixup_switch_prob"] = num(p2 / (p1 + p2)) if p1 + p2 > 0 else 0.5
    elif mix or cut:
        args["mixup_prob"] = num((mix or cut)["prob"])
    if mix or cut:
        args["mixup_mode"] = "batch"


def _augment(ctx: _Ctx) -> None:
    """timm's train transform adds a random-resized crop and colour jitter the recipe does not
    have: make the crop take the whole image and the jitter nothing."""
    log, args = ctx.log, ctx.args
    args["scale"] = [1.0, 1.0]
    args["ratio"] = [1.0, 1.0]
    args["color_jitter"] = 0.0
    log.approx_note(
        "scale/ratio [1, 1] and color_jitter 0 switch off timm's default "
        "random-resized crop and colour jitter, which the recipe does not use."
    )
    args["hflip"] = 0.5 if log.take("hflip") is not None else 0.0
    erasing = log.take("random_erasing")
    args["reprob"] = num(erasing["prob"]) if erasing is not None else 0.0
    if erasing is not None:
        args["remode"] = "const"
    _policy(ctx)


def _policy(ctx: _Ctx) -> None:
    log, args = ctx.log, ctx.args
    auto = log.take("autoaugment")
    if auto is not None and auto["policy"] == "imagenet":
        args["aa"] = "original"
    elif auto is not None:
        log.cannot(
            "autoaugment", f"policy={auto['policy']!r}; timm has only ImageNet AutoAugment policies"
        )
    randaugment = log.take("randaugment")
    if randaugment is not None:
        m = randaugment["magnitude"]
        m_timm = max(0, min(10, round(m / 3)))
        args["aa"] = f"rand-m{m_timm}-n{randaugment['num_ops']}-p1.0"
        log.approx_note(
            f"randaugment: magnitude {m} of 30 (torchvision's scale) written as m{m_timm} of 10 "
            "(timm's); timm's op set differs slightly."
        )
    if log.take("augmix") is not None:
        args["aa"] = "augmix-m3-w3"  # torchvision's AugMix defaults: severity 3, width 3


def _tweaks(ctx: _Ctx) -> None:
    dropout = ctx.log.take("dropout")
    ctx.args["drop"] = num(dropout["p"]) if dropout is not None else 0.0


def _procedure(ctx: _Ctx) -> None:
    log, args = ctx.log, ctx.args
    precision = log.take("low_precision")
    if precision is not None:
        args["amp"] = True
        args["amp_dtype"] = "bfloat16" if precision["dtype"] == "bf16" else "float16"
    ema = log.take("ema")
    if ema is not None:
        args["model_ema"] = True
        args["model_ema_decay"] = num(ema["decay"])
