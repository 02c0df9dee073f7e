"""The IR core: a networkx DiGraph of ops (contract in :mod:`netdsl.ir.ops`). No torch/onnx here."""

from .graph import BlockInfo, Feature, UnitInfo, blocks, topo_nodes
from .lint import lint
from .ops import OP_KINDS, infer_shape

__all__ = ["BlockInfo", "Feature", "OP_KINDS", "UnitInfo", "blocks", "infer_shape", "lint", "topo_nodes"]
