"""Block metadata and small helpers over the IR graph (see :mod:`netdsl.ir.ops` for the contract)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import networkx as nx

from ..errors import Span


@dataclass(frozen=True, slots=True)
class Feature:
    """Feature ``x_j`` of a block: the node that holds it, or the channel range
    ``[start, stop)`` of that node (window blocks view their input as groups)."""

    index: int
    node: str
    start: int | None = None
    stop: int | None = None

    def channels(self, graph) -> int:
        """How many channels the feature is: its range, or its node's whole width."""
        if self.start is not None:
            assert self.stop is not None  # a range has both ends
            return self.stop - self.start
        return graph.nodes[self.node]["shape"][0]


@dataclass(frozen=True, slots=True, kw_only=True)  # 7 fields: constructed by name
class UnitInfo:
    index: int
    scope: str  # "block1.unit3"
    reads: tuple[int, ...]  # feature indices, ascending
    aggregate: str  # node id of the unit's input (a concat/add node, or the feature itself)
    output: str  # node id of the unit's output (feature x_i)
    # The template the unit's body calls when it is one template call ("bottleneck"), else None:
    # the generated class is named after it and shared by every unit of that template.
    template: str | None = None
    # Every node lowering made for the unit, in creation order (its aggregate included, where the
    # unit made one; nodes of a block nested in the unit included too).
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """A named stream a block carries (``block(..., stream=raw)``, docs/language.md "Streams").

    Unit i sees ``slices[i-1]``: channels [(i-1)·w, i·w) of ``input`` (w = its width / units; a
    ``slice`` node, or ``input`` itself in a one-unit block), and hands on ``pieces[i-1]``; the
    block's stream ``output`` is the pieces concatenated in unit order (a ``concat`` node, or the
    one piece). ``input`` is None when the stream starts in the block (no slices then); a slice or
    output that nothing reads is dropped after lowering and recorded as None."""

    name: str
    input: str | None
    slices: tuple[str | None, ...]
    pieces: tuple[str, ...]
    output: str | None

    @property
    def nodes(self) -> frozenset[str]:
        """The nodes of the stream inside its block: the units' slices and pieces and the collected
        output (not the incoming stream, which lies before the block)."""
        return frozenset(n for n in (*self.slices, *self.pieces, self.output) if n is not None) - {self.input}


@dataclass(frozen=True, slots=True, kw_only=True)  # 12 fields: constructed by name
class BlockInfo:
    name: str  # the block's scope, "block1"
    pattern: str  # str() of the pattern
    kind: str  # "concat", "add", "wsum" (aggregation of a per-unit pattern) or "split"
    # "all", "new", "last", "next" (what a further unit would read), "sinks" / "mean" (the units no
    # unit reads, joined by the aggregate / averaged) or a rule's text
    output_mode: str
    input: str  # node id of the block input
    features: tuple[Feature, ...]
    units: tuple[UnitInfo, ...]
    output: str  # node id of the block output
    span: Span | None = None
    outputs: tuple[int, ...] = ()  # the feature indices the block output holds, in order
    # The order of every unit's concatenation: "ascending" (x_0 first, torchvision's) or
    # "descending" (nearest first: HarDNet's reference code). ``UnitInfo.reads`` stays ascending.
    order: str = "ascending"
    streams: tuple[StreamInfo, ...] = ()  # the named streams the block carries (StreamInfo)

    def feature_node(self, j: int) -> str:
        for f in self.features:
            if f.index == j:
                return f.node
        raise KeyError(j)

    def feature_label(self, j: int) -> str:
        """How every view (summary, drawings) names feature ``j``: ``x{j}``; in a split block the
        paper's names, subsets x1 .. xs (indices 1-s .. 0) and unit outputs y2 .. ys (index i).

        >>> from netdsl.api import compile_spec
        >>> b = compile_spec("res2net50_26w_4s", size=64).graph["blocks"][0]
        >>> b.pattern, [b.feature_label(j) for j in (-3, 0, 2)]
        ('split(scale=4)', ['x1', 'x4', 'y2'])
        """
        if self.kind == "split":
            subsets = sum(1 for f in self.features if f.index <= 0)
            return f"x{j + subsets}" if j <= 0 else f"y{j}"
        return f"x{j}"

    def reads_label(self, reads: tuple[int, ...], limit: int | None = None) -> str:
        """The features a unit reads, by :meth:`feature_label`; more than ``limit`` are shortened
        to a range (``x0..x11 (12)``) or the first three (``x0, x2, x5, ... (9)``)."""
        names = [self.feature_label(j) for j in reads]
        if limit is None or len(reads) <= limit:
            return ", ".join(names)
        if list(reads) == list(range(reads[0], reads[-1] + 1)):
            return f"{names[0]}..{names[-1]} ({len(reads)})"
        return ", ".join(names[:3]) + f", ... ({len(reads)})"

    def aggregate_order(self, unit: UnitInfo) -> tuple[int, ...]:
        """The features ``unit`` reads in the order its aggregate concatenates them."""
        return unit.reads[::-1] if self.order == "descending" else unit.reads

    def connection_sets(self) -> dict[int, tuple[int, ...]]:
        return {u.index: u.reads for u in self.units}

    @property
    def connection_count(self) -> int:
        return sum(len(u.reads) for u in self.units)


def topo_nodes(graph: nx.DiGraph) -> list[str]:
    """Nodes in a deterministic topological order (ties broken by insertion order)."""
    order = {n: k for k, n in enumerate(graph.nodes)}
    return list(nx.lexicographical_topological_sort(graph, key=order.__getitem__))


def blocks(graph: nx.DiGraph) -> list[BlockInfo]:
    return list(graph.graph.get("blocks", ()))


def enclosing(graph: nx.DiGraph, node: str) -> list[tuple[str, int | None]]:
    """The blocks holding ``node``, innermost first, each with the index of its unit that holds
    the node (None: the block's own ops outside its units), from the ``block``/``unit`` node
    attributes and ``graph.graph["block_parents"]``."""
    d = graph.nodes[node]
    parents = graph.graph.get("block_parents", {})
    out: list[tuple[str, int | None]] = []
    block, unit = d.get("block"), d.get("unit")
    while block is not None:
        out.append((block, unit))
        block, unit = parents.get(block, (None, None))
    return out


def block_members(graph: nx.DiGraph, block: str) -> dict[str, int | None]:
    """Every node inside ``block`` (nested blocks included), in graph order -> the index of its
    unit of ``block`` (None for the block's own ops outside its units)."""
    out: dict[str, int | None] = {}
    for n in graph.nodes:
        for b, unit in enclosing(graph, n):
            if b == block:
                out[n] = unit
                break
    return out


def top_level_blocks(graph: nx.DiGraph) -> list[BlockInfo]:
    """Blocks that are not inside a unit of another block (Dense2Net's split blocks are)."""
    nested = graph.graph.get("block_parents", {})
    return [b for b in blocks(graph) if b.name not in nested]


def iter_ops(graph: nx.DiGraph, kind: str | None = None) -> Iterator[tuple[str, dict]]:
    for n, data in graph.nodes(data=True):
        if kind is None or data["kind"] == kind:
            yield n, data


def graph_outputs(graph: nx.DiGraph) -> tuple[tuple[str, str], ...]:
    """The network's outputs as ``(name, node)`` pairs in declaration order: the spec's
    ``output(a, b, ...)`` (``graph.graph["outputs"]``), else the one output ``("output",
    graph.graph["output"])``. ``graph.graph["output"]`` is always the first output's node."""
    declared = graph.graph.get("outputs")
    if declared:
        return tuple((str(name), str(node)) for name, node in declared)
    return (("output", graph.graph["output"]),)


def output_nodes(graph: nx.DiGraph) -> frozenset[str]:
    """The nodes whose values the network returns (their value must stay observable: no pass may
    fold them away, no in-place op may overwrite them)."""
    return frozenset(node for _, node in graph_outputs(graph))


def add_op(graph: nx.DiGraph, node_id: str, kind: str, inputs: tuple[str, ...], attrs: dict, **extra) -> str:
    """Add one op node and its input edges. Node ids are unique dotted names."""
    if node_id in graph:
        raise ValueError(f"duplicate node id {node_id}")
    graph.add_node(node_id, kind=kind, inputs=tuple(inputs), attrs=dict(attrs), **extra)
    for pos, src in enumerate(inputs):
        if graph.has_edge(src, node_id):
            graph.edges[src, node_id]["index"] += (pos,)
        else:
            graph.add_edge(src, node_id, index=(pos,))
    return node_id
