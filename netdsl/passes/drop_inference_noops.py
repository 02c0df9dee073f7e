"""Inference rewrite: remove ``dropout`` and ``identity`` nodes (both are the identity in eval
mode); their consumers read the node's input instead.

>>> import netdsl
>>> g = netdsl.compile_spec("densenet_bc100_k12", {"depth": 10, "k": 4})
>>> run(g).modified  # DenseNet-BC has no dropout or identity
False
"""

from __future__ import annotations

import networkx as nx

from . import PassResult
from .rewire import copy_graph, replace_uses

NOOP_KINDS = ("dropout", "identity")


def run(graph: nx.DiGraph) -> PassResult:
    noops = [n for n, d in graph.nodes(data=True) if d["kind"] in NOOP_KINDS]
    if not noops:
        return PassResult(graph, False)
    out = copy_graph(graph)
    for n in noops:
        replace_uses(out, n, out.nodes[n]["inputs"][0])
    return PassResult(out, True)
