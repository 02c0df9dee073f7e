"""Channel orders: where another implementation keeps a netdsl channel.

netdsl concatenates a unit's inputs oldest feature first (unless the block says ``order=descending``:
the graph's concat nodes hold the order). An implementation that concatenates in
another order (pytorchcv's SparseNet lists the fetched features newest first) computes the same
function with the channels of every concatenated tensor permuted, so the modules that read such
a tensor -- the BatchNorms on the way and the first conv or linear layer that mixes channels --
hold their per-input-channel weights in that permuted order. This module follows the permutation
through the IR from each concat to the layers that consume it.

A permutation is a list ``p`` with netdsl channel ``c`` = the other layout's channel ``p[c]``;
None is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import networkx as nx

from ..errors import WeightsError
from ..ir.graph import BlockInfo, blocks, topo_nodes
from ..ops import get

Perm = list[int] | None

# Pools act on each channel alone, so they keep the channel order (the registry flags them
# neither per_channel nor eval_identity).
_POOLS = {"maxpool", "avgpool", "gap"}


def reversed_concats(graph: nx.DiGraph, newest_first: Callable[[BlockInfo], bool]) -> set[str]:
    """The concat nodes (unit inputs and block outputs) of the blocks that ``newest_first`` picks."""
    out: set[str] = set()
    for block in blocks(graph):
        if block.kind != "concat" or not newest_first(block):
            continue
        for node in [u.aggregate for u in block.units] + [block.output]:
            if graph.nodes[node]["kind"] == "concat":
                out.add(node)
    return out


def output_perms(graph: nx.DiGraph, reverse: set[str], layout: str) -> dict[str, Perm]:
    """Each node's output permutation when the concat nodes in ``reverse`` list their inputs in
    the opposite order. Raises :class:`WeightsError` where a permuted tensor reaches an op whose
    weights cannot be permuted (a grouped conv, a channel shuffle, a slice)."""
    perms: dict[str, Perm] = {}
    for node in topo_nodes(graph):
        data = graph.nodes[node]
        kind, inputs = data["kind"], list(data["inputs"])
        ins = [perms[i] for i in inputs]
        if kind == "concat":
            perms[node] = _concat_perm(graph, inputs, ins, node in reverse)
            continue
        if all(p is None for p in ins):
            perms[node] = None
            continue
        if kind in ("conv", "linear") and data["attrs"].get("groups", 1) == 1:
            perms[node] = None  # consumes the order: its weights are permuted along the input dim
        elif len(ins) == 1 and (kind in _POOLS or get(kind).per_channel or get(kind).eval_identity):
            perms[node] = ins[0]
        elif kind == "flatten" and ins[0] is not None:
            perms[node] = _flatten_perm(ins[0], graph.nodes[inputs[0]]["shape"])
        elif get(kind).elementwise and all(p == ins[0] for p in ins):
            perms[node] = ins[0]
        else:
            raise WeightsError(
                f"cannot map the '{layout}' layout's channel order through '{node}' ({kind})",
                None,
                "this layout concatenates features in another order, and this op cannot be permuted to match",
            )
    return perms


def input_perm(graph: nx.DiGraph, perms: dict[str, Perm], node: str) -> Perm:
    """The permutation of the tensor a weight-bearing node reads."""
    inputs = graph.nodes[node]["inputs"]
    return perms[inputs[0]] if inputs else None


def inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for c, f in enumerate(perm):
        inv[f] = c
    return inv


def _concat_perm(graph: nx.DiGraph, inputs: list[str], ins: list[Perm], reverse: bool) -> Perm:
    widths = [graph.nodes[i]["shape"][0] for i in inputs]
    order = list(range(len(inputs)))[::-1] if reverse else list(range(len(inputs)))
    offset, start = 0, [0] * len(inputs)
    for i in order:  # where each input starts in the other layout's tensor
        start[i] = offset
        offset += widths[i]
    perm = [start[i] + (p[c] if p is not None else c) for i, p in enumerate(ins) for c in range(widths[i])]
    return None if perm == list(range(len(perm))) else perm


def _flatten_perm(perm: list[int], shape: tuple[int, ...]) -> list[int]:
    per_channel = prod(shape[1:])
    return [perm[c] * per_channel + k for c in range(len(perm)) for k in range(per_channel)]
