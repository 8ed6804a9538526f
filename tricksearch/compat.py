"""Which tricks a model can take: the model-compatibility rules, written once.

A trick declares what it needs of the model (:class:`~tricksearch.tricks.TrickSpec`:
``needs_residual``, ``model_option``, ``needs_adaptive_pool``); the model's traits say what it
has (``tricksearch.models.model_traits``: ``residual``, ``adaptive_pool``, optionally
``model_options``). A recipe refuses a trick its model cannot take (:mod:`tricksearch.recipe`);
a search leaves it out with a note (``SearchSpace.for_model``). Both ask
:func:`incompatibility`. The teacher contract is :func:`teacher_missing`.

This module sits below both ``recipe.py`` and ``spaces/`` and imports only the trick
declarations, so either can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tricksearch.tricks._base import SearchSpec, TrickSpec

__all__ = ["Incompatibility", "incompatibility", "teacher_missing"]


@dataclass(frozen=True)
class Incompatibility:
    """Why a model cannot take a trick.

    ``need`` is the trait the model lacks (``"residual"``, ``"model_option"`` or
    ``"adaptive_pool"``); ``note`` says why, for a search's note (``"<trick> left out: <note>"``);
    :meth:`refusal` says it for a recipe's error, from what the trick ``demands``, what the
    model ``lacks`` and how to ``fix`` it.
    """

    need: str
    note: str
    demands: str
    lacks: str
    fix: str

    def refusal(self, model: str) -> str:
        """The error text for a recipe whose model ``model`` cannot take the trick."""
        return f"{self.demands}, but model {model!r} {self.lacks}; {self.fix}"


def incompatibility(spec: TrickSpec, traits: Mapping[str, Any]) -> Incompatibility | None:
    """None when a model with ``traits`` can take the trick ``spec``, else why it cannot.

    ``traits["model_options"]`` (the builder options the model takes) is optional: without it,
    a trick's ``model_option`` is not checked.
    """
    if spec.needs_residual and not traits.get("residual", False):
        return Incompatibility(
            need="residual",
            note="it acts on residual blocks and the model has none.",
            demands="acts on residual blocks",
            lacks="has none",
            fix="use resnet-cifar or a torchvision ResNet, or switch the trick off.",
        )
    options = traits.get("model_options")
    if spec.model_option and options is not None and spec.model_option not in options:
        return Incompatibility(
            need="model_option",
            note=f"the model has no option {spec.model_option!r} (it cannot take this trick).",
            demands=f"sets the model option {spec.model_option!r}",
            lacks="has no such option",
            fix="switch the trick off.",
        )
    if spec.needs_adaptive_pool and not traits.get("adaptive_pool", False):
        return Incompatibility(
            need="adaptive_pool",
            note="it changes the input size and the model has a fixed input size "
            "(no adaptive pooling).",
            demands="needs a model with adaptive pooling (it changes the input size)",
            lacks="has a fixed input size",
            fix="use cnn-small, resnet-cifar or a torchvision model, or switch the trick off.",
        )
    return None


def teacher_missing(spec: TrickSpec, teacher: Any) -> bool:
    """True when ``spec`` needs a teacher and ``teacher`` (a value, or a range of choices) may be
    none."""
    if not spec.needs_teacher:
        return False
    if isinstance(teacher, SearchSpec):
        return any(c is None for c in teacher.choices or ())
    return not teacher
