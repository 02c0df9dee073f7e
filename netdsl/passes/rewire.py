"""Graph surgery shared by the inference rewrites: remove a node by handing its uses to another.

Rewrites work on a copy (:func:`copy_graph`) so the caller's graph never changes."""

from __future__ import annotations

from dataclasses import replace

import networkx as nx

from ..ir.graph import BlockInfo


def copy_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy whose node dicts, ``attrs`` and block list can be changed without touching ``graph``."""
    out = graph.copy()
    for _, d in out.nodes(data=True):
        d["attrs"] = dict(d["attrs"])
    if "blocks" in out.graph:
        out.graph["blocks"] = list(out.graph["blocks"])
    return out


def replace_uses(graph: nx.DiGraph, old: str, new: str) -> None:
    """Make every consumer of ``old`` read ``new`` instead (same positions), move the graph
    output and the block metadata, and delete ``old``. ``new`` must compute the same value."""
    for user in list(graph.successors(old)):
        d = graph.nodes[user]
        d["inputs"] = tuple(new if i == old else i for i in d["inputs"])
        positions = tuple(p for p, i in enumerate(d["inputs"]) if i == new)
        graph.add_edge(new, user, index=positions)
    graph.remove_node(old)
    if graph.graph.get("output") == old:
        graph.graph["output"] = new
    if graph.graph.get("outputs"):  # declared outputs keep their names; the value moves to ``new``
        graph.graph["outputs"] = tuple((name, new if node == old else node) for name, node in graph.graph["outputs"])
    if graph.graph.get("blocks"):
        graph.graph["blocks"] = [_rename_block(b, old, new) for b in graph.graph["blocks"]]


def named_in_blocks(graph: nx.DiGraph, node: str) -> bool:
    """True if the block metadata names ``node`` (as input, output, feature or unit node)."""
    for b in graph.graph.get("blocks", ()):
        names = {b.input, b.output} | {f.node for f in b.features}
        names |= {u.aggregate for u in b.units} | {u.output for u in b.units}
        if node in names:
            return True
    return False


def _rename_block(b: BlockInfo, old: str, new: str) -> BlockInfo:
    def r(n: str) -> str:
        return new if n == old else n

    features = tuple(replace(f, node=r(f.node)) if f.node == old else f for f in b.features)
    units = tuple(replace(u, aggregate=r(u.aggregate), output=r(u.output)) for u in b.units)
    return replace(b, input=r(b.input), output=r(b.output), features=features, units=units)
