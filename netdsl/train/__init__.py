"""Training and evaluation of compiled networks: data, the seed papers' recipes, checkpoints, DDP.

``netdsl train`` and ``netdsl eval`` are thin wrappers over :func:`train` and :func:`evaluate`.
Importing this package imports neither torch nor Lightning Fabric (the CLI registers its
options from here at every start-up); the names below load their modules on first use.
"""

import importlib

_LAZY = {
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_data": "data",
    "TrainConfig": "config",
    "TrainingInterrupted": "loop",
    "evaluate": "loop",
    "train": "trainer",
    "load_recipe": "recipe",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TrainConfig",
    "TrainingInterrupted",
    "evaluate",
    "load_checkpoint",
    "load_data",
    "load_recipe",
    "save_checkpoint",
    "train",
]
