"""Batch normalization's arithmetic and the one decision about folding it, used by the inference
rewrites (:mod:`netdsl.passes.fold_bn`, :mod:`netdsl.passes.bn_to_affine`), the memory model and
the torch code generator.

The functions take numpy arrays or torch tensors alike (only ``*``, ``+``, ``-``, ``**`` and
``reshape``), so the same lines serve the ONNX weight rewrites and the generated torch code.
"""

from __future__ import annotations

from typing import Any

import networkx as nx


def bn_scale_shift(gamma: Any, beta: Any, mean: Any, var: Any, eps: float) -> tuple[Any, Any]:
    """Eval-mode BatchNorm as ``x * scale + shift``, per channel:
    ``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale``.

    >>> import numpy as np
    >>> bn_scale_shift(np.array([3.0]), np.array([1.0]), np.array([0.5]), np.array([4.0]), 0.0)
    (array([1.5]), array([0.25]))
    """
    # Not ``** -0.5``: compiled, this runs per element, and inductor lowers that to a general pow
    # (a 16-unit dense block at batch 64: 519 ms) but ``** 0.5`` to a vector square root (385 ms).
    scale = gamma / (var + eps) ** 0.5
    return scale, beta - mean * scale


def fold_into_conv(weight: Any, bias: Any | None, scale: Any, shift: Any) -> tuple[Any, Any]:
    """``bn(conv(x)) == conv'(x)`` for a BN of per-channel ``(scale, shift)`` after a conv of
    ``(weight, bias)`` (bias None: no bias): ``W' = W * scale`` (per output channel) and
    ``b' = b * scale + shift``.

    >>> import numpy as np
    >>> w, b = fold_into_conv(np.full((1, 1, 1, 1), 2.0), None, np.array([1.5]), np.array([0.25]))
    >>> w.ravel().tolist(), b.tolist()
    ([3.0], [0.25])
    """
    folded = weight * scale.reshape(-1, 1, 1, 1)
    return folded, (shift if bias is None else bias * scale + shift)


def bn_fold_source(graph: nx.DiGraph, bn: str) -> str | None:
    """The op the BatchNorm ``bn`` may fold into, or None: the op before it folds a following BN
    (a conv) and its pre-BN value is observable nowhere else -- the BN is its only consumer, it
    is not a graph output, it is not stored into a concat buffer and the block metadata does
    not name it (a feature or unit output there is read by its value)."""
    from ..ir.graph import output_nodes
    from ..passes.rewire import named_in_blocks
    from . import get

    src = graph.nodes[bn]["inputs"][0]
    d = graph.nodes[src]
    if not get(d["kind"]).folds_following_bn:
        return None
    if list(graph.successors(src)) != [bn] or src in output_nodes(graph) or d.get("stores"):
        return None
    if named_in_blocks(graph, src):
        return None
    return src
