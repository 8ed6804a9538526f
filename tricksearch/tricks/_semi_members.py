"""The members of co- and tri-training in one ``nn.Module``, and the data check of ``semi``.

:class:`Members` holds the models of a multi-model procedure; its ``forward`` is the log of the
mean of the members' softmax probabilities, so ``engine.evaluate`` (which takes a softmax of what
the model returns) scores the members' average, and the EMA copy, the snapshot ensemble, the
checkpoints of the training state and the optimizer see one model with every member's weights.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tricksearch.errors import ConfigError

if TYPE_CHECKING:
    from tricksearch.data import DatasetSplits
    from tricksearch.recipe import Recipe

__all__ = ["MEMBER_COUNTS", "Members", "attach", "check_unlabeled", "init_targets"]

#: How many members each multi-model procedure trains.
MEMBER_COUNTS: dict[str, int] = {"co_training": 2, "tri_training": 3}


class Members(nn.Module):
    """Several models as one: ``forward(x) = log(mean_i softmax(f_i(x)))`` (float32)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        probs = torch.stack([F.softmax(m(x).float(), dim=-1) for m in self.members]).mean(0)
        return probs.clamp_min(1e-12).log()


def check_unlabeled(recipe: Recipe, data: DatasetSplits) -> None:
    """Refuse a semi trick on data without an unlabelled pool (one line naming the trick)."""
    for name in recipe.semi:
        if data.unlabeled_count == 0:
            raise ConfigError(
                f"semi.{name}: needs unlabelled data, but dataset {data.name!r} has no "
                "unlabelled pool; pass --unlabeled or --labeled-fraction (or switch it off)."
            )


def _reinit(net: nn.Module, seed: int) -> nn.Module:
    """A copy of ``net`` with every ``reset_parameters`` module re-initialised under ``seed``."""
    twin = copy.deepcopy(net)
    torch.manual_seed(seed)
    for module in twin.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return twin


def attach(
    recipe: Recipe,
    net: nn.Module,
    data: DatasetSplits,
    rebuild: Callable[[Recipe], nn.Module] | None = None,
) -> nn.Module:
    """What :func:`~tricksearch.engine.fit` trains for ``recipe``: ``net`` itself, or for co-
    and tri-training the :class:`Members` of ``net`` and the recipe's model built again with seeds
    seed+1, seed+2 (``rebuild(recipe)``; a user's module instance is copied and re-initialised).
    Refuses a semi trick on data without an unlabelled pool."""
    check_unlabeled(recipe, data)
    count = next((MEMBER_COUNTS[n] for n in recipe.semi if n in MEMBER_COUNTS), 1)
    if count == 1:
        return net
    seed = recipe.budget.seed
    members = [net]
    for i in range(1, count):
        if rebuild is not None:
            budget = dataclasses.replace(recipe.budget, seed=seed + i)
            members.append(rebuild(dataclasses.replace(recipe, budget=budget)))
        else:
            members.append(_reinit(net, seed + i))
    return Members(members).to(next(net.parameters()).device)


def init_targets(model: nn.Module) -> list[nn.Module]:
    """The models the fresh-model tricks (zero-γ, class-prior bias) edit: each member."""
    return list(model.members) if isinstance(model, Members) else [model]


def member_list(model: Any) -> list[nn.Module]:
    """The members of a :class:`Members` model; refuses any other model."""
    if not isinstance(model, Members):
        raise ConfigError(
            f"semi: co- and tri-training train a Members model, got {type(model).__name__}; "
            "train through tricksearch.fit (it builds the members)."
        )
    return list(model.members)
