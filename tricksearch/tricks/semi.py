"""Trick family ``semi``: semi-supervised training on an unlabelled pool (``data.x_unlabeled``).

One procedure at a time (exclusive group ``semi``, no default member); every trick needs an
unlabelled pool (``TrickSpec.needs_unlabeled``): training without one is a one-line
:class:`ConfigError`, a search leaves the group out with a note.

- ``self_training`` (pseudo-labelling; Lee 2013; Scudder 1965): the T training steps are cut into
  ``rounds`` + 1 equal stages; at each stage boundary the evaluated model (the EMA when on) labels
  the pool, keeping ŷ = argmax p(u) where max p(u) ≥ ``threshold``; with ``class_balance`` each
  class k keeps at most its ``cap_k`` most confident samples (:func:`class_caps`:
  cap_k = max(1, ⌊CAP_RATIO · π_k · min_{j: n_j>0} n_j/π_j⌋), π the labelled class frequencies,
  n_j the candidates predicted j: a class keeps at most twice its labelled share of the total that
  the scarcest candidate class supports). Then every step adds ``weight`` · CE(f(A(x_p)), ŷ_p)
  on a batch of pseudo-labelled samples (same batch size, the recipe's augmentation A).
- ``co_training`` (Blum & Mitchell 1998; Qiao et al. 2018): two members (the recipe's model built
  with seeds s and s+1, one :class:`~tricksearch.tricks._semi_members.Members` module), each on
  its own view (images: the weak and the strong view of ``_semi_views``; other data: the input
  and a noisy, feature-dropped copy). Per step, member i labels the unlabelled batch where
  max p_i ≥ ``threshold`` for member j ≠ i: loss = Σ_i L_sup,i + ``weight`` · Σ_j
  mean_u[m_i(u) · CE(f_j(v_j(u)), ŷ_i(u))].
- ``tri_training`` (Zhou & Li 2005): three members, each trained on its own fixed bootstrap
  sample of the labelled split (n draws with replacement, seeded by (seed, member)); an
  unlabelled sample gets label ŷ for member i when the two others agree on ŷ (and, when
  ``threshold`` > 0, both are confident ≥ threshold): :func:`agreement_labels`.
- ``fixmatch`` (Sohn et al. 2020): per step μ·B unlabelled samples; q = softmax(f(weak(u))) (no
  gradient), mask = max q ≥ τ; ℓ_u = 1/(μB) Σ mask · CE(f(strong(u)), argmax q); loss = L_sup +
  λ_u · ℓ_u (:func:`fixmatch_unlabelled_loss`). Image-only: its strong view is RandAugment-style.

Interactions (``TrickSpec.extra["labelled_only"]``): mixing (mixup/cutmix/ricap), distillation and
adversarial examples act on the labelled batch only; the pseudo-labelled terms are plain cross
entropy on hard labels (no smoothing, focal or flooding). EMA, low precision and snapshot
ensembles work with every member count (the members live in one module). Batches of the pool are
drawn from seeded permutations (seed from the recipe) indexed by the global step, so a resumed
training draws the same ones; the pseudo-label set is part of the training state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from tricksearch.tricks._base import Param, SearchSpec, TrickSpec, register
from tricksearch.tricks._section import dispatch, resolve_section
from tricksearch.tricks._semi_maths import (
    CAP_RATIO,
    agreement_labels,
    class_caps,
    confident_labels,
    fixmatch_unlabelled_loss,
    masked_cross_entropy,
    select_pseudo_labels,
)
from tricksearch.tricks._semi_step import make_trainer

__all__ = [
    "BUILDERS",
    "CAP_RATIO",
    "GROUP",
    "agreement_labels",
    "build_semi",
    "class_caps",
    "confident_labels",
    "fixmatch_unlabelled_loss",
    "masked_cross_entropy",
    "select_pseudo_labels",
]

FAMILY = "semi"
#: One semi-supervised procedure at a time.
GROUP = "semi"
#: What a semi trick applies to the labelled batch only (declared, and tested).
LABELLED_ONLY = ("mixing", "distillation", "adversarial")


def _threshold(default: float, low: float, search: tuple[float, float]) -> Param:
    return Param(
        "threshold",
        "float",
        default,
        help="confidence max softmax needed for a pseudo-label",
        low=low,
        high=0.999,
        search=SearchSpec(*search),
    )


def _weight(name: str = "weight", default: float = 0.5, search=(0.1, 1.0)) -> Param:
    return Param(
        name,
        "float",
        default,
        help="weight of the pseudo-labelled cross entropy in the loss",
        low=0.0,
        high=10.0,
        search=SearchSpec(*search),
    )


def _declare(name: str, **fields: Any) -> TrickSpec:
    return register(
        TrickSpec(
            name=name,
            family=FAMILY,
            group=GROUP,
            needs_unlabeled=True,
            extra={"labelled_only": LABELLED_ONLY},
            **fields,
        )
    )


SELF_TRAINING = _declare(
    "self_training",
    summary="rounds of pseudo-labelling the pool where confidence >= threshold (class caps)",
    params=(
        _threshold(0.9, 0.5, (0.7, 0.99)),
        Param(
            "rounds",
            "int",
            2,
            help="pseudo-labelling rounds (training cut into rounds+1 equal stages)",
            low=1,
            high=10,
            search=SearchSpec(1, 5, step=1),
        ),
        _weight(),
        Param(
            "class_balance",
            "bool",
            True,
            help="cap each class at CAP_RATIO x its labelled share (confirmation bias)",
            search=SearchSpec(choices=(True, False)),
        ),
    ),
    paper="Lee 2013, Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method",
)

CO_TRAINING = _declare(
    "co_training",
    summary="two members on two views label confident unlabelled samples for each other",
    params=(_threshold(0.9, 0.5, (0.7, 0.99)), _weight()),
    paper="Blum & Mitchell 1998, Combining Labeled and Unlabeled Data with Co-Training",
)

TRI_TRAINING = _declare(
    "tri_training",
    summary="three members on bootstrap samples; two that agree label for the third",
    params=(_threshold(0.0, 0.0, (0.0, 0.95)), _weight()),
    paper="Zhou & Li 2005, Tri-Training: Exploiting Unlabeled Data Using Three Classifiers",
)

FIXMATCH = _declare(
    "fixmatch",
    summary="pseudo-label the weak view where confident, train the strong view on it",
    data_kinds=frozenset({"image"}),
    min_image_side=4,
    params=(
        _threshold(0.95, 0.5, (0.8, 0.99)),
        _weight("lambda_u", 1.0, (0.5, 2.0)),
        Param(
            "mu",
            "int",
            7,
            help="unlabelled batch = mu x the labelled batch size",
            low=1,
            high=16,
            search=SearchSpec(1, 7, step=1),
        ),
    ),
    paper="Sohn et al. 2020, FixMatch: Simplifying Semi-Supervised Learning with Consistency "
    "and Confidence",
)


# --------------------------------------------------------------------------------------------
# Builder


def _method(name: str) -> Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]:
    return lambda params: (name, params)


#: Every semi trick and the (method, parameters) it asks the semi trainer for.
BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    name: _method(name) for name in ("self_training", "co_training", "tri_training", "fixmatch")
}


def build_semi(
    section: dict[str, dict],
    *,
    num_classes: int,
    class_counts: Tensor,
    total_steps: int,
    seed: int,
    batch_size: int,
) -> Any:
    """The semi-supervised trainer of a recipe's ``semi`` section (its ``step`` replaces the
    engine's training step), or ``None`` when no semi trick is on."""
    on = resolve_section(section, FAMILY)
    chosen = [build(params) for build, params in dispatch(on, BUILDERS, FAMILY)]
    if not chosen:
        return None
    name, params = chosen[0]
    return make_trainer(
        name,
        params,
        num_classes=num_classes,
        class_counts=class_counts,
        total_steps=total_steps,
        seed=seed,
        batch_size=batch_size,
    )
