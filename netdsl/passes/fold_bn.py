"""Inference rewrite: fold a BatchNorm into the convolution that feeds it.

Valid only when the BN reads a conv whose value nobody else sees: the conv's sole consumer is
the BN, and the conv is neither the graph output nor named in block metadata (a feature or unit
output there means the pre-BN value is observable). Then ``bn(conv(x)) = conv'(x)`` with
``W' = W * s`` and ``b' = (b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)`` per output
channel (the arithmetic is the registry's, :mod:`netdsl.ops.norm`; the decision is :func:`bn_fold_source`). The conv
keeps its id (and gains ``folded = (bn id,)``); the BN node disappears.

Needs weights on the nodes (``weights``: name -> numpy array, the torch module's names), which
the ONNX backend binds before running the inference rewrites. Pre-activation BNs (DenseNet's
``bn; relu; conv`` after a concat) are left for :mod:`netdsl.passes.bn_to_affine`.

>>> import numpy as np, networkx as nx
>>> from netdsl.ir.graph import add_op
>>> g = nx.DiGraph(input="x", output="b")
>>> _ = add_op(g, "x", "input", (), {"shape": (1, 2, 2)}, shape=(1, 2, 2))
>>> _ = add_op(g, "c", "conv", ("x",), dict(out=1, kernel=1, stride=1, padding=0, dilation=1, groups=1,
...            bias=False), shape=(1, 2, 2), weights={"weight": np.full((1, 1, 1, 1), 2.0)})
>>> _ = add_op(g, "b", "bn", ("c",), dict(eps=0.0, momentum=0.1), shape=(1, 2, 2), weights=dict(
...            weight=np.array([3.0]), bias=np.array([1.0]), running_mean=np.array([0.5]), running_var=np.array([4.0])))
>>> r = run(g)
>>> sorted(r.graph.nodes), r.graph.graph["output"], r.graph.nodes["c"]["weights"]["weight"].ravel().tolist()
(['c', 'x'], 'c', [3.0])
>>> r.graph.nodes["c"]["weights"]["bias"].tolist()  # (0 - 0.5) * 1.5 + 1
[0.25]
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from ..errors import IRError
from ..ir.graph import output_nodes
from ..ops import bn_scale_shift, fold_into_conv, get
from .base import PassResult
from .rewire import copy_graph, named_in_blocks, replace_uses


def bn_fold_source(graph: nx.DiGraph, bn: str) -> str | None:
    """The op the BatchNorm ``bn`` may fold into, or None: the op before it folds a following BN
    (a conv: the registry's ``folds_following_bn``) and its pre-BN value is observable nowhere
    else -- the BN is its only consumer, it is not a graph output, it is not stored into a concat
    buffer and the block metadata does not name it (a feature or unit output there is read by its
    value). The one fold decision: this pass, the memory model and the torch code generator ask it."""
    src = graph.nodes[bn]["inputs"][0]
    d = graph.nodes[src]
    if not get(d["kind"]).folds_following_bn:
        return None
    if list(graph.successors(src)) != [bn] or src in output_nodes(graph) or d.get("stores"):
        return None
    if named_in_blocks(graph, src):
        return None
    return src


def bn_scale_shift_of(w: dict, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, shift)`` of an eval-mode BN's bound weights, computed in float64."""
    f64 = {k: np.asarray(w[k], np.float64) for k in ("weight", "bias", "running_mean", "running_var")}
    return bn_scale_shift(f64["weight"], f64["bias"], f64["running_mean"], f64["running_var"], eps)


def weights_of(graph: nx.DiGraph, node: str) -> dict:
    w = graph.nodes[node].get("weights")
    if w is None:
        raise IRError(f"node '{node}' has no weights bound; inference rewrites need them")
    return w


def run(graph: nx.DiGraph) -> PassResult:
    pairs = [
        (bn, conv)
        for bn, d in graph.nodes(data=True)
        if d["kind"] == "bn"
        for conv in [bn_fold_source(graph, bn)]
        if conv is not None
    ]
    if not pairs:
        return PassResult(graph, False)
    out = copy_graph(graph)
    for bn, conv in pairs:
        cw, bw = weights_of(out, conv), weights_of(out, bn)
        scale, shift = bn_scale_shift_of(bw, out.nodes[bn]["attrs"]["eps"])
        bias = np.asarray(cw["bias"], np.float64) if "bias" in cw else None
        weight, bias = fold_into_conv(np.asarray(cw["weight"], np.float64), bias, scale, shift)
        d = out.nodes[conv]
        d["weights"] = {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}
        d["attrs"]["bias"] = True
        d["folded"] = tuple(d.get("folded", ())) + (bn,)
        replace_uses(out, bn, conv)
    return PassResult(out, True)
