"""The maths of ``loss.bias_prior``: the classifier bias set to the log class prior at init.

b_k = log(freq_k), so that softmax(bias) is the class prior of the training set and the first
predictions are not overconfidently uniform on imbalanced data (Lin et al. 2017 §4.1; Karpathy
2019, "A Recipe for Training Neural Networks"). Kept apart from ``tricks/loss.py`` because it acts
on the model, not on the loss; declared and dispatched there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tricksearch.errors import ConfigError

__all__ = ["set_bias_prior"]


def _classifier(model: nn.Module) -> nn.Linear:
    head = getattr(model, "classifier", None)
    scope = head if isinstance(head, nn.Module) else model
    if isinstance(scope, nn.Linear):
        return scope
    linears = [m for m in scope.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"loss.bias_prior: {type(model).__name__} has no nn.Linear classifier "
            "(expected `model.classifier` or a final nn.Linear); switch bias_prior off."
        )
    return linears[-1]


def set_bias_prior(model: nn.Module, class_counts: Tensor) -> None:
    """``bias_prior``: set the classifier bias to b_k = log(freq_k), so that softmax(bias) is the
    class prior of the training set. A class with no example counts as one."""
    layer = _classifier(model)
    if layer.bias is None:
        raise ConfigError(
            f"loss.bias_prior: the classifier of {type(model).__name__} "
            f"({layer}) has no bias to initialise; switch bias_prior off or give it a bias."
        )
    if class_counts.shape != (layer.out_features,):
        raise ConfigError(
            f"loss.bias_prior: class_counts has shape {tuple(class_counts.shape)}, but the "
            f"classifier has {layer.out_features} outputs."
        )
    counts = class_counts.detach().to(torch.float64).clamp_min(1.0)
    log_freq = torch.log(counts) - math.log(float(counts.sum()))
    with torch.no_grad():
        layer.bias.copy_(log_freq.to(dtype=layer.bias.dtype, device=layer.bias.device))
