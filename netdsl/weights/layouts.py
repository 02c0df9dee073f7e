"""The layouts netdsl maps weights from and to.

A layout is the convention of one model zoo: how it orders concatenated features (the only
arithmetic difference between implementations of the same network) and how it names modules
for export. Modules are matched by position, not by name (netdsl/weights/transfer.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

from ..errors import WeightsError
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
    # export: the key prefix of each of netdsl's weight modules (state_dict order), or None
    names: Callable[[nx.DiGraph, list[ModuleWeights]], list[str]] | None = None
    describe: str = ""


def _hands_on_next(block: BlockInfo) -> bool:
    """pytorchcv's SparseNet stage keeps only what the next unit reads (netdsl's ``output=next``)
    and builds it as ``torch.cat(fetch(outs))``, where the fetch lists the newest feature first;
    its DenseNets append each new feature after the old ones, as netdsl does."""
    return block.output_mode == "next"


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("netdsl", by_name=True, describe="netdsl's own keys (a netdsl state_dict or training checkpoint)"),
        Layout(
            "torchvision",
            names=torchvision_names,
            describe="torchvision's DenseNets and ResNets (features.denseblock1.denselayer1.norm1, layer1.0.conv1)",
        ),
        Layout(
            "pytorchcv",
            newest_first=_hands_on_next,
            names=pytorchcv_names,
            describe="pytorchcv 0.0.74 (features.stage1.unit1.conv1.conv); SparseNet concatenates newest first",
        ),
    )
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise WeightsError(f"unknown weights layout '{name}'", None, "layouts: " + ", ".join(LAYOUTS)) from None
