"""Trick family ``procedure``: how the training step runs.

Tricks (all pure tensor maths: they work on every data kind):

- ``low_precision`` — run the forward pass under ``torch.amp.autocast`` in bf16 or fp16
  (Micikevicius et al. 2018, "Mixed Precision Training"); fp16 also gets a ``torch.amp.GradScaler``
  (loss scaling), bf16 needs none. On the CPU fp16 autocast runs in torch 2.14 but about 200×
  slower than fp32 (measured: 21 s against 0.1 s for one conv step on 2 cores), so fp16 on a CPU
  is refused with a :class:`ConfigError`; bf16 runs on the CPU (and is faster there).
- ``ema`` — evaluate an exponential moving average of the weights and buffers,
  e ← decay·e + (1 − decay)·w after every step (Polyak & Juditsky 1992; as used by Tan & Le 2019,
  "EfficientNet"); ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn``. Its
  first update copies the weights.
- ``adversarial`` — replace a fraction ``mix_ratio`` of each batch by adversarial examples: FGSM
  for ``steps`` = 1 (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial Examples"),
  PGD with a random start and step 2.5·ε/steps otherwise (Madry et al. 2018, "Towards Deep
  Learning Models Resistant to Adversarial Attacks"). ε is given on the [0, 1] input scale and
  divided by the dataset's per-channel std, because the model sees normalised inputs.

Host syncs (``engine.sync_audit``): none in the step — the adversarial subset is drawn on the
device (torch's default generator there; on the CPU the same draws as before), the std is moved
once, the EMA counts its updates on the host (:class:`DeviceEMA`). fp16's ``GradScaler`` reads
its inf/NaN flag once per step (``scaler.step`` skips the update on overflow: a host branch in
torch's design); bf16 needs no scaler and no sync.

``BUILDERS`` maps each trick to the function that adds it to a :class:`_ProcedurePlan`;
:func:`build_precision`, :func:`build_ema` and :func:`build_adversarial` read the plan.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils._foreach_utils import _group_tensors_by_device_and_dtype

from tricksearch.errors import ConfigError
from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._section import dispatch, resolve_section

__all__ = [
    "BUILDERS",
    "Adversarial",
    "DeviceEMA",
    "Precision",
    "adversarial_examples",
    "build_adversarial",
    "build_ema",
    "build_precision",
]

FAMILY = "procedure"

_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}

LOW_PRECISION = register(
    TrickSpec(
        name="low_precision",
        family=FAMILY,
        summary="autocast the forward pass to bf16 or fp16 (+ GradScaler for fp16)",
        params=(
            Param(
                "dtype",
                "choice",
                "bf16",
                help="bf16 (no loss scaling) or fp16 (with GradScaler; refused on CPU)",
                choices=("bf16", "fp16"),
                search=SearchSpec(choices=("bf16", "fp16")),
            ),
        ),
        paper="Micikevicius et al. 2018, Mixed Precision Training",
    )
)

EMA = register(
    TrickSpec(
        name="ema",
        family=FAMILY,
        summary="evaluate an exponential moving average of the weights (updated every step)",
        params=(
            Param(
                "decay",
                "float",
                0.999,
                help="e <- decay*e + (1-decay)*w per optimizer step",
                low=0.99,
                high=0.9999,
                search=SearchSpec(0.99, 0.9999),
            ),
        ),
        paper="Polyak & Juditsky 1992, Acceleration of Stochastic Approximation by Averaging",
    )
)

ADVERSARIAL = register(
    TrickSpec(
        name="adversarial",
        family=FAMILY,
        summary="replace a fraction of each batch by FGSM (steps=1) or PGD adversarial examples",
        params=(
            Param(
                "epsilon",
                "float",
                2 / 255,
                help="L-inf radius on the [0, 1] input scale (divided by the std per channel)",
                low=0.0,
                high=8 / 255,
                search=SearchSpec(0.0, 8 / 255),
            ),
            Param(
                "steps",
                "int",
                1,
                help="1 = FGSM; more = PGD with random start and step 2.5*epsilon/steps",
                low=1,
                high=3,
                search=SearchSpec(1, 3, step=1),
            ),
            Param(
                "mix_ratio",
                "float",
                0.5,
                help="fraction of the batch replaced by adversarial examples",
                low=0.0,
                high=1.0,
                search=SearchSpec(0.0, 1.0),
            ),
        ),
        paper="Goodfellow et al. 2015, Explaining and Harnessing Adversarial Examples (FGSM); "
        "Madry et al. 2018, Towards Deep Learning Models Resistant to Adversarial Attacks (PGD)",
    )
)


@dataclass
class _ProcedurePlan:
    """What the procedure tricks that are on ask for: filled by ``BUILDERS``."""

    dtype: torch.dtype | None = None
    ema_decay: float | None = None
    adversarial: dict[str, Any] | None = None


def _low_precision(plan: _ProcedurePlan, params: dict[str, Any]) -> None:
    plan.dtype = _DTYPES[params["dtype"]]


def _ema(plan: _ProcedurePlan, params: dict[str, Any]) -> None:
    plan.ema_decay = params["decay"]


def _adversarial(plan: _ProcedurePlan, params: dict[str, Any]) -> None:
    plan.adversarial = params


#: Every procedure trick and the function that adds it to the plan.
BUILDERS: dict[str, Callable[[_ProcedurePlan, dict[str, Any]], None]] = {
    "low_precision": _low_precision,
    "ema": _ema,
    "adversarial": _adversarial,
}


def _plan(section: dict[str, dict]) -> _ProcedurePlan:
    plan = _ProcedurePlan()
    for build, params in dispatch(resolve_section(section, FAMILY), BUILDERS, FAMILY):
        build(plan, params)
    return plan


# --------------------------------------------------------------------------------------------
# Low precision


def _dtype_name(dtype: torch.dtype) -> str:
    return next((k for k, v in _DTYPES.items() if v == dtype), str(dtype))


@functools.cache
def _check_precision(dtype: torch.dtype, device: str) -> None:
    # Cached: ``Precision.autocast`` checks on every training step.
    dev = torch.device(device)
    where = f"{FAMILY}.low_precision.dtype"
    name = _dtype_name(dtype)
    if not torch.amp.is_autocast_available(dev.type):
        raise ConfigError(
            f"{where}: got {name!r}, but torch has no autocast on device {dev.type!r}."
        )
    if dev.type == "cpu" and dtype == torch.float16:
        raise ConfigError(
            f"{where}: got 'fp16' on the CPU, where fp16 autocast is about 200x slower than "
            "fp32; allowed on CPU: 'bf16' (or switch low_precision off, or train on a GPU)."
        )
    if dev.type == "cuda" and dtype == torch.bfloat16:
        with torch.cuda.device(dev):
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        if not native:
            raise ConfigError(
                f"{where}: got 'bf16', but GPU {torch.cuda.get_device_name(dev)} has no native "
                "bf16; allowed here: 'fp16'."
            )


@dataclass(frozen=True)
class Precision:
    """The numeric precision of the forward pass: ``dtype`` None is plain fp32."""

    dtype: torch.dtype | None = None

    def check(self, device: torch.device | str) -> None:
        """Raise :class:`ConfigError` when ``dtype`` cannot run (usefully) on ``device``."""
        if self.dtype is not None:
            _check_precision(self.dtype, str(torch.device(device)))

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """``torch.amp.autocast(device.type, dtype)``, or a null context for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        self.check(device)
        return torch.amp.autocast(torch.device(device).type, dtype=self.dtype)

    def scaler(self, device: torch.device | str) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 (its gradients underflow without one); ``None`` otherwise."""
        if self.dtype != torch.float16:
            return None
        self.check(device)
        return torch.amp.GradScaler(torch.device(device).type)


def build_precision(
    section: dict[str, dict], *, device: torch.device | str | None = None
) -> Precision:
    """The :class:`Precision` of a recipe's ``procedure`` section (fp32 when ``low_precision`` is
    off). With ``device``, refuses at once a dtype that cannot run there (fp16 on CPU)."""
    precision = Precision(_plan(section).dtype)
    if device is not None:
        precision.check(device)
    return precision


# --------------------------------------------------------------------------------------------
# EMA of weights


def build_ema(section: dict[str, dict], model: nn.Module) -> AveragedModel | None:
    """An EMA copy of ``model`` (weights and buffers), or ``None`` when ``ema`` is off.

    Call ``ema.update_parameters(model)`` after every optimizer step; evaluate ``ema`` (its
    ``.module`` is the averaged network). The first update copies the weights, every later one
    does ``e <- decay*e + (1-decay)*w``. Integer buffers (BatchNorm's step counter) are averaged
    and truncated by torch; they play no part in the forward pass with momentum set.
    """
    decay = _plan(section).ema_decay
    if decay is None:
        return None
    return DeviceEMA(model, decay)


def _weights(model: nn.Module) -> Iterator[Tensor]:
    return itertools.chain(model.parameters(), model.buffers())


class DeviceEMA(AveragedModel):
    """torch's EMA ``AveragedModel`` whose update reads nothing back from the device.

    torch's ``update_parameters`` branches on ``n_averaged == 0`` (a device tensor: a host sync
    every step); here the branch is on ``updates``, the same count kept on the host, while the
    ``n_averaged`` buffer goes on counting on the device (the state dict is unchanged). Same
    operations, so the same numbers; ``load_state_dict`` (a resume) reads the count back once.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.updates = 0

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        mine = [p.detach() for p in _weights(self.module)]
        theirs = [p.detach().to(a.device) for p, a in zip(_weights(model), mine, strict=True)]
        if self.updates == 0:
            for a, p in zip(mine, theirs, strict=True):
                a.copy_(p)
        else:
            groups = _group_tensors_by_device_and_dtype([mine, theirs])  # type: ignore[arg-type]
            for (device, _), ([ours, model_params], _) in groups.items():
                self.multi_avg_fn(ours, model_params, self.n_averaged.to(device))  # type: ignore[misc]
        self.n_averaged += 1
        self.updates += 1

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.updates = int(self.n_averaged)  # once, on resume: not in the training step
        return out


# --------------------------------------------------------------------------------------------
# Adversarial training

LossFn = Callable[[Tensor, Tensor], Tensor]


def _input_grad(model: nn.Module, x: Tensor, target: Tensor, loss_fn: LossFn) -> Tensor:
    x = x.detach().requires_grad_(True)
    loss = loss_fn(model(x).float(), target)
    (grad,) = torch.autograd.grad(loss, x)  # only w.r.t. the input: no param .grad is touched
    return grad


def adversarial_examples(
    model: nn.Module,
    x: Tensor,
    target: Tensor,
    loss_fn: LossFn,
    *,
    epsilon: Tensor | float,
    steps: int,
) -> Tensor:
    """L∞ adversarial examples of ``x`` within ``epsilon`` (broadcastable to ``x``).

    ``steps`` = 1: FGSM, ``x + ε·sign(∇x loss)`` (Goodfellow et al. 2015). ``steps`` > 1: PGD
    from a uniform random start in the ε-ball, ``steps`` signed-gradient steps of 2.5·ε/steps,
    each projected back onto the ball (Madry et al. 2018). No clamping to the valid pixel range
    (the normalisation's mean is not known here). Uses ``model`` as it is (mode untouched).
    """
    eps = torch.as_tensor(epsilon, dtype=x.dtype, device=x.device)
    x = x.detach()
    if steps <= 1:
        return (x + eps * _input_grad(model, x, target, loss_fn).sign()).detach()
    alpha = 2.5 * eps / steps
    delta = (torch.rand_like(x) * 2 - 1) * eps
    for _ in range(steps):
        grad = _input_grad(model, x + delta, target, loss_fn)
        delta = torch.maximum(torch.minimum(delta + alpha * grad.sign(), eps), -eps)
    return (x + delta).detach()


class Adversarial:
    """The adversarial batch transform ``adv(model, x, target, loss_fn) -> x'``.

    ``x`` is the float, normalised batch ``[B, C, …]`` (images, signals or feature vectors, whose
    features are the channels); ``std`` the dataset's per-channel std (one value per channel, or
    one for all), used to turn ε on the [0, 1] scale into normalised units. ``round(mix_ratio·B)``
    random samples are replaced by their adversarial examples (computed on those samples only);
    the others are returned as they are. The attack runs with the model in eval mode (no
    BatchNorm statistics updated, no dropout noise), which is restored afterwards; gradients are
    taken w.r.t. the input only, so no ``.grad`` reaches the parameters. ``loss_fn`` is called as
    ``loss_fn(logits, target)``; ``target`` may be class indices or soft targets.
    """

    def __init__(self, epsilon: float, steps: int, mix_ratio: float, std: Tensor) -> None:
        self.epsilon, self.steps, self.mix_ratio, self.std = epsilon, steps, mix_ratio, std

    def _std_on(self, x: Tensor) -> Tensor:
        """``std`` on ``x``'s device and dtype, copied there once (not every step)."""
        if self.std.device != x.device or self.std.dtype != x.dtype:
            self.std = self.std.to(x.device, x.dtype)
        return self.std

    def __repr__(self) -> str:
        return (
            f"Adversarial(epsilon={self.epsilon}, steps={self.steps}, mix_ratio={self.mix_ratio})"
        )

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor, loss_fn: LossFn) -> Tensor:
        if x.ndim < 2:
            raise ValueError(f"expected a batch [B, C, …], got shape {tuple(x.shape)}")
        if self.std.numel() not in (1, x.shape[1]):
            raise ValueError(
                f"std has {self.std.numel()} values but the batch has {x.shape[1]} channels"
            )
        n = round(self.mix_ratio * x.shape[0])
        if n == 0 or self.epsilon == 0:
            return x
        idx = torch.randperm(x.shape[0], device=x.device)[:n]  # on the device: no copy
        per_channel = (1, -1, *([1] * (x.ndim - 2)))
        eps = (self.epsilon / self._std_on(x)).view(per_channel)
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                x_adv = adversarial_examples(
                    model, x[idx], target[idx], loss_fn, epsilon=eps, steps=self.steps
                )
        finally:
            model.train(was_training)
        out = x.detach().clone()
        out[idx] = x_adv.to(out.dtype)
        return out


def build_adversarial(section: dict[str, dict], *, std: tuple[float, ...]) -> Adversarial | None:
    """The :class:`Adversarial` transform of a ``procedure`` section, or ``None`` when it is off."""
    params = _plan(section).adversarial
    if params is None:
        return None
    return Adversarial(params["epsilon"], params["steps"], params["mix_ratio"], _check_std(std))


def _check_std(std: Sequence[float]) -> Tensor:
    try:
        values = [float(s) for s in std]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{FAMILY}.adversarial: std {std!r} is not a sequence of numbers"
        ) from exc
    if not values or any(not (s > 0) for s in values):
        raise ConfigError(
            f"{FAMILY}.adversarial: std {tuple(std)!r} must hold one positive number per channel"
        )
    return torch.tensor(values)
