"""Inference rewrite: remove the nodes that are the identity in eval mode (the registry's
``eval_identity``: ``dropout`` and ``identity``); their consumers read the node's input instead.

>>> import netdsl
>>> g = netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4)
>>> run(g).modified  # DenseNet-BC has no dropout or identity
False
"""

from __future__ import annotations

import networkx as nx

from ..ops import get
from .base import PassResult
from .rewire import copy_graph, replace_uses


def run(graph: nx.DiGraph) -> PassResult:
    noops = [n for n, d in graph.nodes(data=True) if get(d["kind"]).eval_identity]
    if not noops:
        return PassResult(graph, False)
    out = copy_graph(graph)
    for n in noops:
        replace_uses(out, n, out.nodes[n]["inputs"][0])
    return PassResult(out, True)
