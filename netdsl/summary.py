"""Per-layer summary of a compiled graph: output shape, parameters, FLOPs, connections."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import networkx as nx

from .ir.graph import blocks, graph_outputs, topo_nodes
from .ops import fmt_shape


@dataclass(frozen=True, slots=True)
class Row:
    name: str  # "stem", "block1.unit3", "transition1"
    kind: str  # "unit", "block", "op", "template"
    shape: str
    params: int
    flops: int
    reads: tuple[int, ...] | None = None
    reads_label: str | None = None  # the reads as summary and drawings name them (BlockInfo.reads_label)


def layer_key(node: str, graph: nx.DiGraph) -> str:
    """The summary row a node's counts go to: its ``layer`` attribute (a unit of a top-level block,
    ``block1.unit3``, or the top-level statement, ``transition1``); a hand-built graph without
    membership attributes gets one row per node."""
    return graph.nodes[node].get("layer", node)


def rows(graph: nx.DiGraph) -> list[Row]:
    units = {u.scope: u for b in blocks(graph) for u in b.units}
    block_of = {u.scope: b for b in blocks(graph) for u in b.units}
    block_names = {b.name for b in blocks(graph)}
    acc: dict[str, list] = {}
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        if d["kind"] == "input":
            continue
        key = layer_key(n, graph)
        entry = acc.setdefault(key, [None, 0, 0])
        if d.get("role") != "stream_output" or entry[0] is None:  # a collected stream is no layer's output
            entry[0] = d["shape"]
        entry[1] += d.get("params", 0)
        entry[2] += d.get("flops", 0)
    out = []
    for key, (shape, params, flops) in acc.items():
        if key in units:
            kind, reads = "unit", units[key].reads
            shape = graph.nodes[units[key].output]["shape"]  # not a stream piece computed after it
            label = block_of[key].reads_label(reads, limit=6)
        else:
            kind, reads, label = ("block" if key in block_names else "layer"), None, None
        out.append(Row(key, kind, fmt_shape(shape), params, flops, reads, label))
    return out


def summary_dict(graph: nx.DiGraph) -> dict:
    """Everything ``netdsl summary --json`` prints."""
    block_rows = [
        {
            "name": b.name,
            "pattern": b.pattern,
            "kind": b.kind,
            "output": b.output_mode,
            "units": len(b.units),
            "connections": b.connection_count,
            "channels_read": channels_read(graph, b),
            "out_shape": list(graph.nodes[b.output]["shape"]),
        }
        for b in blocks(graph)
    ]
    return {
        "name": graph.graph["name"],
        "preset": graph.graph.get("preset"),
        "file": graph.graph.get("file"),
        "parameters": graph.graph.get("params", {}),
        "input": list(graph.nodes[graph.graph["input"]]["shape"]),
        "output": list(graph.nodes[graph.graph["output"]]["shape"]),
        # every output (name, node, shape), in forward's order; one entry for a single-output network
        "outputs": [
            {"name": name, "node": node, "shape": list(graph.nodes[node]["shape"])}
            for name, node in graph_outputs(graph)
        ],
        "params": graph.graph["total_params"],
        "flops": graph.graph["total_flops"],
        "flops_convention": "multiply-accumulates (1 MAC = 1 FLOP, as the seed papers count)",
        "connections": sum(b["connections"] for b in block_rows),
        "channels_read": sum(b["channels_read"] for b in block_rows),
        "blocks": block_rows,
        "layers": [asdict(r) for r in rows(graph)],
        "memory": memory(graph),
    }


def channels_read(graph: nx.DiGraph, block) -> int:
    """Channels the block's units read, summed over units: the width of every feature in every
    connection set. A unit's parameters grow with it (each channel read costs its first BN and
    conv one more input channel), so two connection patterns cost the same exactly when they read
    as many channels -- which is what the SparseNet far/near study turns on (docs/zoo.md)."""
    width = {f.index: f.channels(graph) for f in block.features}
    return sum(width[j] for u in block.units for j in u.reads)


def memory(graph: nx.DiGraph) -> dict:
    """Concat copies and activation memory per sample, naive vs planned (see :mod:`netdsl.memory`);
    an unplanned graph is planned on a copy, so the figures do not depend on ``--opt``."""
    from .memory import memory_report
    from .passes import plan_concat

    if not graph.graph.get("planned"):
        graph = plan_concat.run(graph.copy()).graph
    return memory_report(graph, batch=1)
