"""Model checkpoints: the trained weights plus what is needed to rebuild the model.

A checkpoint is a plain dict saved with ``torch.save`` and loaded with ``weights_only=True``::

    {"format": "tricksearch-checkpoint", "version": 1, "model": "cnn-small", "options": {...},
     "in_channels": 1, "num_classes": 10, "image_size": [8, 8], "state_dict": {...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from tricksearch.errors import ConfigError
from tricksearch.tricks._semi_members import Members

__all__ = ["load_checkpoint", "save_checkpoint"]

_FORMAT = "tricksearch-checkpoint"


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    model_name: str,
    options: dict[str, Any],
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": _FORMAT,
        "version": 1,
        "model": model_name,
        "options": dict(options),
        "in_channels": in_channels,
        "num_classes": num_classes,
        "image_size": list(image_size),
        "state_dict": state,
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved at ``path`` and load its weights (eval mode)."""
    from tricksearch.models import build_model

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint: no file at {str(path)!r}.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ConfigError(f"checkpoint {str(path)!r}: not a readable torch file ({exc}).") from None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ConfigError(
            f"checkpoint {str(path)!r}: not a tricksearch checkpoint (expected a file written by "
            "`tricksearch train --out DIR`, i.e. DIR/model.pt)."
        )
    state = payload["state_dict"]

    def one() -> nn.Module:
        return build_model(
            payload["model"],
            in_channels=payload["in_channels"],
            num_classes=payload["num_classes"],
            image_size=tuple(payload["image_size"]),
            options=payload["options"],
        )

    count = _member_count(state)
    model = one() if count == 0 else Members([one() for _ in range(count)])
    model.load_state_dict(state)
    return model.eval()


def _member_count(state: dict[str, Any]) -> int:
    """How many members a co-/tri-trained model's weights hold (``members.<i>.…`` keys); 0 for
    one model."""
    indices = {int(k.split(".")[1]) for k in state if k.startswith("members.")}
    return max(indices) + 1 if indices else 0
