"""The concat plan of one block as one object: :class:`BufferPlan`, made by
:mod:`netdsl.passes.plan_concat` and kept on the IR (``graph.graph["buffer_plans"][block]``), read
by the backends and the memory report, never re-derived by them. (The pass also marks each node
it plans -- ``stores``, ``read``, ``segment`` -- for the per-node views: drawings, lint, summary.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .graph import output_nodes

Runs = tuple[tuple[int, int], ...]  # channel ranges [start, stop) of a buffer, in order


@dataclass(frozen=True, slots=True)
class Store:
    """``node``'s value is written into channels [start, stop) of the buffer."""

    node: str
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class Read:
    """``node`` (a unit's aggregate or the block output) equals the buffer's ``runs``, joined: a
    "view" (one run), a "gather" (a materialized concatenation copying ``copy_bytes`` per sample)
    or a "split" (its per-channel consumer runs once per run).

    ``extends``: the read before it in schedule order whose channels are the first channels of
    this one (the longest such; None when there is none): a backend without views of a buffer
    (ONNX) materializes this read as that one joined with the rest (:meth:`BufferPlan.pieces`),
    so a dense block's buffer grows by one feature per unit instead of being copied whole."""

    node: str
    runs: Runs
    strategy: str
    copy_bytes: int
    extends: str | None = None


@dataclass(frozen=True, slots=True)
class BufferPlan:
    """One block's feature buffer: its shape ``(C, H, W)``, the writes that fill it (layout
    order: a concat block's input first, then every feature by index), the reads its units'
    aggregates and its output make of it, and the per-channel chains (``segments``: head node ->
    the chain, head first) that run on a read as one step."""

    block: str
    buffer: str  # the buffer's name, "block1.buffer"
    shape: tuple[int, ...]
    stores: tuple[Store, ...]
    reads: tuple[Read, ...]
    segments: tuple[tuple[str, ...], ...] = ()

    @property
    def channels(self) -> int:
        return self.shape[0]

    def store_of(self, node: str) -> Store | None:
        return next((s for s in self.stores if s.node == node), None)

    def read_of(self, node: str) -> Read | None:
        return next((r for r in self.reads if r.node == node), None)

    def pieces(self, read: Read) -> tuple[tuple[Store, int, int], ...]:
        """The channels of ``read`` after those of the read it extends, in order, as pieces of the
        stored values: ``(store, start, stop)`` is the buffer's channels [start, stop), all within
        ``store`` (the whole stored value when they are its range)."""
        runs: Runs | None = read.runs
        if read.extends is not None:
            extended = self.read_of(read.extends)
            runs = None if extended is None else after_prefix(read.runs, extended.runs)
        if runs is None:
            raise ValueError(f"{self.block}: {read.node} does not begin with the channels of {read.extends}")
        return self.stored_in(runs)

    def stored_in(self, runs: Runs) -> tuple[tuple[Store, int, int], ...]:
        """``runs`` as pieces of the stored values, in order: ``(store, start, stop)``."""
        out = []
        for a, b in runs:
            for st in sorted(self.stores, key=lambda s: s.start):
                lo, hi = max(a, st.start), min(b, st.stop)
                if lo < hi:
                    out.append((st, lo, hi))
        if sum(hi - lo for _, lo, hi in out) != sum(b - a for a, b in runs):
            raise ValueError(f"{self.block}: the stores do not cover the channels {runs}")
        return tuple(out)

    def runs_of(self, node: str) -> Runs | None:
        """The channels ``node`` is in the buffer: its read, else its own stored range (a unit that
        reads one feature reads it where it was stored); None when the plan does not hold it."""
        read = self.read_of(node)
        if read is not None:
            return read.runs
        store = self.store_of(node)
        return None if store is None else ((store.start, store.stop),)


def after_prefix(runs: Runs, prefix: Runs) -> Runs | None:
    """``runs`` without their first channels when those are ``prefix`` (both merged: adjacent
    ranges joined), else None.

    >>> after_prefix(((0, 12), (16, 24)), ((0, 12),)), after_prefix(((0, 20),), ((0, 12),))
    (((16, 24),), ((12, 20),))
    >>> after_prefix(((0, 12),), ((4, 12),)) is None, after_prefix(((0, 12),), ((0, 12),))
    (True, ())
    """
    k = len(prefix)
    if k == 0 or k > len(runs) or tuple(runs[: k - 1]) != tuple(prefix[: k - 1]):
        return None
    (a, b), (pa, pb) = runs[k - 1], prefix[-1]
    if a != pa or pb > b:
        return None
    return (((pb, b),) if pb < b else ()) + tuple(runs[k:])


def bn_relu_head(graph, chain: tuple[str, ...]) -> bool:
    """Whether ``chain`` is BN -> ReLU [-> conv [-> avgpool]], the head a backend may run on a
    buffer's runs as one step (the torch module's ``_BatchNormReluConv``) and which then keeps the
    buffer for backward: the torch generator and the memory model ask this one question. An
    average pool ends it only where it commutes with the conv (:func:`pool_before_conv`)."""
    kinds = [graph.nodes[n]["kind"] for n in chain]
    if kinds == ["bn", "act", "conv", "avgpool"] and pool_before_conv(graph, chain[2]) != chain[3]:
        return False
    heads = (["bn", "act"], ["bn", "act", "conv"], ["bn", "act", "conv", "avgpool"])
    return kinds in heads and graph.nodes[chain[1]]["attrs"].get("fn") == "relu"


def pool_before_conv(graph, conv: str) -> str | None:
    """The average pool that ``conv`` feeds and that may run before it, or None. A 1x1 stride-1
    unpadded conv is the same linear map at every pixel and an unpadded average pool a convex
    combination of pixels, so ``pool(conv(x)) == conv(pool(x))`` (the bias too: the weights sum
    to 1), at a quarter of the conv's work behind a 2x2 pool (DenseNet's transitions). The
    network (its IR, parameters and FLOPs) stays as written; a backend that runs the head as one
    step (:func:`bn_relu_head`) pools first. Only where the conv's own value is seen by nothing
    else: the pool is its only consumer and it is no output and stored nowhere."""
    d, succ = graph.nodes[conv], list(graph.successors(conv))
    a = d["attrs"]
    if d["kind"] != "conv" or (a["kernel"], a["stride"], a["padding"], a.get("dilation", 1)) != (1, 1, 0, 1):
        return None
    if len(succ) != 1 or d.get("stores") or conv in output_nodes(graph):
        return None
    p = graph.nodes[succ[0]]
    ok = p["kind"] == "avgpool" and p["attrs"]["padding"] == 0 and not p["attrs"]["ceil_mode"]
    return succ[0] if ok else None


def buffer_plans(graph) -> Mapping[str, BufferPlan]:
    """The plans of a planned graph, by block name (empty for an unplanned one)."""
    return graph.graph.get("buffer_plans", {})


def segments(graph) -> dict[str, tuple[str, ...]]:
    """Every plan's per-channel chains: head node -> the chain (head first); empty unplanned."""
    return {chain[0]: chain for plan in buffer_plans(graph).values() for chain in plan.segments}
