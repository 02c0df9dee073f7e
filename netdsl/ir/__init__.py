"""The IR core: a networkx DiGraph of ops (contract in :mod:`netdsl.ir.ops`). No torch/onnx here."""

from .graph import BlockInfo, Feature, UnitInfo, blocks, topo_nodes
from .lint import lint
from .ops import OP_KINDS, infer_shape

__all__ = ["OP_KINDS", "BlockInfo", "Feature", "UnitInfo", "blocks", "infer_shape", "lint", "topo_nodes"]
