"""Inference rewrite: grow concatenations incrementally. A concat whose inputs start with
another concat's full input list reads that concat instead of its parts, so a dense block's
aggregate is ``concat(previous aggregate, newest feature)`` and the block output extends the last
unit's aggregate. Values are unchanged; ONNX gets short Concat nodes (never ScatterND).

>>> import netdsl
>>> g = run(netdsl.compile_spec("densenet_bc100_k12", depth=16, k=4)).graph
>>> g.nodes["block1.cat"]["inputs"]
('block1.unit2.cat', 'block1.unit2.conv2')
"""

from __future__ import annotations

import networkx as nx

from ..ir.graph import topo_nodes
from .base import PassResult
from .rewire import copy_graph


def run(graph: nx.DiGraph) -> PassResult:
    out = None
    seen: dict[tuple[str, ...], str] = {}  # original input list -> concat node computing it
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        if d["kind"] != "concat":
            continue
        orig = tuple(d["inputs"])
        best = max((k for k in range(2, len(orig)) if orig[:k] in seen), default=None)
        seen.setdefault(orig, n)
        if best is None:
            continue
        if out is None:
            out = copy_graph(graph)
        prefix = seen[orig[:best]]
        new_inputs = (prefix,) + orig[best:]
        for src in set(orig[:best]) - set(orig[best:]):
            out.remove_edge(src, n)
        out.nodes[n]["inputs"] = new_inputs
        for src in set(new_inputs):
            out.add_edge(src, n, index=tuple(p for p, i in enumerate(new_inputs) if i == src))
    return PassResult(graph if out is None else out, out is not None)
