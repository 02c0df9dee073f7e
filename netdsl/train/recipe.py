"""Training recipes: small JSON files (``netdsl/train/recipes/NAME.json`` or any path).

A recipe holds the seed papers' optimizer, schedule, augmentation and validation split; CLI
flags (``--epochs``, ``--batch-size``, ``--lr``) override single fields. Copy a bundled file
to edit it and pass its path with ``--recipe``.

>>> r = load_recipe("densenet")
>>> r.batch_size, r.optimizer["nesterov"], r.schedule
(64, True, {'kind': 'step', 'milestones': [0.5, 0.75], 'factors': [0.1, 0.01]})
>>> r.lr_factor(149, 300), r.lr_factor(150, 300), r.lr_factor(225, 300)
(1.0, 0.1, 0.01)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import NetdslError, did_you_mean
from .augment import Augment
from .names import RECIPES_DIR, available

# Which recipe a spec gets when --recipe is not given, by the network's name prefix.
DEFAULT_FOR_NETWORK = {
    "densenet": "densenet",
    "sparsenet": "sparsenet",
    "dense2net": "dense2net",
    "seq": "seqconv",
    "wseq": "seqconv",
}


class RecipeError(NetdslError):
    """A recipe file that is missing, not JSON, or has unknown or wrong fields."""


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    epochs: int = 300
    batch_size: int = 64
    optimizer: dict = field(
        default_factory=lambda: {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    )
    schedule: dict = field(default_factory=lambda: {"kind": "step", "milestones": [0.5, 0.75], "factors": [0.1, 0.01]})
    augment: dict = field(default_factory=dict)
    val_split: float = 0.1
    best: str = "val_acc"  # or "val_loss": the metric that selects best.pt
    early_stopping: dict | None = None  # {"patience": epochs without a new validation-loss minimum}
    spec_params: dict = field(default_factory=dict)  # applied where the spec declares the parameter

    def with_overrides(self, *, epochs=None, batch_size=None, lr=None) -> Recipe:
        r = self
        if epochs is not None:
            r = replace(r, epochs=epochs)
        if batch_size is not None:
            r = replace(r, batch_size=batch_size)
        if lr is not None:
            r = replace(r, optimizer={**r.optimizer, "lr": lr})
        return r

    def augmentation(self) -> Augment:
        return Augment(**{"mirror": False, "shift": 0, **self.augment})

    def lr_factor(self, epoch: int, epochs: int) -> float:
        """The step schedule's multiplier of the base lr in (0-based) ``epoch`` of ``epochs``."""
        factor = 1.0
        for m, f in zip(self.schedule["milestones"], self.schedule["factors"], strict=True):
            if epoch >= round(m * epochs):
                factor = f
        return factor

    def to_dict(self) -> dict:
        return asdict(self)


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = RECIPES_DIR / f"{name_or_path}.json"
        if not path.is_file():
            raise RecipeError(
                f"unknown recipe {str(name_or_path)!r}",
                None,
                did_you_mean(str(name_or_path), available()) or "bundled recipes: " + ", ".join(available()),
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, ValueError) as e:
        raise RecipeError(f"{path}: not a JSON recipe ({e})") from None
    return recipe_from_dict(data, path.stem, str(path))


def recipe_from_dict(data: dict, name: str, where: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: a recipe is a JSON object")
    known = set(Recipe.__dataclass_fields__)  # "name" too: a saved recipe keeps its name
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(
            f"{where}: unknown field {unknown[0]!r}",
            None,
            did_you_mean(unknown[0], known) or "fields: " + ", ".join(sorted(known)),
        )
    r = Recipe(name=data.get("name", name), **{k: v for k, v in data.items() if k != "name"})
    kind = r.schedule.get("kind")
    if kind == "step" and len(r.schedule.get("milestones", [])) != len(r.schedule.get("factors", [])):
        raise RecipeError(f"{where}: schedule needs as many 'factors' as 'milestones'")
    if kind not in ("step", "plateau"):
        raise RecipeError(f"{where}: schedule kind must be 'step' or 'plateau', got {kind!r}")
    if r.best not in ("val_acc", "val_loss"):
        raise RecipeError(f"{where}: 'best' must be 'val_acc' or 'val_loss', got {r.best!r}")
    try:
        r.augmentation()
    except TypeError as e:
        raise RecipeError(f"{where}: bad augment field ({e})") from None
    return r


def default_recipe_name(network_name: str) -> str:
    for prefix, recipe in DEFAULT_FOR_NETWORK.items():
        if network_name.startswith(prefix):
            return recipe
    return "densenet"
