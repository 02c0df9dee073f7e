"""The ONNX backend's op table and emitter: an IR graph with bound weights -> ``onnx.ModelProto``.

Emitted directly with ``onnx.helper`` (no tracing): one ONNX node per IR op, named after the
node id, whose output tensor carries the same name, so Netron shows the spec's own names
(``block1.unit3.conv1``). Where ONNX has no single operator (SiLU, squeeze-and-excitation, the
affine of an inference-time BN) the helper nodes are named ``<node id>/<part>`` and the node
that produces the op's value still carries the id. Weights are initializers named like the
torch state_dict keys (``<node id>.weight``). The batch dimension is symbolic (``N``).

``tests/test_onnx_emit.py`` checks that every kind in :data:`netdsl.ir.ops.OP_KINDS` has an entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import IRError
from ..ir.graph import topo_nodes

# Opset 20 has Gelu as one operator; onnxruntime >= 1.17 (our floor) runs it.
OPSET = 20
# onnx 1.23 writes IR version 14 by default; onnxruntime 1.17..1.31 read up to 9..13. Opset 20
# needs IR 9, the oldest version every supported onnxruntime reads.
IR_VERSION = 9

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")


def checked_name(name: str) -> str:
    """A node id as an ONNX name. Ids come from validated spec identifiers; this re-checks, since
    a name with ``/`` could collide with the helper nodes' ``<id>/<part>`` names."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise IRError(f"node id {name!r} is not a dotted identifier; refusing to put it in an ONNX graph")
    return name


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


def _weight(d: dict, key: str, node: str) -> np.ndarray:
    w = d.get("weights")
    if w is None or key not in w:
        raise IRError(f"node '{node}' ({d['kind']}) has no '{key}' weight bound")
    return np.asarray(w[key], np.float32)


def _conv(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    a = d["attrs"]
    ins = [xs[0], b.const(f"{n}.weight", _weight(d, "weight", n))]
    if a["bias"]:
        ins.append(b.const(f"{n}.bias", _weight(d, "bias", n)))
    b.node("Conv", ins, n, kernel_shape=[a["kernel"]] * 2, strides=[a["stride"]] * 2,
           pads=[a["padding"]] * 4, dilations=[a["dilation"]] * 2, group=a["groups"])


def _bn(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    names = ("weight", "bias", "running_mean", "running_var")
    b.node("BatchNormalization", [xs[0]] + [b.const(f"{n}.{k}", _weight(d, k, n)) for k in names], n,
           epsilon=d["attrs"]["eps"])


def _affine(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    # The affine y = weight * x + bias as BatchNormalization with mean 0, variance 1 and epsilon 0,
    # which computes exactly that: onnxruntime's CPU kernel does it in one pass over the tensor,
    # where Mul + Add make two (measured 10% of DenseNet-BC-100's whole time at batch 64,
    # docs/performance.md). Netron shows it as the BatchNorm it came from.
    c = d["shape"][0]
    stats = [b.const(f"{n}.mean", np.zeros(c)), b.const(f"{n}.var", np.ones(c))]
    b.node("BatchNormalization", [xs[0], b.const(f"{n}.weight", _weight(d, "weight", n)),
                                  b.const(f"{n}.bias", _weight(d, "bias", n))] + stats, n, epsilon=0.0)


def _act(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    a, x = d["attrs"], xs[0]
    fn = a["fn"]
    if fn == "relu6":
        b.node("Clip", [x, b.const(f"{n}.min", 0.0), b.const(f"{n}.max", 6.0)], n)
    elif fn == "silu":
        b.node("Mul", [x, b.node("Sigmoid", [x], f"{n}/sigmoid")], n)
    elif fn == "leaky_relu":
        b.node("LeakyRelu", [x], n, alpha=float(a["slope"]))
    elif fn == "elu":
        b.node("Elu", [x], n, alpha=1.0)
    elif fn == "gelu":
        b.node("Gelu", [x], n, approximate="none")
    else:
        b.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish"}[fn], [x], n)


def _pool(op: str) -> Callable:
    def emit(b: Builder, n: str, d: dict, xs: list[str]) -> None:
        a = d["attrs"]
        extra = {"count_include_pad": int(a["count_include_pad"])} if op == "AveragePool" else {}
        b.node(op, [xs[0]], n, kernel_shape=[a["kernel"]] * 2, strides=[a["stride"]] * 2,
               pads=[a["padding"]] * 4, ceil_mode=int(a["ceil_mode"]), **extra)
    return emit


def _linear(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    ins = [xs[0], b.const(f"{n}.weight", _weight(d, "weight", n))]
    if d["attrs"]["bias"]:
        ins.append(b.const(f"{n}.bias", _weight(d, "bias", n)))
    b.node("Gemm", ins, n, transB=1)


def _se(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    """x * sigmoid(fc2(relu(fc1(gap(x))))), the torch ``SqueezeExcite`` module's computation."""
    bias = d["attrs"]["bias"]
    h = b.node("GlobalAveragePool", [xs[0]], f"{n}/squeeze")
    for fc, post in (("fc1", "Relu"), ("fc2", "Sigmoid")):
        ins = [h, b.const(f"{n}.{fc}.weight", _weight(d, f"{fc}.weight", n))]
        if bias:
            ins.append(b.const(f"{n}.{fc}.bias", _weight(d, f"{fc}.bias", n)))
        h = b.node(post, [b.node("Conv", ins, f"{n}/{fc}", kernel_shape=[1, 1])], f"{n}/{fc}_{post.lower()}")
    b.node("Mul", [xs[0], h], n)


def _slice(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    a = d["attrs"]
    b.node("Slice", [xs[0], b.const(f"{n}.starts", [a["start"]], np.int64),
                     b.const(f"{n}.ends", [a["stop"]], np.int64), b.const(f"{n}.axes", [1], np.int64)], n)


def _add(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    b.node("Add" if len(xs) == 2 else "Sum", xs, n)


def _simple(op: str, **attrs) -> Callable:
    def emit(b: Builder, n: str, d: dict, xs: list[str]) -> None:
        b.node(op, xs, n, **attrs)
    return emit


def _input(b: Builder, n: str, d: dict, xs: list[str]) -> None:
    """The graph input is a value, not a node."""


# op kind -> emit(builder, node id, node data, input tensor names)
ONNX_OPS: dict[str, Callable] = {
    "input": _input,
    "conv": _conv,
    "bn": _bn,
    "affine": _affine,
    "act": _act,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool"),
    "gap": _simple("GlobalAveragePool"),
    "flatten": _simple("Flatten", axis=1),
    "linear": _linear,
    "dropout": _simple("Identity"),
    "identity": _simple("Identity"),
    "se": _se,
    "add": _add,
    "mul": _simple("Mul"),
    "concat": _simple("Concat", axis=1),
    "slice": _slice,
}


def _value(name: str, shape: tuple) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])


def emit_onnx(graph: nx.DiGraph, metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX model of an IR graph whose stateful nodes carry ``weights`` (numpy arrays).

    >>> import netdsl
    >>> from netdsl.backends.onnx_export import export
    >>> model, report = export(netdsl.compile_spec("densenet_bc100_k12", {"depth": 10, "k": 4}))
    >>> model.graph.input[0].name, [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    ('input', ['N', 3, 32, 32])
    >>> model.graph.node[0].name, model.opset_import[0].version, model.ir_version
    ('stem', 20, 9)
    """
    b = Builder()
    for n in topo_nodes(graph):
        d = graph.nodes[n]
        ONNX_OPS[d["kind"]](b, checked_name(n), d, [checked_name(i) for i in d["inputs"]])
        if d.get("folded"):
            b.nodes[-1].doc_string = "folded BatchNorm: " + ", ".join(d["folded"])
    inp, outp = graph.graph["input"], graph.graph["output"]
    g = helper.make_graph(b.nodes, graph.graph.get("name", "net"),
                          [_value(inp, graph.nodes[inp]["shape"])], [_value(outp, graph.nodes[outp]["shape"])],
                          initializer=b.initializers)
    model = helper.make_model(g, producer_name="netdsl", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    from .. import __version__

    model.producer_version = __version__
    helper.set_model_props(model, dict(metadata or {}))
    return model


def concat_stats(graph: nx.DiGraph, bytes_per_value: int = 4) -> tuple[int, int]:
    """(number of concat nodes, bytes they copy per sample): a concat writes its whole output.

    >>> import netdsl
    >>> concat_stats(netdsl.compile_spec("densenet_bc100_k12", {"depth": 10, "k": 4}))
    (3, 61696)
    """
    nodes = [d for _, d in graph.nodes(data=True) if d["kind"] == "concat"]
    return len(nodes), sum(int(np.prod(d["shape"])) * bytes_per_value for d in nodes)
