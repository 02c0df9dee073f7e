"""Inference rewrite: every BatchNorm left after :mod:`netdsl.passes.fold_bn` (a pre-activation
BN, whose input is a concat, a pool or a shared feature) becomes a per-channel ``affine`` node
with the same id: ``y = x * scale + shift``, ``scale = gamma / sqrt(var + eps)``,
``shift = beta - mean * scale``. The affine's weights use the torch ``Affine`` module's names
(``weight`` = scale, ``bias`` = shift), so a rewritten graph still builds a torch module.

>>> import numpy as np, networkx as nx
>>> from netdsl.ir.graph import add_op
>>> g = nx.DiGraph(input="x", output="b")
>>> _ = add_op(g, "x", "input", (), {"shape": (1, 2, 2)}, shape=(1, 2, 2))
>>> _ = add_op(g, "b", "bn", ("x",), dict(eps=0.0, momentum=0.1), shape=(1, 2, 2), weights=dict(
...            weight=np.array([3.0]), bias=np.array([1.0]), running_mean=np.array([0.5]), running_var=np.array([4.0])))
>>> d = run(g).graph.nodes["b"]
>>> d["kind"], d["weights"]["weight"].tolist(), d["weights"]["bias"].tolist()
('affine', [1.5], [0.25])
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from .base import PassResult
from .fold_bn import bn_scale_shift_of, weights_of
from .rewire import copy_graph


def run(graph: nx.DiGraph) -> PassResult:
    bns = [n for n, d in graph.nodes(data=True) if d["kind"] == "bn"]
    if not bns:
        return PassResult(graph, False)
    out = copy_graph(graph)
    for n in bns:
        d = out.nodes[n]
        scale, shift = bn_scale_shift_of(weights_of(out, n), d["attrs"]["eps"])
        d["kind"], d["attrs"] = "affine", {}
        d["weights"] = {"weight": scale.astype(np.float32), "bias": shift.astype(np.float32)}
    return PassResult(out, True)
