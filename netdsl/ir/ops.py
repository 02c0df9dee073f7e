"""The IR contract: the closed set of op kinds, their attributes and their semantics.

A netdsl graph is a ``networkx.DiGraph``. Every node id is the op's dotted, readable name
(``block1.unit3.conv1``) and carries these attributes:

================  ======================================================================
``kind``          one of :data:`OP_KINDS`
``inputs``        tuple of producer node ids, **in order** (concat order is this order)
``attrs``         dict of the kind's attributes (table below); never mutated after lowering
``span``          :class:`netdsl.errors.Span` of the spec text that produced it, or None
``block``/``unit``  the block name and 1-based unit index the node belongs to, if any
``role``          why lowering made the node: ``"aggregate"`` (a unit's input), ``"block_output"``,
                  ``"feature"`` (a window/split view of a block input), or None
================  ======================================================================

Analyses add attributes; backends only read them:

- ``shape`` (``infer_shapes``): ``(C, H, W)`` for feature maps, ``(C,)`` after flatten;
  batch is implicit.
- ``params`` and ``flops`` (``count``): trainable parameters (BatchNorm running statistics are
  buffers, not parameters, as torchvision counts) and multiply-accumulates. **FLOPs convention:
  one multiply-accumulate counts as one FLOP**, the convention of the seed papers (ResNet's
  "3.8 billion FLOPs", SeqConv's GFLOPs column); only conv, linear and SE contribute.
- the concat plan (``plan_concat``, optimization level 1; the ops themselves are unchanged, so
  a backend may ignore it): ``stores`` on a producer, a tuple of ``(buffer, start, stop)``: its
  value is written into that channel range of the buffer; ``read`` on a concat/slice node that
  equals channel ranges of one buffer: ``{"buffer", "runs": ((start, stop), ...), "strategy":
  "view" | "gather" | "split", "copy_bytes"}`` (bytes per sample a gather materializes, 0 for a
  view or split); ``elided`` on a slice node whose only consumers are reads (executors skip it).
  ``graph.graph["buffers"]`` maps each buffer id to ``{"block", "shape": (C, H, W)}`` and
  ``graph.graph["planned"]`` is True.

An edge ``u -> v`` exists iff ``u`` is in ``v``'s ``inputs`` (its ``index`` attribute lists the
positions). ``graph.graph`` holds ``name``, ``input`` (node id), ``output`` (node id), ``blocks``
(a list of :class:`netdsl.ir.graph.BlockInfo`) and ``params`` (the spec parameter values).

Op kinds and attributes (``out`` = output channels; spatial ops take ``kernel``, ``stride``,
``padding``):

==============  =====  =====================================================================
kind            arity  attrs
==============  =====  =====================================================================
input           0      shape
conv            1      out, kernel, stride, padding, dilation, groups, bias
bn              1      eps, momentum
affine          1      (per-channel ``y = x * scale + shift``; made by inference rewrites)
act             1      fn (relu, relu6, sigmoid, tanh, gelu, silu, hardswish, leaky_relu, elu),
                       slope (leaky_relu only)
maxpool         1      kernel, stride, padding, ceil_mode
avgpool         1      kernel, stride, padding, ceil_mode, count_include_pad
gap             1      global average pool, keeps ``(C, 1, 1)``
flatten         1      ``(C, H, W) -> (C*H*W,)``
linear          1      out, bias
dropout         1      p
identity        1
se              1      hidden, bias (squeeze-and-excitation: gap, 1x1 conv, relu, 1x1 conv,
                       sigmoid, scale)
add             >=2    elementwise sum of equal shapes
mul             2      elementwise product; ``(C, 1, 1)`` broadcasts over ``(C, H, W)``
concat          >=1    channel concatenation of equal spatial sizes, in ``inputs`` order
slice           1      start, stop (a channel range ``[start, stop)``)
==============  =====  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ..errors import ShapeError

Shape = tuple[int, ...]

ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "hardswish", "leaky_relu", "elu")


def _spatial_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil: bool = False) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:  # torch: last window must start inside the input
            out -= 1
        return out
    return span // stride + 1


def _need_map(shape: Shape, what: str) -> None:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a feature map (C, H, W), got a vector of {shape[0]} features")


def _shape_conv(a, ins):
    (c, h, w), = ins
    if c % a["groups"] or a["out"] % a["groups"]:
        raise ShapeError(
            f"conv groups={a['groups']} must divide both input channels ({c}) and output channels ({a['out']})"
        )
    oh = _spatial_out(h, a["kernel"], a["stride"], a["padding"], a["dilation"])
    ow = _spatial_out(w, a["kernel"], a["stride"], a["padding"], a["dilation"])
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv kernel {a['kernel']} stride {a['stride']} shrinks a {h}x{w} map below 1x1")
    return (a["out"], oh, ow)


def _shape_pool(a, ins):
    (c, h, w), = ins
    if a["padding"] * 2 > a["kernel"]:
        raise ShapeError(f"pool padding {a['padding']} must be at most half the kernel {a['kernel']}")
    oh = _spatial_out(h, a["kernel"], a["stride"], a["padding"], 1, a.get("ceil_mode", False))
    ow = _spatial_out(w, a["kernel"], a["stride"], a["padding"], 1, a.get("ceil_mode", False))
    if oh < 1 or ow < 1:
        raise ShapeError(f"pool kernel {a['kernel']} stride {a['stride']} shrinks a {h}x{w} map below 1x1")
    return (c, oh, ow)


def _same(_a, ins):
    return ins[0]


def _shape_add(_a, ins):
    first = ins[0]
    for s in ins[1:]:
        if s != first:
            raise ShapeError(f"add needs equal shapes, got {_fmt(first)} and {_fmt(s)}")
    return first


def _shape_mul(_a, ins):
    a, b = ins
    if a == b:
        return a
    if len(a) == 3 and len(b) == 3 and a[0] == b[0] and (a[1:] == (1, 1) or b[1:] == (1, 1)):
        return a if a[1:] != (1, 1) else b
    raise ShapeError(f"mul needs equal shapes or a (C, 1, 1) gate, got {_fmt(a)} and {_fmt(b)}")


def _shape_concat(_a, ins):
    for s in ins:
        _need_map(s, "concat")
    hw = ins[0][1:]
    for s in ins[1:]:
        if s[1:] != hw:
            raise ShapeError(f"concat needs equal spatial sizes, got {_fmt(ins[0])} and {_fmt(s)}")
    return (sum(s[0] for s in ins),) + hw


def _shape_slice(a, ins):
    (s,) = ins
    if not 0 <= a["start"] < a["stop"] <= s[0]:
        raise ShapeError(f"channel slice [{a['start']}:{a['stop']}] is outside 0..{s[0]}")
    return (a["stop"] - a["start"],) + s[1:]


def _shape_linear(a, ins):
    (s,) = ins
    if len(s) != 1:
        raise ShapeError(f"linear needs a vector; got {_fmt(s)} (add 'gap' or 'flatten' first)")
    return (a["out"],)


def _shape_gap(_a, ins):
    (s,) = ins
    _need_map(s, "gap")
    return (s[0], 1, 1)


def _shape_flatten(_a, ins):
    (s,) = ins
    n = 1
    for d in s:
        n *= d
    return (n,)


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def _map_only(fn):
    def wrapped(a, ins):
        _need_map(ins[0], "this op")
        return fn(a, ins)

    return wrapped


def _zero(_a, _ins, _out):
    return 0


def _params_conv(a, ins, _out):
    cin = ins[0][0]
    return a["out"] * (cin // a["groups"]) * a["kernel"] ** 2 + (a["out"] if a["bias"] else 0)


def _flops_conv(a, ins, out):
    cin = ins[0][0]
    return out[0] * out[1] * out[2] * (cin // a["groups"]) * a["kernel"] ** 2


def _params_channels2(_a, ins, _out):
    return 2 * ins[0][0]


def _params_linear(a, ins, _out):
    return ins[0][0] * a["out"] + (a["out"] if a["bias"] else 0)


def _flops_linear(a, ins, _out):
    return ins[0][0] * a["out"]


def _params_se(a, ins, _out):
    c, h = ins[0][0], a["hidden"]
    return 2 * c * h + ((h + c) if a["bias"] else 0)


def _flops_se(a, ins, _out):
    return 2 * ins[0][0] * a["hidden"]


@dataclass(frozen=True, slots=True)
class OpKind:
    name: str
    min_inputs: int
    max_inputs: int | None
    attrs: Mapping[str, type | tuple[type, ...]]
    shape: Callable[[Mapping, Sequence[Shape]], Shape]
    params: Callable[[Mapping, Sequence[Shape], Shape], int] = _zero
    flops: Callable[[Mapping, Sequence[Shape], Shape], int] = _zero


_SPATIAL = {"kernel": int, "stride": int, "padding": int, "ceil_mode": bool}

OP_KINDS: dict[str, OpKind] = {
    k.name: k
    for k in (
        OpKind("input", 0, 0, {"shape": tuple}, lambda a, ins: tuple(a["shape"])),
        OpKind(
            "conv", 1, 1,
            {"out": int, "kernel": int, "stride": int, "padding": int, "dilation": int, "groups": int, "bias": bool},
            _map_only(_shape_conv), _params_conv, _flops_conv,
        ),
        OpKind("bn", 1, 1, {"eps": float, "momentum": float}, _map_only(_same), _params_channels2),
        OpKind("affine", 1, 1, {}, _same, _params_channels2),
        OpKind("act", 1, 1, {"fn": str}, _same),
        OpKind("maxpool", 1, 1, dict(_SPATIAL), _map_only(_shape_pool)),
        OpKind("avgpool", 1, 1, dict(_SPATIAL, count_include_pad=bool), _map_only(_shape_pool)),
        OpKind("gap", 1, 1, {}, _shape_gap),
        OpKind("flatten", 1, 1, {}, _shape_flatten),
        OpKind("linear", 1, 1, {"out": int, "bias": bool}, _shape_linear, _params_linear, _flops_linear),
        OpKind("dropout", 1, 1, {"p": float}, _same),
        OpKind("identity", 1, 1, {}, _same),
        OpKind("se", 1, 1, {"hidden": int, "bias": bool}, _map_only(_same), _params_se, _flops_se),
        OpKind("add", 2, None, {}, _shape_add),
        OpKind("mul", 2, 2, {}, _shape_mul),
        OpKind("concat", 1, None, {}, _shape_concat),
        OpKind("slice", 1, 1, {"start": int, "stop": int}, _shape_slice),
    )
}


def infer_shape(kind: str, attrs: Mapping, input_shapes: Sequence[Shape]) -> Shape:
    """The output shape of one op, or :class:`ShapeError`.

    >>> infer_shape("conv", dict(out=8, kernel=3, stride=2, padding=1, dilation=1, groups=1, bias=False), [(3, 32, 32)])
    (8, 16, 16)
    """
    return OP_KINDS[kind].shape(attrs, list(input_shapes))


def fmt_shape(shape: Shape) -> str:
    return _fmt(shape)
