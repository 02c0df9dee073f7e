"""Reading weights saved with ``torch.save``: the one loader behind ``compile --weights`` and
``viz --weights``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ...errors import NetdslError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file: a raw state_dict, or a checkpoint holding it under ``"model"`` (a
    netdsl training checkpoint) or ``"state_dict"`` (the common convention of other tools).
    Loaded with ``weights_only=True``, so a checkpoint can never run code."""
    path = Path(path)
    if not path.is_file():
        raise NetdslError(f"no checkpoint file '{path}': not found", None)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors for a foreign file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetdslError(
            f"cannot read weights from '{path}': {first}",
            None,
            "give a file written by torch.save(model.state_dict(), path)",
        ) from None
    obj = unwrap_checkpoint(obj)
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise NetdslError(
            f"'{path}' holds no state_dict",
            None,
            "expected a state_dict or a checkpoint dict with the state_dict under 'model' or 'state_dict'",
        )
    return dict(obj)


def unwrap_checkpoint(obj):
    """The state_dict a checkpoint dict holds under ``"model"`` (netdsl's training checkpoints) or
    ``"state_dict"`` (other tools' convention); anything else as it is."""
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            return obj[wrapper]
    return obj
