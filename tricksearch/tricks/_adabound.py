"""AdaBound: Adam whose per-element step size is clipped into bounds that close on SGD's rate.

Luo, Xiong, Liu & Sun 2019, "Adaptive Gradient Methods with Dynamic Bound of Learning Rate"
(ICLR). Follows the reference implementation (github.com/Luolc/AdaBound, ``adabound.py``): the
bounds at step t are ``final_lr * (1 - 1/(gamma*t + 1))`` and ``final_lr * (1 + 1/(gamma*t))``,
``final_lr`` is scaled by ``lr / initial_lr`` so that an LR schedule moves the bounds too, and
weight decay is L2 added to the gradient. No maintained package ships it, hence this copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["AdaBound", "adabound_bounds"]


def adabound_bounds(final_lr: float, gamma: float, step: int) -> tuple[float, float]:
    """(lower, upper) bound of the per-element step size at step ``step`` (1-based).

    Both tend to ``final_lr`` as ``step`` grows: the lower one from 0, the upper one from +inf.
    """
    lower = final_lr * (1.0 - 1.0 / (gamma * step + 1.0))
    upper = final_lr * (1.0 + 1.0 / (gamma * step))
    return lower, upper


class AdaBound(torch.optim.Optimizer):
    """AdaBound (Luo et al. 2019), without the AMSBound variant.

    Each group remembers its LR at construction as ``initial_lr_adabound``; the bound target used at
    a step is ``final_lr * lr / initial_lr_adabound``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        final_lr: float = 0.1,
        gamma: float = 1e-3,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check_args(lr, betas, final_lr, gamma, eps, weight_decay)
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "final_lr": final_lr,
            "gamma": gamma,
            "eps": eps,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("initial_lr_adabound", group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One AdaBound step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if p.grad.is_sparse:
            raise RuntimeError("AdaBound does not support sparse gradients.")
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"]
        beta1, beta2 = group["betas"]
        grad = p.grad
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().add_(group["eps"])
        step_size = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
        final_lr = group["final_lr"] * group["lr"] / group["initial_lr_adabound"]
        lower, upper = adabound_bounds(final_lr, group["gamma"], t)
        rate = torch.full_like(denom, step_size).div_(denom).clamp_(lower, upper)
        p.sub_(rate.mul_(exp_avg))


def _check_args(
    lr: float,
    betas: tuple[float, float],
    final_lr: float,
    gamma: float,
    eps: float,
    weight_decay: float,
) -> None:
    checks = (
        (lr > 0, "0 < lr", lr),
        (len(betas) == 2 and all(0 <= b < 1 for b in betas), "0 <= betas < 1", betas),
        (final_lr > 0, "0 < final_lr", final_lr),
        (0 < gamma < 1, "0 < gamma < 1", gamma),
        (eps >= 0, "0 <= eps", eps),
        (weight_decay >= 0, "0 <= weight_decay", weight_decay),
    )
    for ok, rule, value in checks:
        if not ok:
            raise ValueError(f"AdaBound: `{rule}` must hold, but got {value!r}.")
