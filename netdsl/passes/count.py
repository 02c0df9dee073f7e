"""Parameter and FLOP counts per node (``params``, ``flops``) and totals on ``graph.graph``.

FLOPs count one multiply-accumulate as one FLOP, as the seed papers do (see :mod:`netdsl.ir.ops`)."""

from __future__ import annotations

import networkx as nx

from ..ops import get
from .base import PassResult


def run(graph: nx.DiGraph) -> PassResult:
    total_p = total_f = 0
    for _, d in graph.nodes(data=True):
        spec = get(d["kind"])
        ins = [graph.nodes[i]["shape"] for i in d["inputs"]]
        d["params"] = spec.params(d["attrs"], ins, d["shape"])
        d["flops"] = spec.flops(d["attrs"], ins, d["shape"])
        total_p += d["params"]
        total_f += d["flops"]
    graph.graph["total_params"] = total_p
    graph.graph["total_flops"] = total_f
    return PassResult(graph, True)
