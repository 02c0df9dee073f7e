"""The ONNX backend's op table and emitter: an IR graph with bound weights -> ``onnx.ModelProto``.

Emitted directly with ``onnx.helper`` (no tracing): one ONNX node per IR op, named after the
node id, whose output tensor carries the same name, so Netron shows the spec's own names
(``block1.unit3.conv1``). Where ONNX has no single operator (SiLU, squeeze-and-excitation, the
affine of an inference-time BN) the helper nodes are named ``<node id>/<part>`` and the node
that produces the op's value still carries the id. Weights are initializers named like the
torch state_dict keys (``<node id>.weight``). The batch dimension is symbolic (``N``).

Each op's emission is its registry entry's ``onnx`` (:mod:`netdsl.ops`); this module is the builder
and the model around them. Where the graph is planned (:mod:`netdsl.passes.plan_concat`), the
concatenations are the block's :class:`~netdsl.ir.plan.BufferPlan`'s: ONNX has no views of a
buffer, so each planned read is materialized from the stored values in the buffer's channel
order -- one ``Concat`` of the read it extends (the plan's ``extends``: a dense block's buffer
grows by one feature per unit) and the stored values (or ``Slice`` s of them, ``<read>/slice<k>``)
after it -- and the slice nodes the plan elides are not emitted. This module decides no
placement itself. An average pool after a 1x1 conv it commutes with
(:func:`~netdsl.ir.plan.pool_before_conv`, DenseNet's transitions) runs first: the pool node (its
id) writes ``<conv id>/pooled``, and the conv node (its id) writes the pool's output tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...ir.graph import topo_nodes
from ...ir.plan import BufferPlan, Read, buffer_plans, pool_before_conv
from ...naming import checked_onnx_name
from ...ops import REGISTRY, get

# Opset 20 has Gelu as one operator; onnxruntime >= 1.17 (our floor) runs it.
OPSET = 20
# onnx 1.23 writes IR version 14 by default; onnxruntime 1.17..1.31 read up to 9..13. Opset 20
# needs IR 9, the oldest version every supported onnxruntime reads.
IR_VERSION = 9


@dataclass
class Builder:
    """Collects nodes and initializers while the emitter walks the graph."""

    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def const(self, name: str, value, dtype=np.float32) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype)), name))
        return name


# op kind -> emit(builder, node id, node data, input tensor names): the registry's ONNX emissions
ONNX_OPS: dict[str, Callable] = {kind: op.onnx for kind, op in REGISTRY.items()}


def _value(name: str, shape: tuple) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])


def emit_onnx(graph: nx.DiGraph, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model of an IR graph whose stateful nodes carry ``weights`` (numpy arrays).

    >>> import netdsl
    >>> from netdsl.backends.onnx.export import export
    >>> model, report = export(netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4))
    >>> model.graph.input[0].name, [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    ('input', ['N', 3, 32, 32])
    >>> model.graph.node[0].name, model.opset_import[0].version, model.ir_version
    ('stem', 20, 9)
    """
    b = Builder()
    reads = {r.node: (plan, r) for plan in buffer_plans(graph).values() for r in plan.reads}
    slices: dict[tuple[str, int, int], str] = {}  # (stored node, start, stop) -> its Slice, emitted once
    pool_of = {conv: pool for conv in graph.nodes if (pool := pool_before_conv(graph, conv)) is not None}
    pooled_first = set(pool_of.values())
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        if d.get("elided") or n in pooled_first:  # a slice only planned reads consume; a pool emitted first
            continue
        if n in reads:
            _emit_read(b, *reads[n], slices)
            continue
        xs = [checked_onnx_name(i) for i in d["inputs"]]
        pool = pool_of.get(n)
        if pool is not None:  # the pool, then the conv on a quarter of the pixels: its output is the pool's value
            get("avgpool").onnx(b, checked_onnx_name(pool), graph.nodes[pool], xs)
            xs = [f"{checked_onnx_name(n)}/pooled"]
            b.nodes[-1].output[0] = xs[0]
        get(d["kind"]).onnx(b, checked_onnx_name(n), d, xs)
        if pool is not None:
            b.nodes[-1].output[0] = checked_onnx_name(pool)
        if d.get("folded"):
            b.nodes[-1].doc_string = "folded BatchNorm: " + ", ".join(d["folded"])
    inp = graph.graph["input"]
    g = helper.make_graph(
        b.nodes,
        graph.graph.get("name", "net"),
        [_value(inp, graph.nodes[inp]["shape"])],
        _graph_outputs(b, graph),
        initializer=b.initializers,
    )
    model = helper.make_model(g, producer_name="netdsl", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    from ..._version import __version__

    model.producer_version = __version__
    helper.set_model_props(model, dict(metadata or {}))
    return model


def _emit_read(b: Builder, plan: BufferPlan, read: Read, slices: dict[tuple[str, int, int], str]) -> None:
    """A planned read as its plan has it: the read it extends, then the stored values (whole, or a
    Slice of the channels it takes) in the buffer's channel order, joined by one Concat named
    after the read's node (an Identity when it is one earlier value, a Slice when one part of one)."""
    name = checked_onnx_name(read.node)
    parts = [] if read.extends is None else [checked_onnx_name(read.extends)]
    pieces = plan.pieces(read)
    for k, (st, lo, hi) in enumerate(pieces, 1):
        src = checked_onnx_name(st.node)
        if (lo, hi) == (st.start, st.stop):
            parts.append(src)
            continue
        key = (st.node, lo, hi)
        if key not in slices:
            out = name if len(pieces) == 1 and not parts else f"{name}/slice{k}"
            starts = b.const(f"{out}.starts", [lo - st.start], np.int64)
            ends = b.const(f"{out}.ends", [hi - st.start], np.int64)
            slices[key] = b.node("Slice", [src, starts, ends, b.const(f"{out}.axes", [1], np.int64)], out)
        parts.append(slices[key])
    if len(parts) > 1:
        b.node("Concat", parts, name, axis=1)
    elif parts[0] != name:
        b.node("Identity", parts, name)


def _graph_outputs(b: Builder, graph: nx.DiGraph) -> list[onnx.ValueInfoProto]:
    """The graph's output values. One undeclared output is its node's tensor (named by the node
    id, as always); declared outputs (``output(a, b)``) are one graph output each, named after the
    declaration: the node's own tensor when its id is that name, else an Identity of it."""
    declared = graph.graph.get("outputs")
    if not declared:
        out = graph.graph["output"]
        return [_value(checked_onnx_name(out), graph.nodes[out]["shape"])]
    values = []
    for name, node in declared:
        if name != node:
            b.node("Identity", [checked_onnx_name(node)], checked_onnx_name(name))
        values.append(_value(name, graph.nodes[node]["shape"]))
    return values


def concat_stats(model: onnx.ModelProto, graph: nx.DiGraph, bytes_per_value: int = 4) -> tuple[int, int]:
    """(number of Concat nodes in ``model``, emitted from ``graph``; the bytes they copy per
    sample): a Concat writes its whole output, a value of the graph (every Concat is named after
    the node whose value it computes).

    >>> import netdsl
    >>> from netdsl.backends.onnx.export import export
    >>> model, report = export(netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4))
    >>> report.concat_nodes, report.concat_bytes
    (3, 61696)
    """
    ids = {checked_onnx_name(n): n for n in graph}
    outs = [ids[n.output[0]] for n in model.graph.node if n.op_type == "Concat"]
    return len(outs), sum(int(np.prod(graph.nodes[n]["shape"])) * bytes_per_value for n in outs)
