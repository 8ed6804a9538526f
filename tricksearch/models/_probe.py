"""Which builder options a model takes, found by building it (nothing is trained).

A search leaves out the tricks a model cannot take: torchvision models have no ResNet
``variant``, a user's callable may take no option at all. The caller says what to try, as plain
dicts (``tricksearch.models`` knows no trick): for each builder option, the options to build
with for each value a search may give it. :func:`probe_model` answers

- ``model_options``: the options the model builds with (tried on the first entry of each);
- ``norm_groups``: the GroupNorm group counts that divide every GroupNorm layer of every model a
  trial may build (each value of each option taken: a ResNet-C stem is narrower), or None when
  the model takes no GroupNorm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from tricksearch.models._registry import build_model, check_model_kind

__all__ = ["probe_model"]

Options = Mapping[str, Any]


def probe_model(
    model: str | Callable[..., nn.Module],
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int] | int,
    base_options: Options,
    probes: Mapping[str, Sequence[Options]],
    kind: str | None = None,
) -> dict[str, Any]:
    """``{"model_options": (...), "norm_groups": (...) or None}`` of ``model`` (see the module
    docstring). ``base_options``: what every build gets (the recipe's own options); ``probes``:
    ``{option: [builder options for each value a search may give it, the first one tried]}``,
    e.g. ``{"variant": [{"variant": "d"}, {"variant": "b"}, {"variant": "c"}]}``. ``kind``: the
    data kind (``DatasetSplits.kind``); a registry model made for another kind is refused with
    ``build_model``'s ``ConfigError`` before anything is probed."""
    check_model_kind(model, kind)

    def build(extra: Options) -> nn.Module:
        return build_model(
            model,
            in_channels=in_channels,
            num_classes=num_classes,
            image_size=image_size,
            options={**base_options, **extra},
        )

    accepted = {
        option: values
        for option, values in probes.items()
        if values and _builds(build, _any_width(values[0]))
    }
    return {"model_options": tuple(accepted), "norm_groups": _norm_groups(build, accepted)}


def _builds(build: Callable[[Options], nn.Module], options: Options) -> bool:
    try:
        build(options)
    except Exception:  # the model has no such option (a user's callable may raise anything)
        return False
    return True


# --- GroupNorm: the one option whose validity depends on the layers' widths ---------------------
# A group count must divide the channels of every GroupNorm layer, and which counts do depends on
# the model and on the other options (ResNet-C's stem is narrower). So the probe asks "does the
# model take GroupNorm at all?" with one group (which divides every width), and the allowed
# counts are computed from the widths of every model a trial may build. The names here are the
# builders' own options: ``norm="group"`` with ``norm_groups`` (see ``models/_layers.py``).


def _is_group_norm(options: Options) -> bool:
    return options.get("norm") == "group"


def _any_width(options: Options) -> Options:
    """``options`` with GroupNorm's group count set to 1, which divides every width."""
    return {**options, "norm_groups": 1} if _is_group_norm(options) else options


def _norm_groups(
    build: Callable[[Options], nn.Module], accepted: Mapping[str, Sequence[Options]]
) -> tuple[int, ...] | None:
    """The group counts that divide the channels of every GroupNorm layer, over GroupNorm built
    alone and with each value of each other accepted option; None without GroupNorm."""
    group_norm = next(
        (_any_width(v) for values in accepted.values() for v in values if _is_group_norm(v)), None
    )
    if group_norm is None:
        return None
    others: list[Options] = []
    for values in accepted.values():
        others += [v for v in values if "norm" not in v and v not in others]  # norm: built above
    channels: list[int] = []
    for extra in [{}, *others]:
        try:
            net = build({**group_norm, **extra})
        except Exception:  # this pairing fails anyway, whatever the group count
            continue
        channels += [m.num_channels for m in net.modules() if isinstance(m, nn.GroupNorm)]
    if not channels:
        return None
    common = math.gcd(*channels)
    return tuple(d for d in range(1, common + 1) if common % d == 0)
