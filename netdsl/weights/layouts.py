"""The layouts netdsl maps weights from and to.

A layout is the convention of one model zoo: how it orders concatenated features (the only
arithmetic difference between implementations of the same network) and how it names modules
for export. Modules are matched by position, not by name (netdsl/weights/transfer.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from ..errors import WeightsError, did_you_mean
from ..ir.graph import BlockInfo
from .modules import ModuleWeights
from .names import pytorchcv_names, torchvision_names


@dataclass(frozen=True)
class Layout:
    name: str
    # netdsl's own keys: matched by name, not by position
    by_name: bool = False
    # the blocks whose concatenations list features newest first
    newest_first: Callable[[BlockInfo], bool] = lambda block: False
    # export: the key prefix of each of netdsl's weight modules (state_dict order); None for by_name
    names: Callable[[nx.DiGraph, list[ModuleWeights]], list[str]] | None = None


def _hands_on_next(block: BlockInfo) -> bool:
    """pytorchcv's SparseNet stage keeps only what the next unit reads (netdsl's ``output=next``)
    and builds it as ``torch.cat(fetch(outs))``, where the fetch lists the newest feature first;
    its DenseNets append each new feature after the old ones, as netdsl does."""
    return block.output_mode == "next"


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("netdsl", by_name=True),  # block1.unit3.conv1.weight
        Layout("torchvision", names=torchvision_names),  # features.denseblock1.denselayer1.norm1.weight
        Layout("pytorchcv", newest_first=_hands_on_next, names=pytorchcv_names),  # features.stage1.unit1.conv1.conv
    )
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        hint = did_you_mean(name, LAYOUTS) or "layouts: " + ", ".join(LAYOUTS) + " (docs/weights.md)"
        raise WeightsError(f"unknown weights layout '{name}'", None, hint) from None
