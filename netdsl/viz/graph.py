"""Graphviz drawings: the block-level view (:mod:`netdsl.viz.model`) and the op-level graph.

Every node and edge carries an SVG ``class`` (``unit``, ``feature``, ``connection``, ...) so a
drawing can be checked, styled or scripted after rendering.

>>> from netdsl.api import compile_spec
>>> dot = block_digraph(compile_spec("densenet_bc100_k12", depth=10))
>>> dot.source.count("class=connection"), dot.source.count("class=unit")
(3, 3)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import graphviz
import networkx as nx

from ..errors import NetdslError, SpecValueError
from ..ir.graph import block_members, blocks, topo_nodes
from ..ops import fmt_shape, get
from .model import BlockView, block_view, result_nodes, select_block

FONT = "Helvetica"

NODE_STYLE = {
    "unit": dict(shape="box", style="rounded,filled", fillcolor="#cfe2f3"),
    "feature": dict(shape="ellipse", style="filled", fillcolor="#fff2cc", fontsize="9"),
    "output": dict(shape="box", style="filled", fillcolor="#e0e0e0"),
    "stream": dict(shape="box", style="filled", fillcolor="#fde0c5"),  # a block's collected stream
    "collapsed": dict(shape="box", style="rounded,dashed,filled", fillcolor="#eef4fb"),
    "plain": dict(shape="box"),
    "context": dict(shape="box", style="dashed", color="#808080", fontcolor="#606060"),
    "result": dict(shape="box", style="bold,filled", fillcolor="#d9ead3"),
}

EDGE_STYLE = {
    "connection": dict(color="#3b6ea5", arrowsize="0.5"),
    "output": dict(color="#909090", style="dashed", arrowsize="0.5"),
    "flow": dict(color="black", penwidth="1.5"),
    "dropped": dict(color="#c0c0c0", style="dotted", arrowhead="none", constraint="false"),
    "stream": dict(color="#d9822b", arrowsize="0.5", weight="0"),  # a stream's slice into a unit, a piece out
}

# Above this many ops an op-level drawing of a whole network is unreadable (and slow to lay out).
MAX_OP_NODES = 500
# dot's layout time grows steeply with edges: the 250-layer DenseNet-BC drawn with every unit
# (2.7k edges) took 493 s, collapsed to 8 units per block (0.4k edges) 0.16 s.
MAX_LAYOUT_EDGES = 1500
# Op level is slower per edge (a dense concat's inputs all cross): DenseNet-BC-100's block 1
# (16 units, 249 edges) takes about 27 s of CPU.
MAX_OP_LAYOUT_EDGES = 400


def _digraph(name: str) -> graphviz.Digraph:
    dot = graphviz.Digraph(name=name)
    dot.attr(rankdir="LR", fontname=FONT, fontsize="11", nodesep="0.15", ranksep="0.35", newrank="true")
    dot.attr("node", fontname=FONT, fontsize="10", height="0.3", margin="0.06,0.03")
    dot.attr("edge", fontname=FONT, fontsize="8")
    return dot


def view_digraph(view: BlockView, name: str = "net") -> graphviz.Digraph:
    """A :class:`BlockView` as a graphviz graph, one cluster per block."""
    dot = _digraph(name)
    clusters: dict[str, graphviz.Digraph] = {}
    order: list[str] = []
    for n in view.nodes:
        attrs = dict(NODE_STYLE[n.kind], label=n.label, tooltip=n.id)
        attrs["class"] = n.kind
        if n.cluster is None:
            dot.node(n.id, **attrs)
            continue
        if n.cluster not in clusters:
            sub = graphviz.Digraph(name=f"cluster_{len(clusters)}")
            sub.attr(
                label=view.clusters.get(n.cluster, n.cluster),
                style="rounded",
                color="#7f7f7f",
                fontname=FONT,
                fontsize="11",
                labeljust="l",
            )
            clusters[n.cluster] = sub
            order.append(n.cluster)
        clusters[n.cluster].node(n.id, **attrs)
    for c in order:
        dot.subgraph(clusters[c])
    for e in view.edges:
        attrs = dict(EDGE_STYLE[e.kind])
        attrs["class"] = e.kind
        if e.count > 1:  # a bundle standing for several connections of a collapsed block
            attrs.update(label=f"x{e.count}", penwidth=f"{1 + math.log2(e.count):.2f}")
        if e.kind in ("connection", "output") and not e.chain:
            # Only the unit-to-next-unit chain decides the layout: units stay on one line and the
            # long-range connections arc around it, as in the DenseNet figure.
            attrs["weight"] = "0"
        dot.edge(e.src, e.dst, **attrs)
    return dot


def block_digraph(
    graph: nx.DiGraph, block: str | int | None = None, *, max_units: int = 8, dropped: bool = False
) -> graphviz.Digraph:
    view = block_view(graph, block, max_units=max_units, dropped=dropped)
    return view_digraph(view, graph.graph.get("name", "net"))


def _op_label(node: str, d: dict) -> str:
    # the op's own name within its scope (the id's last part), then the registry's label
    return f"{node.rsplit('.', 1)[-1]}\n{get(d['kind']).label(d['attrs'])}" + _plan_label(d)


def _runs(runs) -> str:
    return " + ".join(f"[{a}:{b}]" for a, b in runs)


def _plan_label(d: dict) -> str:
    """The concat plan (``passes/plan_concat.py``), when it ran: where a producer writes, how an
    aggregate reads (``view`` = no copy; ``gather`` = a concat that remains; ``split`` = the
    consumer runs once per channel range), and which slices became views."""
    lines = [f"writes {buf}[{a}:{b}]" for buf, a, b in d.get("stores", ())]
    read = d.get("read")
    if read:
        copy = f", copies {read['copy_bytes']:,} B" if read.get("copy_bytes") else ""
        lines.append(f"{read['strategy']} {read['buffer']}{_runs(read['runs'])}{copy}")
    if d.get("elided"):
        lines.append("elided (a view)")
    return "".join("\n" + line for line in lines)


def _plan_class(d: dict) -> str:
    out = " stores" if d.get("stores") else ""
    if d.get("read"):
        out += f" read-{d['read']['strategy']}"
    return out + (" elided" if d.get("elided") else "")


def _cluster_keys(graph: nx.DiGraph) -> dict[str, str]:
    """Scopes drawn as clusters at op level: blocks and their units, with their labels."""
    keys = {}
    for b in blocks(graph):
        keys[b.name] = f"{b.name}: {b.pattern}"
        for u in b.units:
            keys[u.scope] = f"unit {u.index} reads " + b.reads_label(u.reads)
    return keys


def _cluster_of(graph: nx.DiGraph) -> Callable[[str | None, int | None], str | None]:
    """(block, unit) -> the cluster key drawing it: the unit's scope, or the block itself."""
    scope = {(b.name, u.index): u.scope for b in blocks(graph) for u in b.units}

    def key(block: str | None, unit: int | None) -> str | None:
        if block is None:
            return None
        return block if unit is None else scope[(block, unit)]

    return key


def op_digraph(graph: nx.DiGraph, block: str | int | None = None) -> graphviz.Digraph:
    """Every op as a node, every edge labelled with the producer's shape (C x H x W).

    With ``block``, only that block's ops and, dashed, the ops that feed it or read its output.
    """
    if block is not None:
        b = select_block(graph, block)
        members = block_members(graph, b.name)
        inside = [n for n in topo_nodes(graph) if n in members]
        context = {p for n in inside for p in graph.predecessors(n) if p not in members}
        context |= set(graph.successors(b.output)) - set(inside)
        shown = inside + sorted(context)
    else:
        shown = topo_nodes(graph)
        context = set()
        if len(shown) > MAX_OP_NODES:
            raise SpecValueError(
                f"the op-level graph of {graph.graph.get('name')} has {len(shown):,} ops, too many to draw",
                None,
                f"draw one block with --block N, or the block-level view (at most {MAX_OP_NODES:,} ops)",
            )
    keys = _cluster_keys(graph)
    dot = _digraph(graph.graph.get("name", "net"))
    dot.attr(rankdir="TB")  # op chains are long: top to bottom keeps the page readable

    cluster = _cluster_of(graph)
    parents_of = graph.graph.get("block_parents", {})

    def owner(n: str) -> str | None:
        d = graph.nodes[n]
        return cluster(d.get("block"), d.get("unit"))

    tree: dict[str | None, list] = {}
    for n in shown:
        tree.setdefault(None if n in context else owner(n), []).append(n)
    parents: dict[str, str | None] = {}
    for b in blocks(graph):
        parents[b.name] = cluster(*parents_of.get(b.name, (None, None)))
        for u in b.units:
            parents[u.scope] = b.name

    counter = [0]

    def fill(sub: graphviz.Digraph, key: str | None) -> bool:
        drew = False
        for n in tree.get(key, ()):
            d = graph.nodes[n]
            style = NODE_STYLE["context"] if n in context else {}
            attrs = dict(style, label=_op_label(n, d), tooltip=n)
            attrs["class"] = "context" if n in context else f"op {d['kind']}" + _plan_class(d)
            if d.get("read", {}).get("strategy") == "gather":  # a concat that still copies
                attrs.update(style="filled", fillcolor="#f4cccc")
            elif d.get("read") or d.get("elided"):
                attrs.update(style="dashed")
            sub.node(n, **attrs)
            drew = True
        for child in [k for k, p in parents.items() if p == key]:
            counter[0] += 1
            c = graphviz.Digraph(name=f"cluster_{counter[0]}")
            c.attr(label=keys[child], style="rounded", color="#7f7f7f", fontname=FONT, fontsize="10", labeljust="l")
            if fill(c, child):
                sub.subgraph(c)
                drew = True
        return drew

    fill(dot, None)
    if block is None:  # the declared outputs, each after the op that computes it
        for node, edge in result_nodes(graph):
            dot.node(node.id, **dict(NODE_STYLE["result"], label=node.label, tooltip=node.id), **{"class": "result"})
            dot.edge(edge.src, edge.dst, **{"class": "flow"})
    shown_set = set(shown)
    labelled: set[str] = set()
    for n in shown:
        for src in graph.nodes[n]["inputs"]:
            if src in shown_set:
                attrs = {"class": "flow"}
                # A shape belongs to the producer: label its first edge only. Every label is a
                # node to dot, and a dense block's concats would multiply them (10x layout time).
                if src not in labelled:
                    attrs["label"] = fmt_shape(graph.nodes[src]["shape"])
                    labelled.add(src)
                dot.edge(src, n, **attrs)
    if sum(line.count(" -> ") for line in dot.body) > 100:
        # dot's crossing minimization dominates on dense concats; a short search halves the time
        dot.attr(mclimit="0.05")
    return dot


FORMATS = ("svg", "png", "pdf", "dot")


def render(dot: graphviz.Digraph, fmt: str) -> bytes:
    """Lay out and render with graphviz's ``dot``; ``fmt="dot"`` is the source, no layout."""
    if fmt == "dot":
        return dot.source.encode("utf-8")
    if fmt not in FORMATS:
        raise SpecValueError(f"graphs render as {', '.join(FORMATS)}, not '{fmt}'", None)
    edges = sum(line.count(" -> ") for line in dot.body)
    ops_level = any("class=op" in line or 'class="op' in line for line in dot.body)
    if edges > (MAX_OP_LAYOUT_EDGES if ops_level else MAX_LAYOUT_EDGES):
        raise SpecValueError(
            f"the drawing has {edges:,} edges; graphviz would need minutes to lay it out",
            None,
            "draw one block (--block N), collapse large blocks (block level: --max-units 8), or write a .dot file",
        )
    try:
        return dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise NetdslError(
            "graphviz's 'dot' program is not installed",
            None,
            "install graphviz (apt install graphviz), or write a .dot file",
        ) from None
    except graphviz.CalledProcessError as err:
        msg = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise NetdslError(f"graphviz failed: {msg[-1] if msg else err}", None) from None
