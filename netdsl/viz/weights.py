"""Reading trained weights for heat maps: a raw ``state_dict`` or a training checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Prefixes that wrappers put in front of the spec's own names (DataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def load_weights(path: str | Path) -> dict[str, np.ndarray]:
    """``name -> array`` of every ``*.weight`` tensor in a checkpoint file.

    Accepts a state_dict or a dict holding it under ``"model"``; loads with
    ``weights_only=True``, so a checkpoint can never run code.
    """
    import torch

    from ..backends.torch.state_dict_file import read_state_dict

    out = {}
    for key, value in read_state_dict(path).items():
        if not key.endswith(".weight"):
            continue
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value.detach().to("cpu", torch.float64).numpy()
    return out
