"""The ONNX backend's op table and emitter: an IR graph with bound weights -> ``onnx.ModelProto``.

Emitted directly with ``onnx.helper`` (no tracing): one ONNX node per IR op, named after the
node id, whose output tensor carries the same name, so Netron shows the spec's own names
(``block1.unit3.conv1``). Where ONNX has no single operator (SiLU, squeeze-and-excitation, the
affine of an inference-time BN) the helper nodes are named ``<node id>/<part>`` and the node
that produces the op's value still carries the id. Weights are initializers named like the
torch state_dict keys (``<node id>.weight``). The batch dimension is symbolic (``N``).

Each op's emission is its registry entry's ``onnx`` (:mod:`netdsl.ops`); this module is the builder
and the model around them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...ir.graph import topo_nodes
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
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        get(d["kind"]).onnx(b, checked_onnx_name(n), d, [checked_onnx_name(i) for i in d["inputs"]])
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


def concat_stats(graph: nx.DiGraph, bytes_per_value: int = 4) -> tuple[int, int]:
    """(number of concat nodes, bytes they copy per sample): a concat writes its whole output.

    >>> import netdsl
    >>> concat_stats(netdsl.compile_spec("densenet_bc100_k12", depth=10, k=4))
    (3, 61696)
    """
    nodes = [d for _, d in graph.nodes(data=True) if d["kind"] == "concat"]
    return len(nodes), sum(int(np.prod(d["shape"])) * bytes_per_value for d in nodes)
