"""Export a recipe to another trainer: timm's ``train.py``, torchvision's reference script, JSON.

- ``timm``: the ``args.yaml`` that ``python train.py DATA --config args.yaml`` reads (keys are the
  ``dest`` names of timm's ``train.py`` argparse, checked against timm 1.0's script; timm is not a
  dependency).
- ``torchvision``: a command line for ``references/classification/train.py`` of torchvision.
- ``json``: the recipe itself as JSON.

Neither trainer can express every trick. Every trick (or trick parameter) the target cannot
express is listed in :attr:`ExportResult.unsupported`, explained in :attr:`ExportResult.notes`
and written as a comment block at the top of the text — never dropped silently. An inexpressible
member of an exclusive group (an optimizer, an LR decay) is replaced by the group's default (SGD,
constant LR), and the note says so. Where the target's own defaults do something the recipe does
not (timm's random-resized crop and colour jitter, torchvision's random-resized crop and flip),
the export switches them off where an option exists and notes it where none does.
"""

from __future__ import annotations

import argparse
import math
import shlex
from dataclasses import dataclass, field
from typing import Any

from tricksearch.errors import ConfigError, ConfigTypeError
from tricksearch.recipe import Recipe

__all__ = [
    "TARGETS",
    "ExportResult",
    "export_recipe",
    "parse_timm_args",
    "parse_torchvision_command",
    "torchvision_ema_decay",
]

#: Export targets: name -> what it produces.
TARGETS: dict[str, str] = {
    "timm": "args.yaml for timm's train.py --config",
    "torchvision": "command line for torchvision's references/classification/train.py",
    "json": "the recipe as JSON",
}

# timm's train.py: Lookahead(optimizer) is built with these fixed values.
_TIMM_LOOKAHEAD = {"k": 6, "alpha": 0.5}
# torchvision's RandAugment in references/classification/presets.py uses the default num_ops.
_TV_RA_NUM_OPS = 2
# torch.optim.AdamW defaults, the only betas torchvision's train.py can use.
_TV_ADAMW_BETAS = (0.9, 0.999)


@dataclass
class ExportResult:
    """The exported text, the tricks it could not express, and notes on every compromise.

    ``unsupported`` holds trick names (``"flooding"``) or ``trick.param`` names
    (``"lookahead.k"``) of the recipe that the target cannot express.
    """

    text: str
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    target: str = "json"


class _Log:
    """Collects unsupported entries (with their reason) and approximation notes."""

    def __init__(
        self, target: str, recipe: Recipe | None = None, none: dict[str, str] | None = None
    ) -> None:
        """``none``: the trainer's table of tricks it has no equivalent for; those the recipe
        has are logged as unsupported at once."""
        self.target = target
        self.unsupported: list[str] = []
        self.reasons: list[str] = []
        self.approx: list[str] = []
        for name, why in (none or {}).items():
            if recipe is not None and name in recipe.tricks_on():
                self.cannot(name, why)

    def cannot(self, what: str, why: str) -> None:
        if what not in self.unsupported:
            self.unsupported.append(what)
            self.reasons.append(f"{what}: {why}")

    def approx_note(self, text: str) -> None:
        if text not in self.approx:
            self.approx.append(text)

    def header(self, title: str) -> list[str]:
        lines = [f"# {title}", "# exported by tricksearch"]
        if self.reasons:
            lines.append(f"# NOT EXPRESSED — the recipe has these, {self.target} cannot take them:")
            lines += [f"#   - {r}" for r in self.reasons]
        else:
            lines.append(f"# every trick of the recipe is expressed for {self.target}.")
        if self.approx:
            lines.append("# approximations and differences:")
            lines += [f"#   - {a}" for a in self.approx]
        return lines

    def notes(self) -> list[str]:
        return [*self.reasons, *self.approx]


def _num(value: float) -> float:
    """A float that prints short but round-trips exactly (no ``0.30000000000000004``)."""
    value = float(value)
    short = float(f"{value:.12g}")
    return short if math.isclose(short, value, rel_tol=1e-12, abs_tol=0.0) else value


def _peak_lr(recipe: Recipe) -> float:
    from tricksearch.tricks.schedule import scaled_lr

    return scaled_lr(recipe.schedule, recipe.budget.lr, recipe.budget.batch_size)


def _group_member(recipe: Recipe, family: str, group: str) -> tuple[str, dict[str, Any]]:
    """The member of an exclusive group the recipe names, or the group's default with defaults."""
    from tricksearch.tricks._base import registered_tricks

    section = recipe.section(family)
    default = None
    for name, spec in registered_tricks().items():
        if spec.family != family or spec.group != group:
            continue
        if name in section:
            return name, dict(section[name])
        if spec.required_default:
            default = (name, spec.defaults())
    if default is None:
        return "", {}
    return default


def _warmup_epochs(recipe: Recipe, log: _Log, target: str) -> tuple[int, dict[str, Any] | None]:
    """Whole warmup epochs (both trainers take an int) and the warmup parameters, if any."""
    warm = recipe.schedule.get("warmup")
    if warm is None:
        return 0, None
    epochs = min(recipe.budget.epochs, math.floor(float(warm["epochs"]) + 0.5))
    if float(warm["epochs"]) != epochs:
        log.approx_note(
            f"warmup.epochs={warm['epochs']} rounded to {epochs}: {target} takes whole epochs."
        )
    return epochs, warm


def _model_name(recipe: Recipe, log: _Log, target: str) -> str:
    name = recipe.model.name
    if name.startswith("torchvision:"):
        short = name.split(":", 1)[1]
        if target == "timm":
            log.approx_note(
                f"model {name!r} written as timm's {short!r}; timm's implementation may differ."
            )
        return short
    log.approx_note(
        f"model {name!r} is tricksearch's own; pass a {target} model of similar size instead."
    )
    if recipe.model.options:
        log.approx_note(f"model.options {recipe.model.options} have no {target} equivalent.")
    return name


def _data_note(recipe: Recipe, log: _Log, target: str) -> None:
    d = recipe.data
    log.approx_note(
        f"data: point {target} at your copy of {d.dataset!r}; tricksearch's split (val "
        f"{d.val_fraction} of train, test {d.test_fraction}, split_seed {d.split_seed}) is its own."
    )


# --------------------------------------------------------------------------------------------
# timm


#: Tricks a trainer has no equivalent for, with the reason; listed, never silently dropped.
_TIMM_NONE = {
    "focal": "no focal loss in timm's train.py",
    "flooding": "no flooding in timm's train.py",
    "distillation": "timm's train.py trains without a teacher (see timm's distill script)",
    "bias_prior": "timm's train.py has no class-prior bias initialisation",
    "ricap": "timm has no RICAP",
    "cutout": "timm's train.py has no cutout (random erasing is the nearest)",
    "multiscale": "timm's train.py trains at one input size",
    "zero_gamma": "not a train.py option (timm's ResNets zero-init the last BN γ by default)",
    "group_norm": "not a train.py option; pick a timm model built with GroupNorm",
    "activation": "not a train.py option; pass model kwargs (act_layer) yourself",
    "resnet_variant": "not a train.py option; pick the timm model (e.g. resnet50d)",
    "adversarial": "timm's train.py has no adversarial training",
}
_LOSS_TV = "torchvision's train.py uses plain (label-smoothed) cross-entropy"
_MODEL_TV = "not a train.py option (it builds the model with its defaults)"
_TORCHVISION_NONE = {
    "lookahead": "torchvision's train.py has no Lookahead",
    **dict.fromkeys(("focal", "flooding", "distillation", "bias_prior"), _LOSS_TV),
    "ricap": "torchvision's train.py has no RICAP",
    "random_crop": "train.py has no pad-and-crop (it uses random-resized crop)",
    "cutout": "train.py has no cutout (random erasing is the nearest)",
    "multiscale": "train.py trains at one crop size",
    **dict.fromkeys(
        ("dropout", "zero_gamma", "group_norm", "activation", "resnet_variant"), _MODEL_TV
    ),
    "adversarial": "train.py has no adversarial training",
}


def _timm(recipe: Recipe) -> ExportResult:
    import yaml

    log = _Log("timm's train.py", recipe, _TIMM_NONE)
    b = recipe.budget
    on = recipe.tricks_on()
    peak = _peak_lr(recipe)
    args: dict[str, Any] = {"model": _model_name(recipe, log, "timm")}
    _data_note(recipe, log, "timm")
    warm_epochs, warm = _warmup_epochs(recipe, log, "timm")
    if warm is not None and warm["kind"] != "linear":
        log.cannot(
            "warmup", f"kind={warm['kind']!r}; timm's warmup is linear only (no warmup is written)"
        )
        warm_epochs, warm = 0, None

    # Budget and learning rate.
    epochs = b.epochs
    args["epochs"] = epochs
    args["batch_size"] = b.batch_size
    scaling = recipe.schedule.get("lr_scaling")
    if scaling is not None:
        args["lr_base"] = _num(b.lr)
        args["lr_base_size"] = scaling["reference_batch"]
        args["lr_base_scale"] = scaling["rule"]
        log.approx_note(
            "lr_scaling: timm scales lr_base by its global batch (batch_size × GPUs × grad "
            "accumulation); the recipe by batch_size."
        )
    else:
        args["lr"] = _num(b.lr)

    # Optimizer.
    opt, opt_params = _group_member(recipe, "optimizer", "optimizer")
    if opt == "adabound":
        log.cannot(
            "adabound", "timm has no AdaBound; the file uses timm's SGD with momentum 0.9 instead"
        )
        opt, opt_params = "sgd", {"momentum": 0.9, "nesterov": False}
    if opt == "sgd":
        # timm's "sgd" is Nesterov SGD; "momentum" is plain momentum SGD.
        name = "nesterov" if opt_params.get("nesterov") else "momentum"
        args["momentum"] = _num(opt_params["momentum"])
    else:
        name = opt
        args["opt_betas"] = [_num(opt_params["beta1"]), _num(opt_params["beta2"])]
    if "lookahead" in on:
        name = f"lookahead_{name}"
        for key, fixed in _TIMM_LOOKAHEAD.items():
            if on["lookahead"][key] != fixed:
                log.cannot(
                    f"lookahead.{key}",
                    f"{on['lookahead'][key]} in the recipe; timm's train.py builds Lookahead with "
                    f"{key}={fixed} (the file uses that)",
                )
    args["opt"] = name
    wd = on.get("weight_decay", {}).get("value", 0.0)
    args["weight_decay"] = _num(wd)
    if "no_bias_decay" in on:
        log.approx_note(
            "no_bias_decay: timm's train.py exempts biases and norm weights from "
            "weight decay by default; nothing to write."
        )
    elif "weight_decay" in on:
        log.approx_note(
            "weight decay: timm's train.py never decays biases and norm weights (as if "
            "no_bias_decay were on); the recipe decays them."
        )
    if "grad_clip" in on:
        args["clip_grad"] = _num(on["grad_clip"]["max_norm"])
        args["clip_mode"] = "norm"

    # Schedule. The decay starts where the warmup ends (warmup_prefix), stepped per update.
    decay, dparams = _group_member(recipe, "schedule", "decay")
    args["sched_on_updates"] = True
    args["warmup_prefix"] = True
    args["cooldown_epochs"] = 0
    decay_epochs = epochs - warm_epochs
    if decay in ("cosine", "linear"):
        args["sched"] = "cosine" if decay == "cosine" else "poly"
        if decay == "linear":
            args["decay_rate"] = 1.0  # poly with power 1 is a linear decay
        args["min_lr"] = _num(dparams["min_lr_factor"] * peak)
        # cosine/poly train warmup + `epochs`: give them the epochs after the warmup.
        args["epochs"] = decay_epochs
        if warm_epochs:
            log.approx_note(
                f"epochs is {decay_epochs} = {epochs} − {warm_epochs} warmup epochs: with "
                "warmup_prefix timm's cosine/poly schedules train warmup + epochs."
            )
    elif decay == "cosine_restarts":
        t0, t_mult = dparams["t0_epochs"], dparams["t_mult"]
        cycles, used, length = 0, 0, t0
        while used + length <= decay_epochs:
            used += length
            cycles += 1
            length *= t_mult
        cycles = max(cycles, 1)
        args.update(
            {
                "sched": "cosine",
                "epochs": t0,
                "lr_cycle_mul": float(t_mult),
                "lr_cycle_limit": cycles,
                "lr_cycle_decay": 1.0,
                "min_lr": _num(dparams["min_lr_factor"] * peak),
            }
        )
        if used < decay_epochs:
            args["cooldown_epochs"] = decay_epochs - used
            log.approx_note(
                f"cosine_restarts: {cycles} whole cycle(s) fit in {decay_epochs} epochs; timm "
                f"holds min_lr for the last {decay_epochs - used} (tricksearch starts another "
                "cycle)."
            )
        if dparams.get("snapshot_ensemble"):
            log.cannot(
                "cosine_restarts.snapshot_ensemble",
                "timm's train.py has no snapshot ensemble of the cycle ends",
            )
    elif decay == "step":
        every = dparams["every_fraction"] * decay_epochs
        args.update(
            {"sched": "step", "decay_epochs": _num(every), "decay_rate": _num(dparams["gamma"])}
        )
        log.approx_note("step: tricksearch rounds the step period to whole optimizer steps.")
    else:  # constant
        args["sched"] = "constant"
    args["warmup_epochs"] = warm_epochs
    args["warmup_lr"] = _num(warm["start_factor"] * peak) if warm is not None else 0.0

    # Loss.
    args["smoothing"] = _num(on.get("label_smoothing", {}).get("epsilon", 0.0))

    # Mixing.
    mix, cut = on.get("mixup"), on.get("cutmix")
    args["mixup"] = _num(mix["alpha"]) if mix else 0.0
    args["cutmix"] = _num(cut["alpha"]) if cut else 0.0
    if mix and cut:
        p1, p2 = float(mix["prob"]), float(cut["prob"])
        # tricksearch: pick one of the two uniformly, then apply it with its own prob.
        args["mixup_prob"] = _num((p1 + p2) / 2)
        args["mixup_switch_prob"] = _num(p2 / (p1 + p2)) if p1 + p2 > 0 else 0.5
    elif mix or cut:
        args["mixup_prob"] = _num((mix or cut)["prob"])
    if mix or cut:
        args["mixup_mode"] = "batch"

    # Augmentation. timm's train transform adds a random-resized crop and colour jitter the
    # recipe does not have: make the crop take the whole image and the jitter nothing.
    args["scale"] = [1.0, 1.0]
    args["ratio"] = [1.0, 1.0]
    args["color_jitter"] = 0.0
    log.approx_note(
        "scale/ratio [1, 1] and color_jitter 0 switch off timm's default "
        "random-resized crop and colour jitter, which the recipe does not use."
    )
    args["hflip"] = 0.5 if "hflip" in on else 0.0
    if "random_crop" in on:
        log.cannot(
            "random_crop",
            "timm's train transform has no pad-and-crop (it uses random-resized crop)",
        )
    if "random_erasing" in on:
        args["reprob"] = _num(on["random_erasing"]["prob"])
        args["remode"] = "const"
    else:
        args["reprob"] = 0.0
    policy, pparams = _group_member(recipe, "augment", "policy")
    if policy == "autoaugment":
        if pparams["policy"] == "imagenet":
            args["aa"] = "original"
        else:
            log.cannot(
                "autoaugment",
                f"policy={pparams['policy']!r}; timm has only ImageNet AutoAugment policies",
            )
    elif policy == "randaugment":
        m = pparams["magnitude"]
        m_timm = max(0, min(10, round(m / 3)))
        args["aa"] = f"rand-m{m_timm}-n{pparams['num_ops']}-p1.0"
        log.approx_note(
            f"randaugment: magnitude {m} of 30 (torchvision's scale) written as m{m_timm} of 10 "
            "(timm's); timm's op set differs slightly."
        )
    elif policy == "trivialaugment":
        log.cannot("trivialaugment", "timm has no TrivialAugment policy")
    elif policy == "augmix":
        args["aa"] = "augmix-m3-w3"  # torchvision's AugMix defaults: severity 3, width 3

    # Model tweaks.
    args["drop"] = _num(on["dropout"]["p"]) if "dropout" in on else 0.0

    # Procedure.
    if "low_precision" in on:
        args["amp"] = True
        args["amp_dtype"] = "bfloat16" if on["low_precision"]["dtype"] == "bf16" else "float16"
    if "ema" in on:
        args["model_ema"] = True
        args["model_ema_decay"] = _num(on["ema"]["decay"])
    args["seed"] = b.seed

    body = yaml.safe_dump(args, sort_keys=False, default_flow_style=None)
    head = log.header("timm train.py config: python train.py /path/to/data --config args.yaml")
    return ExportResult(
        text="\n".join(head) + "\n" + body,
        unsupported=log.unsupported,
        notes=log.notes(),
        target="timm",
    )


def parse_timm_args(text: str) -> dict[str, Any]:
    """Read a timm ``args.yaml`` (as :func:`export_recipe` writes it) back into a mapping."""
    import yaml

    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ConfigError(f"timm args: got {type(raw).__name__}, expected a YAML mapping.")
    return raw


# --------------------------------------------------------------------------------------------
# torchvision


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


def _tv(recipe: Recipe) -> ExportResult:
    log = _Log("torchvision's train.py", recipe, _TORCHVISION_NONE)
    b = recipe.budget
    on = recipe.tricks_on()
    peak = _peak_lr(recipe)
    args: list[tuple[str, ...]] = [
        ("--data-path", "/path/to/imagefolder"),
        ("--model", _model_name(recipe, log, "torchvision")),
        ("--epochs", str(b.epochs)),
        ("--batch-size", str(b.batch_size)),
        ("--lr", repr(_num(peak))),
    ]
    _data_note(recipe, log, "torchvision")
    log.approx_note("--data-path: an ImageFolder tree with train/ and val/ folders.")
    if "lr_scaling" in on:
        log.approx_note(
            f"lr_scaling: folded into --lr ({_num(b.lr)} scaled for batch {b.batch_size}); "
            "rescale it if you change the batch size or the number of GPUs."
        )
    log.approx_note("torchvision steps the LR scheduler once per epoch; tricksearch every step.")

    # Optimizer.
    opt, opt_params = _group_member(recipe, "optimizer", "optimizer")
    if opt in ("radam", "adabound"):
        log.cannot(
            opt,
            "torchvision's train.py offers only SGD, RMSprop and AdamW; the command "
            "uses SGD with momentum 0.9 instead",
        )
        opt, opt_params = "sgd", {"momentum": 0.9, "nesterov": False}
    if opt == "sgd":
        args.append(("--opt", "sgd_nesterov" if opt_params.get("nesterov") else "sgd"))
        args.append(("--momentum", repr(_num(opt_params["momentum"]))))
    else:  # adamw
        args.append(("--opt", "adamw"))
        for i, key in enumerate(("beta1", "beta2")):
            if opt_params[key] != _TV_ADAMW_BETAS[i]:
                log.cannot(
                    f"adamw.{key}",
                    f"{opt_params[key]} in the recipe; train.py uses "
                    f"AdamW's default betas {_TV_ADAMW_BETAS}",
                )
    args.append(("--wd", repr(_num(on.get("weight_decay", {}).get("value", 0.0)))))
    if "no_bias_decay" in on:
        args.append(("--norm-weight-decay", "0.0"))
        args.append(("--bias-weight-decay", "0.0"))
    if "grad_clip" in on:
        args.append(("--clip-grad-norm", repr(_num(on["grad_clip"]["max_norm"]))))

    # Schedule: warmup (LinearLR/ConstantLR) then the decay, in SequentialLR.
    warm_epochs, warm = _warmup_epochs(recipe, log, "torchvision")
    decay_epochs = b.epochs - warm_epochs
    decay, dparams = _group_member(recipe, "schedule", "decay")
    if decay in ("linear", "cosine_restarts"):
        log.cannot(
            decay,
            "torchvision's train.py offers StepLR, CosineAnnealingLR and "
            "ExponentialLR; the command keeps the LR constant instead",
        )
        decay, dparams = "constant", {}
    if decay == "cosine":
        args.append(("--lr-scheduler", "cosineannealinglr"))
        args.append(("--lr-min", repr(_num(dparams["min_lr_factor"] * peak))))
    elif decay == "step":
        every = dparams["every_fraction"] * decay_epochs
        step = max(1, math.floor(every + 0.5))
        if step != every:
            log.approx_note(f"step: every {every:g} epochs rounded to {step} (--lr-step-size).")
        args.append(("--lr-scheduler", "steplr"))
        args.append(("--lr-step-size", str(step)))
        args.append(("--lr-gamma", repr(_num(dparams["gamma"]))))
    else:  # constant: a StepLR that never decays
        args.append(("--lr-scheduler", "steplr"))
        args.append(("--lr-step-size", str(max(1, b.epochs))))
        args.append(("--lr-gamma", "1.0"))
    if warm is not None and warm_epochs > 0:
        args.append(("--lr-warmup-epochs", str(warm_epochs)))
        args.append(("--lr-warmup-method", warm["kind"]))
        args.append(("--lr-warmup-decay", repr(_num(warm["start_factor"]))))

    # Loss.
    if "label_smoothing" in on:
        args.append(("--label-smoothing", repr(_num(on["label_smoothing"]["epsilon"]))))

    # Mixing: train.py applies RandomChoice([MixUp, CutMix]) to every batch.
    for name_, flag in (("mixup", "--mixup-alpha"), ("cutmix", "--cutmix-alpha")):
        if name_ in on:
            args.append((flag, repr(_num(on[name_]["alpha"]))))
            if on[name_]["prob"] != 1.0:
                log.cannot(
                    f"{name_}.prob",
                    f"{on[name_]['prob']} in the recipe; train.py mixes every batch (prob 1)",
                )

    # Augmentation.
    log.approx_note(
        "train.py always applies a random-resized crop and a horizontal flip "
        "(no option switches them off)"
        + ("" if "hflip" in on else "; the recipe does not flip")
        + "."
    )
    if "random_erasing" in on:
        args.append(("--random-erase", repr(_num(on["random_erasing"]["prob"]))))
    policy, pparams = _group_member(recipe, "augment", "policy")
    if policy == "autoaugment":
        args.append(("--auto-augment", pparams["policy"]))
    elif policy == "randaugment":
        args.append(("--auto-augment", "ra"))
        args.append(("--ra-magnitude", str(pparams["magnitude"])))
        if pparams["num_ops"] != _TV_RA_NUM_OPS:
            log.cannot(
                "randaugment.num_ops",
                f"{pparams['num_ops']} in the recipe; train.py "
                f"uses RandAugment's default {_TV_RA_NUM_OPS}",
            )
    elif policy == "trivialaugment":
        args.append(("--auto-augment", "ta_wide"))
    elif policy == "augmix":
        args.append(("--auto-augment", "augmix"))
        args.append(("--augmix-severity", "3"))

    # Model tweaks: none are train.py options.

    # Procedure.
    if "low_precision" in on:
        if on["low_precision"]["dtype"] == "fp16":
            args.append(("--amp",))
        else:
            log.cannot("low_precision", "dtype='bf16'; train.py's --amp is float16 autocast")
    if "ema" in on:
        d = torchvision_ema_decay(on["ema"]["decay"], epochs=b.epochs, batch_size=b.batch_size)
        args.append(("--model-ema",))
        args.append(("--model-ema-steps", "1"))
        args.append(("--model-ema-decay", repr(d)))
        log.approx_note(
            f"ema: --model-ema-decay {d!r} is torchvision's rescaled form of the per-step decay "
            f"{on['ema']['decay']} (one GPU, batch {b.batch_size}, {b.epochs} epochs, update "
            "every step)."
        )
    log.approx_note(f"seed {b.seed}: train.py has no seed option.")

    parts = [shlex.join(a) for a in args]
    command = "python train.py \\\n" + " \\\n".join(f"    {p}" for p in parts) + "\n"
    head = log.header("torchvision references/classification/train.py command")
    return ExportResult(
        text="\n".join(head) + "\n" + command,
        unsupported=log.unsupported,
        notes=log.notes(),
        target="torchvision",
    )


def _torchvision_parser() -> argparse.ArgumentParser:
    """The options of torchvision's train.py that :func:`export_recipe` writes (same dests)."""
    p = argparse.ArgumentParser(prog="train.py", add_help=False)
    p.add_argument("--data-path", default="")
    p.add_argument("--model", default="resnet18")
    p.add_argument("-b", "--batch-size", default=32, type=int)
    p.add_argument("--epochs", default=90, type=int)
    p.add_argument("--opt", default="sgd")
    p.add_argument("--lr", default=0.1, type=float)
    p.add_argument("--momentum", default=0.9, type=float)
    p.add_argument("--wd", "--weight-decay", default=1e-4, type=float, dest="weight_decay")
    p.add_argument("--norm-weight-decay", default=None, type=float)
    p.add_argument("--bias-weight-decay", default=None, type=float)
    p.add_argument("--label-smoothing", default=0.0, type=float, dest="label_smoothing")
    p.add_argument("--mixup-alpha", default=0.0, type=float)
    p.add_argument("--cutmix-alpha", default=0.0, type=float)
    p.add_argument("--lr-scheduler", default="steplr")
    p.add_argument("--lr-warmup-epochs", default=0, type=int)
    p.add_argument("--lr-warmup-method", default="constant")
    p.add_argument("--lr-warmup-decay", default=0.01, type=float)
    p.add_argument("--lr-step-size", default=30, type=int)
    p.add_argument("--lr-gamma", default=0.1, type=float)
    p.add_argument("--lr-min", default=0.0, type=float)
    p.add_argument("--auto-augment", default=None)
    p.add_argument("--ra-magnitude", default=9, type=int)
    p.add_argument("--augmix-severity", default=3, type=int)
    p.add_argument("--random-erase", default=0.0, type=float)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--model-ema", action="store_true")
    p.add_argument("--model-ema-steps", type=int, default=32)
    p.add_argument("--model-ema-decay", type=float, default=0.99998)
    p.add_argument("--clip-grad-norm", default=None, type=float)
    return p


def parse_torchvision_command(text: str) -> dict[str, Any]:
    """Parse a command written by :func:`export_recipe` (``to="torchvision"``) into its options.

    Comment lines are skipped and line continuations joined; the words after ``train.py`` are
    parsed with the same option names, types and defaults as torchvision's script.
    """
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    words = shlex.split("\n".join(lines).replace("\\\n", " "))
    try:
        start = next(i for i, w in enumerate(words) if w.endswith("train.py")) + 1
    except StopIteration:
        raise ConfigError("torchvision command: no `train.py` in the text.") from None
    return vars(_torchvision_parser().parse_args(words[start:]))


# --------------------------------------------------------------------------------------------


def export_recipe(recipe: Recipe, to: str) -> ExportResult:
    """Export ``recipe`` for another trainer; ``to`` is ``timm``, ``torchvision`` or ``json``.

    The result's ``unsupported`` lists every trick (or trick parameter) of the recipe the target
    cannot express; the text's comment block repeats them with the reason.
    """
    if not isinstance(recipe, Recipe):
        raise ConfigTypeError(f"recipe: got {type(recipe).__name__}, expected a Recipe.")
    if to == "timm":
        return _timm(recipe)
    if to == "torchvision":
        return _tv(recipe)
    if to == "json":
        return ExportResult(text=recipe.dumps("json"), target="json")
    raise ConfigError(f"to: got {to!r}, expected one of {', '.join(TARGETS)}.")
