"""The op registry: every operation netdsl knows is one entry, and everything else reads it.

An entry (:class:`Op`, in :mod:`netdsl.ops.kinds`) holds an IR kind's arity and attributes, its
shape rule, parameter and FLOP counts, flags (``per_channel``, ``elementwise``, ``inplace_ok``,
``view``, ``eval_identity``, ``weights``, ``folds_following_bn``, ``saves``), the torch source it
generates (``op.torch.module / call / inplace``), its ONNX emission, its drawing label and the
spec-level names that lower to it (:class:`SpecOp`: arguments, defaults, checks, attrs).
Activations are one IR kind, ``act``, whose rows live in :mod:`netdsl.ops.activations`.
BatchNorm's folding arithmetic is in :mod:`netdsl.ops.norm` (the fold decision, which reads the
graph, is :mod:`netdsl.passes.fold_bn`'s).

The registry imports no torch, onnx or graphviz: torch code is source text, and the ONNX
emission is given the emitter's builder.

Adding an op: an activation is one :class:`Activation` row in ``activations.py``; any other op
is one :class:`Op` in ``kinds.py`` (appended to ``ALL``) with a :class:`SpecOp` for its spec
name. Then add its row to the op table of ``docs/language.md`` (a test compares the two) and a
test; nothing else changes (``mish`` and ``channel_shuffle`` were added that way).

>>> get("conv").torch.module(dict(out=8, kernel=3, stride=1, padding=1, dilation=1, groups=1, bias=False), [(3, 8, 8)])
('nn.Conv2d', (3, 8, 3), {'stride': 1, 'padding': 1, 'dilation': 1, 'groups': 1, 'bias': False})
>>> get("act").torch.call({"fn": "relu"}, "", ["x"]), get("act").torch.inplace({"fn": "relu"}, "x")
('F.relu(x)', 'torch.relu_(x)')
>>> SPEC_OPS["channel_shuffle"].kind, get("channel_shuffle").label({"groups": 4})
('channel_shuffle', 'shuffle g4')
"""

from __future__ import annotations

from .activations import ACTIVATIONS, Activation
from .base import REQUIRED, Arg, Op, Shape, SpecOp, TorchCode, fmt_shape
from .kinds import ALL
from .norm import bn_scale_shift, fold_into_conv

REGISTRY: dict[str, Op] = {op.kind: op for op in ALL}

# spec-level name -> the SpecOp that lowers it (``conv``, ``relu``, ``channel_shuffle``)
SPEC_OPS: dict[str, SpecOp] = {s.name: s for op in ALL for s in op.spec}


def get(kind: str) -> Op:
    """The registry entry of IR kind ``kind`` (KeyError for an unknown kind)."""
    return REGISTRY[kind]


def infer_shape(kind: str, attrs, input_shapes) -> Shape:
    """The output shape of one op, or :class:`netdsl.errors.ShapeError`.

    >>> infer_shape("conv", dict(out=8, kernel=3, stride=2, padding=1, dilation=1, groups=1, bias=False), [(3, 32, 32)])
    (8, 16, 16)
    """
    return REGISTRY[kind].shape(attrs, list(input_shapes))


__all__ = [
    "ACTIVATIONS",
    "REGISTRY",
    "REQUIRED",
    "SPEC_OPS",
    "Activation",
    "Arg",
    "Op",
    "SpecOp",
    "TorchCode",
    "bn_scale_shift",
    "fmt_shape",
    "fold_into_conv",
    "get",
    "infer_shape",
]
