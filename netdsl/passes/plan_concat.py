"""Concat placement: give every concatenating block one feature buffer and every feature a
channel range in it, so that the block's concatenations become views.

netdsl knows a block's whole connectivity before anything runs, so it can lay the features
``x_0, x_1, ..., x_n`` out once, in index order, in one ``(C, H, W)`` buffer:

- a dense unit reads ``x_0..x_{i-1}``: a prefix of the buffer; the block output is the buffer;
- a window unit reads the ``g`` most recent features: one contiguous range;
- a path(far, near) unit reads two ranges: the pass picks, per unit, by :func:`choose_strategy`,
  either to **gather** them (one materialized concat) or to **split** the consumer
  (BN and activations are per-channel, and a 1x1 conv over ``[A, B]`` is
  ``conv_A(A) + conv_B(B)``);
- a split (Res2Net) block's outputs ``y_1..y_s`` land in one output buffer whose whole is the
  block output; ``output=new`` (SeqConv) is a view of the buffer's tail.

The plan of each block is one :class:`netdsl.ir.plan.BufferPlan` in
``graph.graph["buffer_plans"]``, what the backends and the memory report read. Each planned node is
marked too, for the per-node views (the attribute contract is in :mod:`netdsl.ir.ops`):
``stores`` on producers, ``read`` on the aggregate/output nodes, ``elided`` on slice nodes whose
only consumers are planned reads, ``segment``/``in_segment`` on the per-channel chains that read
a view, and ``graph.graph["buffers"]``. The graph's ops are unchanged,
so a backend that ignores the plan still computes the same function.

>>> from netdsl.api import compile_spec
>>> g = compile_spec("densenet_bc100_k12", opt=1)
>>> g.nodes["block1.unit3.cat"]["read"]["runs"], g.nodes["block1.unit3.cat"]["read"]["copy_bytes"]
(((0, 48),), 0)
"""

from __future__ import annotations

import networkx as nx

from ..ir.channels import DTYPE_BYTES, merge_runs
from ..ir.graph import BlockInfo, blocks, output_nodes, topo_nodes
from ..ir.plan import BufferPlan, Read, Store, after_prefix, bn_relu_head, pool_before_conv
from ..ops import get
from .base import PassResult
from .rewire import copy_graph


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Adjacent ranges of one buffer joined (the plan's byte figures are per sample, float32)."""
    return tuple((a, b) for _, a, b in merge_runs((None, a, b) for a, b in ranges))


def consumer_chain(graph: nx.DiGraph, node: str) -> list[str]:
    """The per-channel ops (the registry's ``per_channel``: bn/act/affine) after ``node``, each the
    single consumer of the one before, followed by a 1x1 ungrouped stride-1 conv if there is one:
    the ops a planned read can fuse with (eval: one affine+activation pass; training: recomputed
    in backward)."""
    chain: list[str] = []
    cur = node
    outputs = output_nodes(graph)
    while True:
        succ = list(graph.successors(cur))
        if len(succ) != 1 or cur in outputs or graph.nodes[cur].get("stores"):
            return chain
        nxt = succ[0]
        d = graph.nodes[nxt]
        if get(d["kind"]).per_channel:  # may run on each channel range of a split read
            chain.append(nxt)
            cur = nxt
            continue
        a = d["attrs"]
        if d["kind"] == "conv" and a["kernel"] == 1 and a["stride"] == 1 and a["groups"] == 1 and a["padding"] == 0:
            chain.append(nxt)
        return chain


def _write_segments(graph: nx.DiGraph) -> None:
    """Write the per-channel chains that read a planned view onto the IR: ``segment`` (the
    chain's node ids, head first) on each head, ``in_segment`` (the head) on every member.

    A chain starts at a per-channel op whose input is a buffer view (a planned read or a stored
    feature) and runs as :func:`consumer_chain` allows, a BN -> ReLU -> conv head on to the
    average pool after its conv where the two commute (DenseNet's transitions:
    :func:`~netdsl.ir.plan.pool_before_conv`); after a "split" read it starts at the read's
    consumer. Executors run a chain as one step (eval: a fused affine+activation pass; training:
    recomputed in backward), and :mod:`netdsl.memory` accounts for it the same way."""
    nodes = graph.nodes
    covered: set[str] = set()

    def mark(chain: list[str]) -> None:
        nodes[chain[0]]["segment"] = tuple(chain)
        for c in chain:
            nodes[c]["in_segment"] = chain[0]
        covered.update(chain)

    def pooled(chain: list[str]) -> list[str]:  # a BN -> ReLU -> conv head on to a pool that commutes
        pool = pool_before_conv(graph, chain[-1]) if len(chain) == 3 else None
        return chain + [pool] if pool is not None and bn_relu_head(graph, (*chain, pool)) else chain

    for n in graph.nodes:
        if nodes[n].get("read", {}).get("strategy") == "split":
            mark(pooled(consumer_chain(graph, n)))
    for n in topo_nodes(graph):
        d = nodes[n]
        if not get(d["kind"]).per_channel or n in covered:
            continue
        src = nodes[d["inputs"][0]]
        if src.get("read") or src.get("stores"):
            mark(pooled([n] + consumer_chain(graph, n)))


def _block_segments(graph: nx.DiGraph, buffer: str) -> tuple[tuple[str, ...], ...]:
    """The chains whose head reads ``buffer`` (a planned read of it or a value stored in it)."""
    out = []
    for _, d in graph.nodes(data=True):
        if "segment" not in d:
            continue
        src = graph.nodes[d["inputs"][0]]
        read = src.get("read")
        if (read is not None and read["buffer"] == buffer) or any(s[0] == buffer for s in src.get("stores", ())):
            out.append(tuple(d["segment"]))
    return tuple(out)


def choose_strategy(runs, hw: int, chain_kinds: list[str], conv_out: int | None) -> str:
    """The cost model for a read of several channel ranges, in bytes moved per sample.

    gather: the concat reads and writes every read channel once: ``2 * C * HW``.
    split:  the consumer runs once per range; only the 1x1 conv's partial sums cost extra --
            each additional range reads two ``conv_out``-channel maps and writes one:
            ``3 * (runs - 1) * conv_out * HW``. Possible only when the chain ends in that conv.

    >>> choose_strategy(((0, 112), (200, 312)), 64, ["bn", "act", "conv"], 64)
    'split'
    >>> choose_strategy(((0, 16), (32, 48)), 64, ["bn", "act", "conv"], 128)
    'gather'
    >>> choose_strategy(((0, 48),), 64, [], None)
    'view'
    """
    if len(runs) == 1:
        return "view"
    if not chain_kinds or chain_kinds[-1] != "conv" or conv_out is None:
        return "gather"
    channels = sum(b - a for a, b in runs)
    gather = 2 * channels * hw
    split = 3 * (len(runs) - 1) * conv_out * hw
    return "split" if split < gather else "gather"


def _layout(graph: nx.DiGraph, b: BlockInfo) -> tuple[dict[int, tuple[int, int]], list[tuple[str, int, int]]]:
    """Feature index -> buffer channel range, and the (node, start, stop) writes that fill it."""
    ranges: dict[int, tuple[int, int]] = {}
    writes: list[tuple[str, int, int]] = []
    if b.kind == "split":
        feats = [f for f in b.features if f.index >= 1]
        offset = 0
    else:
        feats = [f for f in b.features if f.index >= 1]
        c0 = graph.nodes[b.input]["shape"][0]
        for f in b.features:
            if f.index <= 0:
                ranges[f.index] = (0, c0) if f.start is None or f.stop is None else (f.start, f.stop)
        writes.append((b.input, 0, c0))
        offset = c0
    for f in feats:
        c = f.channels(graph)
        ranges[f.index] = (offset, offset + c)
        writes.append((f.node, offset, offset + c))
        offset += c
    return ranges, writes


def _read_runs(graph: nx.DiGraph, node: str, buf_of: dict[str, tuple[str, int, int]]):
    """Channel runs in one buffer that ``node`` (a concat or slice of stored nodes) equals, or None."""
    d = graph.nodes[node]
    pieces = []
    if d["kind"] == "slice":
        src = buf_of.get(d["inputs"][0])
        if src is None:
            return None
        pieces.append((src[0], src[1] + d["attrs"]["start"], src[1] + d["attrs"]["stop"]))
    elif d["kind"] == "concat":
        for i in d["inputs"]:
            sub = _read_runs(graph, i, buf_of) if graph.nodes[i]["kind"] == "slice" else None
            if i in buf_of:
                pieces.append(buf_of[i])
            elif sub is not None:
                pieces.extend((sub[0], a, b) for a, b in sub[1])
            else:
                return None
    else:
        return None
    buffers = {p[0] for p in pieces}
    if len(buffers) != 1:
        return None
    return buffers.pop(), _merge([(a, b) for _, a, b in pieces])


def _with_extends(reads: list[Read], pos: dict[str, int]) -> tuple[Read, ...]:
    """The reads, each with the earlier read (schedule order) that is its longest prefix."""
    out = []
    for r in reads:
        earlier = [e for e in reads if pos[e.node] < pos[r.node] and after_prefix(r.runs, e.runs) is not None]
        best = max(earlier, key=lambda e: (sum(b - a for a, b in e.runs), pos[e.node]), default=None)
        out.append(r if best is None else Read(r.node, r.runs, r.strategy, r.copy_bytes, best.node))
    return tuple(out)


_NODE_MARKS = ("stores", "read", "elided", "segment", "in_segment")
_GRAPH_MARKS = ("buffers", "buffer_plans", "planned")


def unplan(graph: nx.DiGraph) -> PassResult:
    """A copy of ``graph`` without the concat plan (``graph`` itself when it has none): what a
    rewrite that removes or replaces nodes (the inference rewrites) runs on before planning again."""
    if not any(k in graph.graph for k in _GRAPH_MARKS):
        return PassResult(graph, False)
    out = copy_graph(graph)
    for _, d in out.nodes(data=True):
        for k in _NODE_MARKS:
            d.pop(k, None)
    for k in _GRAPH_MARKS:
        out.graph.pop(k, None)
    return PassResult(out, True)


def run(graph: nx.DiGraph) -> PassResult:
    """Write the concat plan onto ``graph`` (needs shapes). Idempotent: a planned graph is left as is."""
    if graph.graph.get("planned"):
        return PassResult(graph, False)
    pos = {n: k for k, n in enumerate(topo_nodes(graph))}
    buffers: dict[str, dict] = {}
    reads: list[str] = []
    plans: dict[str, tuple[str, tuple, list[Store], list[Read]]] = {}
    for b in blocks(graph):
        if b.kind not in ("concat", "split"):
            continue
        _, writes = _layout(graph, b)
        buf = f"{b.name}.buffer"
        shape = graph.nodes[b.output]["shape"][1:]
        channels = writes[-1][2]
        buffers[buf] = {"block": b.name, "shape": (channels,) + tuple(shape)}
        buf_of: dict[str, tuple[str, int, int]] = {}
        stores = [Store(node, start, stop) for node, start, stop in writes]
        planned_reads: list[Read] = []
        plans[b.name] = (buf, (channels,) + tuple(shape), stores, planned_reads)
        for node, start, stop in writes:
            d = graph.nodes[node]
            d["stores"] = tuple(d.get("stores", ())) + ((buf, start, stop),)
            buf_of.setdefault(node, (buf, start, stop))
        targets = [u.aggregate for u in b.units] + [b.output]
        for node in targets:
            if graph.nodes[node].get("read") or node in buf_of:
                continue
            found = _read_runs(graph, node, buf_of)
            if found is None:
                continue
            name, runs = found
            hw = shape[0] * shape[1]
            chain = consumer_chain(graph, node)
            kinds = [graph.nodes[c]["kind"] for c in chain]
            conv_out = graph.nodes[chain[-1]]["attrs"]["out"] if kinds and kinds[-1] == "conv" else None
            strategy = choose_strategy(runs, hw, kinds, conv_out)
            copied = sum(bb - a for a, bb in runs) * hw * DTYPE_BYTES if strategy == "gather" else 0
            graph.nodes[node]["read"] = {"buffer": name, "runs": runs, "strategy": strategy, "copy_bytes": copied}
            reads.append(node)
            if name == buf:
                planned_reads.append(Read(node, runs, strategy, copied))
    read_set = set(reads)
    outputs = output_nodes(graph)
    for node in reads:
        for i in graph.nodes[node]["inputs"]:
            d = graph.nodes[i]
            if (
                d["kind"] == "slice"
                and not d.get("stores")
                and i not in outputs
                and all(s in read_set for s in graph.successors(i))
            ):
                d["elided"] = True
    graph.graph["buffers"] = buffers
    _write_segments(graph)
    graph.graph["buffer_plans"] = {
        block: BufferPlan(block, buf, shape, tuple(stores), _with_extends(rs, pos), _block_segments(graph, buf))
        for block, (buf, shape, stores, rs) in plans.items()
    }
    graph.graph["planned"] = True
    return PassResult(graph, True)
