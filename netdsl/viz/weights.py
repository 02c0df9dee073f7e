"""Reading trained weights for heat maps: a raw ``state_dict`` or a training checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import NetdslError

# Prefixes that wrappers put in front of the spec's own names (DataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """``name -> array`` of every ``*.weight`` tensor in a checkpoint file.

    Accepts a state_dict or a dict holding it under ``"model"``; loads with
    ``weights_only=True``, so a checkpoint can never run code.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise NetdslError(f"no checkpoint file '{path}'", None)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors for foreign files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetdslError(f"cannot read '{path}' as a torch checkpoint: {first}", None,
                          "give a file written by torch.save(model.state_dict(), ...)") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not any(torch.is_tensor(v) for v in obj.values()):
        raise NetdslError(f"'{path}' holds no state_dict", None,
                          "expected a state_dict, or a checkpoint dict with the state_dict under 'model'")
    out = {}
    for key, value in obj.items():
        if not (torch.is_tensor(value) and key.endswith(".weight")):
            continue
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value.detach().to("cpu", torch.float64).numpy()
    return out
