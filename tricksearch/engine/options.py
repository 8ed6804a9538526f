"""Engine options: how :func:`~tricksearch.engine.fit` runs on its device — not tricks.

They live in the recipe's ``runtime`` section (:class:`tricksearch.recipe.RuntimeSection`), are
written to the file only when set, and are applied here:

- ``channels_last``: the model (and the EMA copy, the teacher) and every 4-D image batch in
  ``torch.channels_last`` memory format (NHWC: faster convolutions on tensor cores); other data
  kinds are left as they are. Same numbers up to float rounding.
- ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` (cuDNN times its algorithms for each
  new shape and keeps the fastest; the numbers may then differ from run to run on a GPU).
- ``tf32``: TF32 for fp32 matmuls and convolutions (``fp32_precision = "tf32"``).
- ``compile``: ``torch.compile(model, mode=…)`` for the training forward pass only; the eager
  module keeps the weights, so state dicts (capture/resume, EMA, the saved model) have no
  ``_orig_mod.`` prefix, and evaluation, the adversarial attack and the semi-supervised
  trainers run eagerly.
- ``eval_bf16``: evaluation's forward passes under bf16 autocast (the softmax and the loss stay
  in fp32); the training step is untouched.

``cudnn_benchmark`` and ``tf32`` are CUDA settings: on a CPU they do nothing (no error). They are
process-wide in torch, so :func:`device_settings` sets them for one ``fit`` and puts the old
values back. All options are off by default: the issue asks for defaults measured on a GPU,
which this code has not yet run on; on the CPU (2 cores, cnn-small) ``compile`` did not pay off
(see ``benchmarks/engine_throughput.py`` and the README's performance notes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from tricksearch.recipe import RuntimeSection

__all__ = ["COMPILE_MODES", "EngineOptions", "attach", "device_settings"]

#: The ``runtime.compile`` modes (``torch.compile``'s); null: eager.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class EngineOptions:
    """What the batches and the evaluation need to know of ``runtime`` (no options: identity)."""

    channels_last: bool = False
    eval_bf16: bool = False

    @classmethod
    def of(cls, runtime: RuntimeSection | None) -> EngineOptions:
        if runtime is None:
            return cls()
        return cls(channels_last=bool(runtime.channels_last), eval_bf16=bool(runtime.eval_bf16))

    def batch(self, x: Tensor) -> Tensor:
        """``x`` in the model's memory format (channels-last for a 4-D batch when on)."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def eval_autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast for evaluation when ``eval_bf16``, else nothing."""
        if not self.eval_bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)


def to_channels_last(*modules: nn.Module | None) -> None:
    """Every 4-D parameter and buffer of ``modules`` in channels-last format (in place: the
    optimizer keeps its parameters)."""
    for module in modules:
        if module is not None:
            module.to(memory_format=torch.channels_last)


def attach(run: Any, runtime: RuntimeSection) -> None:
    """Apply ``runtime``'s options to a prepared run (``fit._Run``, after the data-parallel
    wrapper): memory format, the compiled training forward, the batch/evaluation options."""
    run.options = EngineOptions.of(runtime)
    if runtime.channels_last:
        to_channels_last(run.net, run.parts.ema, run.teacher)
    if runtime.compile is not None:
        run.forward = torch.compile(run.dist.train_net(run.net), mode=runtime.compile)


def _tf32_flags() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, value for tf32) of torch's TF32 switches (new API when there is one)."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(getattr(conv, "conv", None), "fp32_precision"):
        return [(matmul, "fp32_precision", "tf32"), (conv.conv, "fp32_precision", "tf32")]
    return [(matmul, "allow_tf32", True), (conv, "allow_tf32", True)]


@contextlib.contextmanager
def device_settings(runtime: RuntimeSection, device: torch.device) -> Iterator[None]:
    """``cudnn_benchmark`` and ``tf32`` for one training on a CUDA device; the process's
    settings are restored afterwards. On a CPU: nothing."""
    changes: list[tuple[Any, str, Any]] = []
    if device.type == "cuda":
        if runtime.cudnn_benchmark:
            changes.append((torch.backends.cudnn, "benchmark", True))
        if runtime.tf32:
            changes.extend(_tf32_flags())
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in changes]
    for owner, name, value in changes:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)


#: ``forward(x)`` of the training step: the (compiled, data-parallel) model.
Forward = Callable[[Tensor], Tensor]
