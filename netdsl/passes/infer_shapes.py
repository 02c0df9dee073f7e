"""Shape inference: writes ``shape`` on every node from the input's declared shape."""

from __future__ import annotations

import networkx as nx

from ..ir.graph import topo_nodes
from ..ops import infer_shape
from .base import PassResult


def run(graph: nx.DiGraph) -> PassResult:
    """Recompute every node's shape in topological order; ``modified`` if any changed."""
    modified = False
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        shape = infer_shape(d["kind"], d["attrs"], [graph.nodes[i]["shape"] for i in d["inputs"]])
        if d.get("shape") != shape:
            d["shape"] = shape
            modified = True
    return PassResult(graph, modified)
