"""The block-level view of a compiled graph, as plain data (no graphviz here).

Every op is assigned to one *group*, a node of the drawing:

- each unit of a drawn block (all ops under ``block1.unit3.``, nested blocks included);
- each block-input feature ``x_j`` (``j <= 0``: the whole input of a dense/path/rule block, the
  channel groups of a window block, the subsets of a split block);
- the block output (its concat or sum), and a split block's bypass;
- outside blocks, the op's top-level statement (its ``stage``: ``transition1``, ``head1``); consecutive plain
  groups that form a simple chain merge into one node (``stem`` -> ``bn1`` -> ``relu1``).

Edges: one ``connection`` edge per entry of a unit's ``reads`` (the IR's connection set, not the
op edges, which merge neighbouring channel slices), ``output`` edges from the features a block
returns to its output node, and ``flow`` edges for everything else. A block with more units than
``max_units`` keeps its first and last units and collapses the middle ones into one node; the
edges that touch it are bundled into one edge per neighbour, whose ``count`` says how many
connections it stands for; the connections among the collapsed units are counted on the node.

>>> from netdsl.api import compile_spec
>>> view = block_view(compile_spec("densenet_bc100_k12", depth=16))
>>> [n.id for n in view.nodes if n.kind == "unit"]
['block1.unit1', 'block1.unit2', 'block2.unit1', 'block2.unit2', 'block3.unit1', 'block3.unit2']
>>> sum(e.count for e in view.edges if e.kind == "connection")
9
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import networkx as nx

from ..errors import SpecValueError
from ..ir.graph import BlockInfo, block_members, blocks, top_level_blocks, topo_nodes
from ..ops import fmt_shape


@dataclass(slots=True)
class VizNode:
    id: str
    label: str
    kind: str  # "unit", "feature", "output", "stream", "collapsed", "plain", "context", "result" (a network output)
    cluster: str | None = None  # the block it is drawn in
    inside: int = 0  # collapsed nodes: the connections among the units it stands for


@dataclass(slots=True)
class VizEdge:
    src: str
    dst: str
    kind: str  # "connection", "output", "flow", "dropped", "stream"
    count: int = 1
    chain: bool = False  # joins neighbours (x_{i-1} -> unit i, last unit -> output): the layout's spine


@dataclass(slots=True)
class BlockView:
    nodes: list[VizNode]
    edges: list[VizEdge]
    clusters: dict[str, str] = field(default_factory=dict)  # block name -> cluster label


def select_block(graph: nx.DiGraph, which: str | int) -> BlockInfo:
    """A block by its 1-based number (the order ``netdsl summary`` lists) or its name."""
    bl = blocks(graph)
    names = [b.name for b in bl]
    if isinstance(which, int) or str(which).isdigit():
        k = int(which)
        if 1 <= k <= len(bl):
            return bl[k - 1]
    else:
        for b in bl:
            if b.name == which:
                return b
    listing = ", ".join(f"{k}={n}" for k, n in enumerate(names, 1)) or "none"
    raise SpecValueError(
        f"no block {which!r} in {graph.graph.get('name', 'this network')}", None, f"blocks (number=name): {listing}"
    )


def _feature_id(block: BlockInfo, j: int) -> str:
    return f"{block.name}/x{j}"


def _output_selection(block: BlockInfo) -> list[int]:
    if getattr(block, "outputs", ()):  # recorded by lowering (covers output=next)
        return list(block.outputs)
    last = max(u.index for u in block.units)
    first = min(f.index for f in block.features)
    if block.kind == "split":
        return list(range(1, last + 1))
    return {"all": list(range(first, last + 1)), "new": list(range(1, last + 1)), "last": [last]}.get(
        block.output_mode, []
    )


class _Builder:
    def __init__(self, graph: nx.DiGraph, drawn: list[BlockInfo], max_units: int, dropped: bool):
        self.graph = graph
        self.drawn = drawn
        self.max_units = max_units
        self.dropped = dropped
        self.group: dict[str, str] = {}  # op id -> node id
        self.nodes: dict[str, VizNode] = {}
        self.edges: dict[tuple[str, str, str], int] = {}

    def shape(self, op: str) -> str:
        return fmt_shape(self.graph.nodes[op]["shape"])

    def edge(self, src: str, dst: str, kind: str, count: int = 1) -> None:
        if src != dst:
            self.edges[(src, dst, kind)] = self.edges.get((src, dst, kind), 0) + count

    def add_block(self, b: BlockInfo) -> None:
        members = block_members(self.graph, b.name)  # node -> its unit of b (None: b's own op)
        unit_of = {u.index: u for u in b.units}
        for u in b.units:
            self.nodes[u.scope] = VizNode(u.scope, f"unit {u.index}\n{self.shape(u.output)}", "unit", b.name)
        for n, unit in members.items():
            if unit is not None:
                self.group[n] = unit_of[unit].scope
        read = {j for u in b.units for j in u.reads}
        out_sel = _output_selection(b)
        for f in b.features:
            unused = f.index not in read and f.index not in out_sel and b.kind != "split"
            if f.index > 0 or unused:
                continue
            fid = _feature_id(b, f.index)
            rng = f" [{f.start}:{f.stop}]" if f.start is not None else ""
            self.nodes[fid] = VizNode(fid, f"{b.feature_label(f.index)}{rng}", "feature", b.name)
            if f.node in members:  # a split block's own slice op
                self.group[f.node] = fid
        for st in b.streams:  # a collected stream: a node of its own, fed by every unit's piece
            if st.output is not None and st.output in members and st.output not in self.group:
                sid = f"{b.name}/{st.name}"
                self.nodes[sid] = VizNode(sid, f"{st.name}\n{self.shape(st.output)}", "stream", b.name)
                self.group[st.output] = sid
                for u in b.units:
                    self.edge(self.group.get(st.pieces[u.index - 1], u.scope), sid, "stream")
        out_id = f"{b.name}/out"
        owns_output = b.output in members and b.output not in self.group
        for n in members:
            if n in self.group:
                continue
            if b.kind == "split" and n != b.output:  # a split block's own ops left: its bypass
                self.group[n] = f"{b.name}/bypass"
                self.nodes.setdefault(f"{b.name}/bypass", VizNode(f"{b.name}/bypass", "bypass", "plain", b.name))
            else:
                self.group[n] = out_id  # the output gather and its slices
        if owns_output:
            kind = self.graph.nodes[b.output]["kind"]
            self.nodes[out_id] = VizNode(out_id, f"{kind}\n{self.shape(b.output)}", "output", b.name)

        def source(j: int) -> str:
            if j <= 0:
                return _feature_id(b, j)
            return unit_of[j].scope if j in unit_of else self.group.get(b.feature_node(j), b.feature_node(j))

        first = min(f.index for f in b.features)
        for u in b.units:
            for j in u.reads:
                self.edge(source(j), u.scope, "connection")
            if self.dropped and b.kind != "split":
                for j in range(first, u.index):
                    if j not in u.reads and (j > 0 or _feature_id(b, j) in self.nodes):
                        self.edge(source(j), u.scope, "dropped")
        if owns_output:
            if b.kind == "split":  # y_1 is x_1 or the bypass of it: take the op's own inputs
                for src in self.graph.nodes[b.output]["inputs"]:
                    self.edge(self.group.get(src, src), out_id, "output")
            else:
                for j in out_sel:
                    self.edge(source(j), out_id, "output")

    def plain_groups(self, keep: set[str] | None) -> None:
        for n in self.graph.nodes:
            if n in self.group:
                continue
            if keep is not None and n not in keep:
                continue
            # outside blocks, one group per top-level statement (its stage); context ops (around
            # one drawn block) stay separate: their stage may hold the block
            gid = n if keep is not None else self.graph.nodes[n].get("stage", n)
            self.group[n] = gid
            node = self.nodes.get(gid)
            if node is None:
                self.nodes[gid] = VizNode(gid, gid, "plain" if keep is None else "context")

    def project_op_edges(self) -> None:
        """Op edges between different groups, except those into units and outputs (drawn from reads)."""
        for u, v in self.graph.edges:
            gu, gv = self.group.get(u), self.group.get(v)
            if gu is None or gv is None or self.nodes[gv].kind in ("unit", "output", "stream"):
                continue
            self.edge(gu, gv, "flow")
        for b in self.drawn:
            if b.kind == "split":
                continue  # its feature slices are ops: projected above
            src = self.group.get(b.input)
            for f in b.features:
                fid = _feature_id(b, f.index)
                if f.index <= 0 and fid in self.nodes and src is not None:
                    self.edge(src, fid, "flow")

    def stream_edges(self) -> None:
        """A carried stream enters each unit of its block: one edge from the stream's group per unit."""
        for b in self.drawn:
            for st in b.streams:
                src = self.group.get(st.input) if st.input is not None else None
                if src is None:
                    continue
                for u, x in zip(b.units, st.slices, strict=True):
                    if x is not None and u.scope in self.nodes:
                        self.edge(src, u.scope, "stream")

    def merge_chains(self) -> None:
        """Fold a plain group into its predecessor when the two form a simple chain."""
        plain = {k for k, n in self.nodes.items() if n.kind == "plain" and n.cluster is None}
        succ: dict[str, set] = {}
        pred: dict[str, set] = {}
        for s, d, _k in self.edges:
            succ.setdefault(s, set()).add(d)
            pred.setdefault(d, set()).add(s)
        ops_in_group: dict[str, list[str]] = {}
        for op, g in self.group.items():
            ops_in_group.setdefault(g, []).append(op)
        into: dict[str, str] = {}
        order = _topo_groups(self.graph, self.group)
        for g in order:
            if g not in plain or self.graph.graph.get("input") in ops_in_group.get(g, ()):
                continue
            ps = pred.get(g, set())
            if len(ps) == 1:
                (p,) = ps
                if p in plain and succ.get(p) == {g} and self.graph.graph.get("input") not in ops_in_group.get(p, ()):
                    into[g] = into.get(p, p)
        if not into:
            return
        last_of: dict[str, str] = {}
        for g in order:
            last_of[into.get(g, g)] = g
        for g in into:
            del self.nodes[g]
        for head, last in last_of.items():
            if head != last and head in self.nodes:
                self.nodes[head].label = f"{head} .. {last}"
        self._redirect(into)

    def label_plain(self) -> None:
        ops_in_group: dict[str, list[str]] = {}
        for op in topo_nodes(self.graph):
            g = self.group.get(op)
            if g is not None:
                ops_in_group.setdefault(g, []).append(op)
        for gid, node in self.nodes.items():
            if node.kind in ("plain", "context") and gid in ops_in_group:
                node.label = f"{node.label}\n{self.shape(ops_in_group[gid][-1])}"

    def collapse(self, b: BlockInfo) -> str | None:
        """Collapse the middle units, and the middle input groups, of a block larger than max_units."""
        notes = []
        feats = [f.index for f in b.features if f.index <= 0 and _feature_id(b, f.index) in self.nodes]
        hidden_feats = self._middle(feats)
        if hidden_feats:
            lo, hi = hidden_feats[0], hidden_feats[-1]
            cid = f"{b.name}/x{lo}..x{hi}"
            self._merge(
                [_feature_id(b, j) for j in hidden_feats],
                VizNode(
                    cid,
                    f"{b.feature_label(lo)}..{b.feature_label(hi)}\n({len(hidden_feats)} input groups)",
                    "collapsed",
                    b.name,
                ),
            )
            notes.append(f"input groups x{lo}..x{hi}")
        hidden = self._middle(list(b.units))
        if hidden:
            lo, hi = hidden[0].index, hidden[-1].index
            inside = sum(1 for u in hidden for j in u.reads if lo <= j <= hi)
            label = f"units {lo}..{hi}\n({len(hidden)} units, {inside} connections among them)"
            node = VizNode(f"{b.name}/units{lo}-{hi}", label, "collapsed", b.name, inside)
            self._merge([u.scope for u in hidden], node)
            notes.append(f"units {lo}..{hi}")
        return " and ".join(notes) + " collapsed" if notes else None

    def _middle(self, items: list) -> list:
        """What collapses: all but the first ceil(max_units/2) and the last floor(max_units/2)."""
        n = len(items)
        if self.max_units <= 0 or n <= self.max_units:
            return []
        head = (self.max_units + 1) // 2
        middle = items[head : n - (self.max_units - head)]
        return middle if len(middle) > 1 else []  # one node for one node saves nothing

    def _merge(self, ids: list[str], into: VizNode) -> None:
        """Replace ``ids`` by one node; their edges become bundles counting what they stand for."""
        self.nodes[into.id] = into
        for s in ids:
            del self.nodes[s]
        self._redirect(dict.fromkeys(ids, into.id))

    def _redirect(self, remap: dict[str, str]) -> None:
        """Point the ops and edges of the groups in ``remap`` at the groups they merged into: edges
        that end up inside one group vanish, parallel ones add up their counts."""
        for op, g in self.group.items():
            self.group[op] = remap.get(g, g)
        edges: dict[tuple[str, str, str], int] = {}
        for (s, d, k), c in self.edges.items():
            s, d = remap.get(s, s), remap.get(d, d)
            if s != d:
                edges[(s, d, k)] = edges.get((s, d, k), 0) + c
        self.edges = edges


def _topo_groups(graph: nx.DiGraph, group: dict[str, str]) -> list[str]:
    seen: dict[str, None] = {}
    for op in topo_nodes(graph):
        g = group.get(op)
        if g is not None:
            seen.setdefault(g, None)
    return list(seen)


def block_view(
    graph: nx.DiGraph, block: str | int | None = None, *, max_units: int = 8, dropped: bool = False
) -> BlockView:
    """The block-level drawing of ``graph`` (or of one block) as nodes, edges and clusters.

    ``max_units`` > 0 collapses the middle units of larger blocks; ``dropped`` adds the
    connections a pattern leaves out as ``dropped`` edges (SparseNet Fig. 2 draws them dotted).
    """
    drawn = [select_block(graph, block)] if block is not None else top_level_blocks(graph)
    b = _Builder(graph, drawn, max_units, dropped)
    for blk in drawn:
        b.add_block(blk)
    if block is None:
        b.plain_groups(None)
    else:
        blk = drawn[0]
        context = {blk.input} | set(graph.successors(blk.output))
        b.plain_groups(context)
    b.project_op_edges()
    b.stream_edges()
    if block is None:
        b.merge_chains()
    b.label_plain()
    clusters = {}
    for blk in drawn:
        note = b.collapse(blk)
        units = len(blk.units)
        clusters[blk.name] = f"{blk.name}: {blk.pattern}, {units} unit{'s' if units != 1 else ''}" + (
            f" ({note})" if note else ""
        )
    order = {g: float(k) for k, g in enumerate(_topo_groups(graph, b.group))}
    for blk in drawn:  # a window block's input groups are no ops: list them right after the input
        base = order.get(b.group.get(blk.input, ""), -1.0) + 0.5
        first = min(f.index for f in blk.features)
        for f in blk.features:
            key = base + 1e-6 * (f.index - first)
            order.setdefault(_feature_id(blk, f.index), key)
            for n in b.nodes:  # a collapsed run of input groups sits where its first group would
                if n.startswith(f"{_feature_id(blk, f.index)}..x"):
                    order[n] = key
    nodes = sorted(b.nodes.values(), key=lambda n: order.get(n.id, float(len(order))))
    spine: set[tuple[str, str]] = set()
    for blk in drawn:
        inside = [n.id for n in nodes if n.cluster == blk.name]
        spine |= set(itertools.pairwise(inside))
    edges = [VizEdge(s, d, k, c, (s, d) in spine) for (s, d, k), c in b.edges.items()]
    if block is None:
        for node, edge in result_nodes(graph, b.group):
            nodes.append(node)
            edges.append(edge)
    return BlockView(nodes, edges, clusters)


def result_nodes(graph: nx.DiGraph, group: dict[str, str] | None = None) -> list[tuple[VizNode, VizEdge]]:
    """A network's declared outputs (``output(a, b)``) as drawn nodes, ``result`` kind, each with
    the edge from the drawn node holding its value (``group``: op -> drawn node; default the op
    itself). None for a network with one undeclared output: its last op is its output."""
    out = []
    for name, node in graph.graph.get("outputs") or ():
        rid = f"output/{name}"  # no op id has a "/"
        label = f"output {name}\n{fmt_shape(graph.nodes[node]['shape'])}"
        src = (group or {}).get(node, node)
        out.append((VizNode(rid, label, "result"), VizEdge(src, rid, "flow")))
    return out
