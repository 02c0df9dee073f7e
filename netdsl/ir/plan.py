"""The concat plan of one block as one object: :class:`BufferPlan`, made by
:mod:`netdsl.passes.plan_concat` and kept on the IR (``graph.graph["buffer_plans"][block]``), read
by the backends and the memory report, never re-derived by them. (The pass also marks each node
it plans -- ``stores``, ``read``, ``segment`` -- for the per-node views: drawings, lint, summary.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    or a "split" (its per-channel consumer runs once per run)."""

    node: str
    runs: Runs
    strategy: str
    copy_bytes: int


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

    def runs_of(self, node: str) -> Runs | None:
        """The channels ``node`` is in the buffer: its read, else its own stored range (a unit that
        reads one feature reads it where it was stored); None when the plan does not hold it."""
        read = self.read_of(node)
        if read is not None:
            return read.runs
        store = self.store_of(node)
        return None if store is None else ((store.start, store.stop),)


def buffer_plans(graph) -> Mapping[str, BufferPlan]:
    """The plans of a planned graph, by block name (empty for an unplanned one)."""
    return graph.graph.get("buffer_plans", {})


def segments(graph) -> dict[str, tuple[str, ...]]:
    """Every plan's per-channel chains: head node -> the chain (head first); empty unplanned."""
    return {chain[0]: chain for plan in buffer_plans(graph).values() for chain in plan.segments}
