"""Batch normalization's arithmetic, used by the inference rewrites (:mod:`netdsl.passes.fold_bn`,
:mod:`netdsl.passes.bn_to_affine`) and the torch code generator, which embeds these functions'
source in the modules it writes. The one decision about folding (may this BN fold into the op
before it) is :func:`netdsl.passes.fold_bn.bn_fold_source`: it reads the graph.

The functions take numpy arrays or torch tensors alike (only ``*``, ``+``, ``-``, ``**`` and
``reshape``), so the same lines serve the ONNX weight rewrites and the generated torch code.
"""

from __future__ import annotations


def bn_scale_shift(gamma, beta, mean, var, eps):
    """Eval-mode BatchNorm per channel: ``x * scale + shift``, ``scale = gamma / sqrt(var + eps)``.

    >>> import numpy as np
    >>> bn_scale_shift(np.array([3.0]), np.array([1.0]), np.array([0.5]), np.array([4.0]), 0.0)
    (array([1.5]), array([0.25]))
    """
    # Not ``** -0.5``: compiled, this runs per element, and inductor lowers that to a general pow
    # but ``** 0.5`` to a vector square root (docs/performance.md has the measurement).
    scale = gamma / (var + eps) ** 0.5
    return scale, beta - mean * scale


def fold_into_conv(weight, bias, scale, shift):
    """``(W', b')``, ``conv'(x) == bn(conv(x))``: ``W * scale`` per output channel, ``b * scale + shift``.

    >>> import numpy as np
    >>> w, b = fold_into_conv(np.full((1, 1, 1, 1), 2.0), None, np.array([1.5]), np.array([0.25]))
    >>> w.ravel().tolist(), b.tolist()
    ([3.0], [0.25])
    """
    return weight * scale.reshape(-1, 1, 1, 1), (shift if bias is None else bias * scale + shift)
