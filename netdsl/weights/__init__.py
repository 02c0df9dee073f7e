"""Weights in and out: published state_dicts (torchvision, pytorchcv) mapped onto netdsl models
by structure, and netdsl weights exported in those layouts (docs/weights.md)."""

from .layouts import LAYOUTS

__all__ = ["LAYOUTS", "export_weights", "in_netdsl_layout", "load_weights", "read_weights", "remember_graph"]


def __getattr__(name: str):
    # the functions need torch; the layouts (for the CLI's choices) do not
    if name in ("export_weights", "in_netdsl_layout", "load_weights", "read_weights", "remember_graph"):
        from . import transfer

        return getattr(transfer, name)
    raise AttributeError(f"module 'netdsl.weights' has no attribute {name!r}")
