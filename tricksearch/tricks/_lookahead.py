"""Lookahead: slow weights pulled toward the fast weights of any optimizer every k steps.

Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back" (NeurIPS).
The inner ("fast") optimizer takes k steps; then ``slow += alpha * (fast - slow)`` and the fast
weights restart from the slow ones. The slow weights start at the weights of the first step, so a
checkpoint loaded into the model after the optimizer was built is honoured.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["Lookahead"]


class Lookahead(torch.optim.Optimizer):
    """Wrap ``optimizer`` (Zhang et al. 2019).

    ``param_groups`` is the inner optimizer's own list, so an LR scheduler (or code that sets
    ``group["lr"]``) drives the inner optimizer. ``state`` holds the slow weights only; the inner
    optimizer's state is in ``optimizer.state``. ``state_dict()`` is the inner one plus a
    ``"lookahead"`` entry.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        _check_args(optimizer, k, alpha)
        self._ready = False
        params = [p for group in optimizer.param_groups for p in group["params"]]
        super().__init__([{"params": params}], {})  # sets up hooks; groups replaced below
        self.optimizer = optimizer
        self.k = int(k)
        self.alpha = float(alpha)
        self.param_groups = optimizer.param_groups
        self.defaults = optimizer.defaults
        self.steps = 0
        self._ready = True

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {
            **super().__getstate__(),
            "optimizer": self.optimizer,
            "k": self.k,
            "alpha": self.alpha,
            "steps": self.steps,
            "_ready": self._ready,
        }

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the inner optimizer (its slow weights start at the next step)."""
        if self._ready:
            self.optimizer.add_param_group(param_group)
        else:
            super().add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One inner step; every ``k``-th one also pulls the slow weights and resets the fast."""
        self._init_slow()
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self.steps += 1
        if self.steps % self.k == 0:
            self._sync()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        slow = {
            i: self.state[p]["slow"].clone()
            for i, p in enumerate(self._params())
            if "slow" in self.state.get(p, {})
        }
        lookahead = {"k": self.k, "alpha": self.alpha, "steps": self.steps, "slow": slow}
        return {**self.optimizer.state_dict(), "lookahead": lookahead}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        if "lookahead" not in state_dict:
            raise ValueError("Lookahead.load_state_dict: no 'lookahead' entry in the state dict.")
        inner = {key: value for key, value in state_dict.items() if key != "lookahead"}
        saved = state_dict["lookahead"]
        self.optimizer.load_state_dict(inner)
        self.k, self.alpha, self.steps = int(saved["k"]), float(saved["alpha"]), saved["steps"]
        self.state.clear()
        params = list(self._params())
        for i, tensor in saved["slow"].items():
            p = params[int(i)]
            self.state[p]["slow"] = tensor.detach().to(device=p.device, dtype=p.dtype).clone()

    def _params(self) -> Iterator[torch.Tensor]:
        for group in self.param_groups:
            yield from group["params"]

    @torch.no_grad()
    def _init_slow(self) -> None:
        for p in self._params():
            state = self.state[p]
            if "slow" not in state:
                state["slow"] = p.detach().clone()

    @torch.no_grad()
    def _sync(self) -> None:
        for p in self._params():
            slow = self.state[p]["slow"]
            slow.add_(p - slow, alpha=self.alpha)
            p.copy_(slow)


def _check_args(optimizer: Any, k: Any, alpha: Any) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"Lookahead wraps a torch.optim.Optimizer, but got {type(optimizer)}.")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"Lookahead: `k >= 1` (an integer) must hold, but got k={k!r}.")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"Lookahead: `0 < alpha <= 1` must hold, but got alpha={alpha!r}.")
