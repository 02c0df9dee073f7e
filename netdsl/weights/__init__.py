"""Weights in and out: published state_dicts (torchvision, pytorchcv) mapped onto netdsl models
by structure, and netdsl weights exported in those layouts (docs/weights.md)."""

from .layouts import LAYOUTS
from .transfer import export_weights, load_weights, read_weights, remember_graph

__all__ = ["LAYOUTS", "export_weights", "load_weights", "read_weights", "remember_graph"]
