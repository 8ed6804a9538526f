"""The maths of the ``semi`` family (formulas in :mod:`tricksearch.tricks.semi`): confident
pseudo-labels, self-training's class caps, tri-training's agreement, FixMatch's masked loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "CAP_RATIO",
    "agreement_labels",
    "class_caps",
    "confident_labels",
    "fixmatch_unlabelled_loss",
    "masked_cross_entropy",
    "select_pseudo_labels",
]

#: Self-training's per-class cap: a class keeps at most CAP_RATIO times its labelled share.
CAP_RATIO = 2.0


def confident_labels(probs: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """(ŷ = argmax p, mask = max p ≥ threshold) of class probabilities ``[N, K]``."""
    conf, labels = probs.max(dim=-1)
    return labels, conf >= threshold


def class_caps(candidates: Tensor, prior: Tensor) -> Tensor:
    """Per-class caps of self-training's class balance, from the candidate counts n ``[K]`` and
    the labelled class counts (prior, ``[K]``): cap_k = max(1, ⌊CAP_RATIO · π_k · T⌋) with
    π = prior / Σ prior and T = min over classes with n_j > 0 and π_j > 0 of n_j / π_j; 0 for a
    class without labelled examples (π_k = 0) or when no class has a candidate."""
    n = candidates.double()
    pi = prior.double() / prior.double().sum().clamp_min(1e-12)
    ok = (n > 0) & (pi > 0)
    if not ok.any():
        return torch.zeros_like(candidates, dtype=torch.long)
    total = (n[ok] / pi[ok]).min()
    caps = torch.floor(CAP_RATIO * pi * total + 1e-9).long().clamp_min(1)
    return torch.where(pi > 0, caps, torch.zeros_like(caps))


def select_pseudo_labels(
    probs: Tensor, threshold: float, *, class_balance: bool, prior: Tensor
) -> tuple[Tensor, Tensor]:
    """(indices, labels) of the pool samples self-training keeps: max p ≥ ``threshold``; with
    ``class_balance`` the ``class_caps`` most confident of each predicted class (ties: lower
    index first). Indices ascending."""
    labels, mask = confident_labels(probs, threshold)
    idx = mask.nonzero().flatten()
    if not class_balance or idx.numel() == 0:
        return idx, labels[idx]
    conf = probs.max(dim=-1).values
    k = probs.shape[-1]
    caps = class_caps(torch.bincount(labels[idx], minlength=k), prior.to(probs.device))
    keep = []
    for c in range(k):
        members = idx[labels[idx] == c]
        if members.numel() == 0 or caps[c] == 0:
            continue
        order = torch.sort(-conf[members], stable=True).indices
        keep.append(members[order[: int(caps[c])]])
    kept = torch.sort(torch.cat(keep)).values if keep else idx[:0]
    return kept, labels[kept]


def agreement_labels(probs: Tensor, threshold: float = 0.0) -> tuple[Tensor, Tensor]:
    """Tri-training's labels ``[M, N]`` and mask ``[M, N]`` from the members' probabilities
    ``[M, N, K]`` (M = 3): for member i with others j < k, mask = (ŷ_j = ŷ_k) and, when
    ``threshold`` > 0, max p_j ≥ threshold and max p_k ≥ threshold; the label is ŷ_j."""
    conf, pred = probs.max(dim=-1)
    labels, masks = [], []
    for i in range(probs.shape[0]):
        j, k = (m for m in range(probs.shape[0]) if m != i)
        mask = pred[j] == pred[k]
        if threshold > 0:
            mask = mask & (conf[j] >= threshold) & (conf[k] >= threshold)
        labels.append(pred[j])
        masks.append(mask)
    return torch.stack(labels), torch.stack(masks)


def masked_cross_entropy(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """1/N Σ mask · CE(logits, labels): the mean over every sample, masked ones count as 0."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return (ce * mask.float()).sum() / max(len(labels), 1)


def fixmatch_unlabelled_loss(
    logits_weak: Tensor, logits_strong: Tensor, threshold: float
) -> tuple[Tensor, Tensor]:
    """FixMatch's ℓ_u = 1/(μB) Σ 1[max q ≥ τ] · CE(strong, argmax q), q = softmax(weak) (no
    gradient through q); returns (ℓ_u, mask)."""
    q = F.softmax(logits_weak.detach().float(), dim=-1)
    labels, mask = confident_labels(q, threshold)
    return masked_cross_entropy(logits_strong, labels, mask), mask
