"""A state_dict seen as an ordered list of weight-bearing modules: the unit both sides of a
layout mapping are aligned by.

Keys are grouped by their module prefix (everything before the last dot), in the order the
state_dict lists them -- the order the module registers its submodules, which for netdsl's
generated modules, torchvision's and pytorchcv's is the order the layers run in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is needed only once tensors are there, not to list the layouts
    import torch

# BatchNorm's step counter: absent from old checkpoints, never part of the arithmetic.
COUNTER = "num_batches_tracked"


@dataclass
class ModuleWeights:
    """One module's tensors: ``prefix`` ("features.denseblock1.denselayer1.norm1") and its
    tensors by local name ("weight", "running_mean", ...), in state_dict order."""

    prefix: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    @property
    def kind(self) -> str:
        """What the module is, from its tensors alone: ``batchnorm``, ``conv``, ``linear`` or
        ``other`` (a module netdsl cannot tell by its tensors; it is still matched by its names)."""
        names = set(self.tensors) - {COUNTER}
        weight = self.tensors.get("weight")
        if {"running_mean", "running_var"} <= names:
            return "batchnorm"
        if weight is not None and weight.dim() == 4:
            return "conv"
        if weight is not None and weight.dim() == 2:
            return "linear"
        return "other"

    def signature(self) -> tuple[str, frozenset[str]]:
        """What must agree between two modules that are mapped onto each other."""
        return self.kind, frozenset(set(self.tensors) - {COUNTER})

    def describe(self) -> str:
        """``conv 'stem' (weight [8, 3, 3, 3])``: the kind, the prefix and the main tensor's shape."""
        main = self.tensors.get("weight")
        shape = f" (weight {list(main.shape)})" if main is not None else ""
        return f"{self.kind} '{self.prefix}'{shape}"


def strip_wrapper_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` and DDP put before every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def group(state: Mapping[str, torch.Tensor]) -> list[ModuleWeights]:
    """The modules of a state_dict in the order their first key appears."""
    modules: dict[str, ModuleWeights] = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        modules.setdefault(prefix, ModuleWeights(prefix)).tensors[name] = value
    return list(modules.values())
