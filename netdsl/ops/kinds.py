"""The registry's entries: one :class:`~netdsl.ops.base.Op` per IR kind, in the order of the IR
contract (:mod:`netdsl.ir.ops`). To add an op, add one entry here (and, for an activation, one
row in :mod:`netdsl.ops.activations`); every frontend check, count, backend, label and the
language reference's table read it from here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError, SpecValueError
from .activations import ACTIVATIONS
from .base import (
    Arg,
    Attrs,
    Op,
    Shape,
    SpecOp,
    TorchCode,
    call_module,
    fmt_shape,
    map_only,
    need_map,
    onnx_simple,
    same,
    spatial_out,
    stateless,
    weight,
)
from .detection import DETECTION_OPS

# ---- input


def _input_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    """The graph input is a value, not a node."""


INPUT = Op(
    kind="input",
    min_inputs=0,
    max_inputs=0,
    attrs={"shape": tuple},
    shape=lambda a, ins: tuple(a["shape"]),
    torch=TorchCode(stateless, lambda a, m, xs: "x"),
    onnx=_input_onnx,
    label=lambda a: "input",
    doc="shape",
)

# ---- conv


def _conv_shape(a: Attrs, ins: Sequence[Shape]) -> Shape:
    ((c, h, w),) = ins
    if c % a["groups"] or a["out"] % a["groups"]:
        raise ShapeError(
            f"conv groups={a['groups']} must divide both input channels ({c}) and output channels ({a['out']})"
        )
    oh = spatial_out(h, a["kernel"], a["stride"], a["padding"], a["dilation"])
    ow = spatial_out(w, a["kernel"], a["stride"], a["padding"], a["dilation"])
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv kernel {a['kernel']} stride {a['stride']} shrinks a {h}x{w} map below 1x1")
    return (a["out"], oh, ow)


def _conv_params(a: Attrs, ins: Sequence[Shape], _out: Shape) -> int:
    return a["out"] * (ins[0][0] // a["groups"]) * a["kernel"] ** 2 + (a["out"] if a["bias"] else 0)


def _conv_flops(a: Attrs, ins: Sequence[Shape], out: Shape) -> int:
    return out[0] * out[1] * out[2] * (ins[0][0] // a["groups"]) * a["kernel"] ** 2


def _conv_module(a: Attrs, ins: Sequence[Shape]) -> tuple:
    return (
        "nn.Conv2d",
        (ins[0][0], a["out"], a["kernel"]),
        {
            "stride": a["stride"],
            "padding": a["padding"],
            "dilation": a["dilation"],
            "groups": a["groups"],
            "bias": a["bias"],
        },
    )


def _weighted_onnx(b: Any, n: str, d: dict, xs: list[str], op: str, **extra) -> None:
    """A conv-like ONNX node: input, weight (and bias), square kernel, stride and symmetric pads."""
    a = d["attrs"]
    ins = [xs[0], b.const(f"{n}.weight", weight(d, "weight", n))]
    if a["bias"]:
        ins.append(b.const(f"{n}.bias", weight(d, "bias", n)))
    b.node(op, ins, n, kernel_shape=[a["kernel"]] * 2, strides=[a["stride"]] * 2, pads=[a["padding"]] * 4, **extra)


def _conv_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    a = d["attrs"]
    _weighted_onnx(b, n, d, xs, "Conv", dilations=[a["dilation"]] * 2, group=a["groups"])


def _conv_label(a: Attrs) -> str:
    return (
        f"conv {a['kernel']}x{a['kernel']}"
        + (f"/{a['stride']}" if a["stride"] > 1 else "")
        + (f" g{a['groups']}" if a["groups"] > 1 else "")
    )


def _conv_attrs(v: dict, _s: Shape) -> dict:
    pad = v["pad"] if v["pad"] is not None else v["dilation"] * (v["kernel"] // 2)
    return {
        "out": v["out"],
        "kernel": v["kernel"],
        "stride": v["stride"],
        "padding": pad,
        "dilation": v["dilation"],
        "groups": v["groups"],
        "bias": v["bias"],
    }


CONV = Op(
    kind="conv",
    min_inputs=1,
    max_inputs=1,
    attrs={"out": int, "kernel": int, "stride": int, "padding": int, "dilation": int, "groups": int, "bias": bool},
    shape=map_only(_conv_shape),
    torch=TorchCode(_conv_module, call_module),
    onnx=_conv_onnx,
    label=_conv_label,
    params=_conv_params,
    flops=_conv_flops,
    spec=(
        SpecOp(
            "conv",
            "conv",
            (
                Arg("out", "int>=1"),
                Arg("kernel", "int>=1", 3),
                Arg("stride", "int>=1", 1),
                Arg("pad", "int>=0", None),
                Arg("groups", "int>=1", 1),
                Arg("dilation", "int>=1", 1),
                Arg("bias", "bool", False),
            ),
            _conv_attrs,
            doc="2-D convolution; pad defaults to dilation*(kernel//2) ('same' at stride 1)",
        ),
    ),
    doc="out, kernel, stride, padding, dilation, groups, bias",
    weights=("weight", "bias"),
    folds_following_bn=True,
    saves="input",
    fresh_output=True,
)

# ---- bn, affine


def _channels2(_a: Attrs, ins: Sequence[Shape], _out: Shape) -> int:
    return 2 * ins[0][0]


def _bn_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    names = ("weight", "bias", "running_mean", "running_var")
    b.node(
        "BatchNormalization",
        [xs[0]] + [b.const(f"{n}.{k}", weight(d, k, n)) for k in names],
        n,
        epsilon=d["attrs"]["eps"],
    )


BN = Op(
    kind="bn",
    min_inputs=1,
    max_inputs=1,
    attrs={"eps": float, "momentum": float},
    shape=map_only(same),
    torch=TorchCode(
        lambda a, ins: ("nn.BatchNorm2d", (ins[0][0],), {"eps": a["eps"], "momentum": a["momentum"]}), call_module
    ),
    onnx=_bn_onnx,
    label=lambda a: "bn",
    params=_channels2,
    spec=(
        SpecOp(
            "bn",
            "bn",
            (Arg("eps", "float>0", 1e-5), Arg("momentum", "prob", 0.1)),
            lambda v, s: {"eps": v["eps"], "momentum": v["momentum"]},
            doc="batch normalization",
        ),
    ),
    doc="eps, momentum",
    per_channel=True,
    weights=("weight", "bias", "running_mean", "running_var"),
    saves="input",
    fresh_output=True,
)


def _affine_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    # The affine y = weight * x + bias as BatchNormalization with mean 0, variance 1 and epsilon 0,
    # which computes exactly that: onnxruntime's CPU kernel does it in one pass over the tensor,
    # where Mul + Add make two (measured 10% of DenseNet-BC-100's whole time at batch 64,
    # docs/performance.md). Netron shows it as the BatchNorm it came from.
    c = d["shape"][0]
    stats = [b.const(f"{n}.mean", np.zeros(c)), b.const(f"{n}.var", np.ones(c))]
    b.node(
        "BatchNormalization",
        [xs[0], b.const(f"{n}.weight", weight(d, "weight", n)), b.const(f"{n}.bias", weight(d, "bias", n))] + stats,
        n,
        epsilon=0.0,
    )


AFFINE = Op(
    kind="affine",
    min_inputs=1,
    max_inputs=1,
    attrs={},
    shape=same,
    torch=TorchCode(lambda a, ins: ("Affine", (ins[0][0],), {}), call_module),
    onnx=_affine_onnx,
    label=lambda a: "affine",
    params=_channels2,
    doc="per-channel ``y = x * scale + shift``; made by inference rewrites",
    per_channel=True,
    weights=("weight", "bias"),
    saves="input",
    fresh_output=True,
)

# ---- act: dispatches to the activation table


def _act_attrs(name: str) -> Any:
    row = ACTIVATIONS[name]
    return lambda v, s: {"fn": name, **{arg.name: v[arg.name] for arg in row.args}}


def _act_extra(a: Attrs) -> dict:
    row = ACTIVATIONS.get(str(a.get("fn")))
    return {} if row is None else {arg.name: _ARG_TYPES[arg.check] for arg in row.args}


_ARG_TYPES = {"bool": bool, "int>=0": int, "int>=1": int, "float": float, "float>0": float, "prob": float}

ACT = Op(
    kind="act",
    min_inputs=1,
    max_inputs=1,
    attrs={"fn": str},
    shape=same,
    torch=TorchCode(
        stateless,
        lambda a, m, xs: ACTIVATIONS[a["fn"]].call(a, xs[0]),
        lambda a, x: ACTIVATIONS[a["fn"]].inplace_call(a, x),
    ),
    onnx=lambda b, n, d, xs: ACTIVATIONS[d["attrs"]["fn"]].onnx(b, n, xs[0], d["attrs"]),
    label=lambda a: a["fn"],
    spec=tuple(
        SpecOp(row.name, "act", row.args, _act_attrs(row.name), doc=row.doc or "activation")
        for row in ACTIVATIONS.values()
    ),
    doc="fn (one of the activation table's rows) and that row's arguments (slope for leaky_relu)",
    extra_attrs=_act_extra,
    per_channel=True,
    elementwise=True,
    inplace_ok=True,
    saves="act",
)

# ---- pools


def _pool_shape(a: Attrs, ins: Sequence[Shape]) -> Shape:
    ((c, h, w),) = ins
    if a["padding"] * 2 > a["kernel"]:
        raise ShapeError(f"pool padding {a['padding']} must be at most half the kernel {a['kernel']}")
    oh = spatial_out(h, a["kernel"], a["stride"], a["padding"], 1, a.get("ceil_mode", False))
    ow = spatial_out(w, a["kernel"], a["stride"], a["padding"], 1, a.get("ceil_mode", False))
    if oh < 1 or ow < 1:
        raise ShapeError(f"pool kernel {a['kernel']} stride {a['stride']} shrinks a {h}x{w} map below 1x1")
    return (c, oh, ow)


def _pool_call(fn: str) -> Any:
    def src(a: Attrs, m: str, xs: Sequence[str]) -> str:
        extra = "" if fn == "max" else f", count_include_pad={a['count_include_pad']}"
        return (
            f"F.{fn}_pool2d({xs[0]}, {a['kernel']}, {a['stride']}, {a['padding']}, ceil_mode={a['ceil_mode']}{extra})"
        )

    return src


def _pool_onnx(op: str) -> Any:
    def emit(b: Any, n: str, d: dict, xs: list[str]) -> None:
        a = d["attrs"]
        extra = {"count_include_pad": int(a["count_include_pad"])} if op == "AveragePool" else {}
        b.node(
            op,
            [xs[0]],
            n,
            kernel_shape=[a["kernel"]] * 2,
            strides=[a["stride"]] * 2,
            pads=[a["padding"]] * 4,
            ceil_mode=int(a["ceil_mode"]),
            **extra,
        )

    return emit


_POOL_ARGS = (
    Arg("kernel", "int>=1"),
    Arg("stride", "int>=1", None),
    Arg("pad", "int>=0", 0),
    Arg("ceil", "bool", False),
)
_SPATIAL = {"kernel": int, "stride": int, "padding": int, "ceil_mode": bool}


def _pool_attrs(v: dict, _s: Shape) -> dict:
    return {"kernel": v["kernel"], "stride": v["stride"] or v["kernel"], "padding": v["pad"], "ceil_mode": v["ceil"]}


MAXPOOL = Op(
    kind="maxpool",
    min_inputs=1,
    max_inputs=1,
    attrs=dict(_SPATIAL),
    shape=map_only(_pool_shape),
    torch=TorchCode(stateless, _pool_call("max")),
    onnx=_pool_onnx("MaxPool"),
    label=lambda a: f"maxpool {a['kernel']}/{a['stride']}",
    spec=(SpecOp("maxpool", "maxpool", _POOL_ARGS, _pool_attrs, doc="max pooling; stride defaults to the kernel"),),
    doc="kernel, stride, padding, ceil_mode",
    saves="input+indices",
)
AVGPOOL = Op(
    kind="avgpool",
    min_inputs=1,
    max_inputs=1,
    attrs=dict(_SPATIAL, count_include_pad=bool),
    shape=map_only(_pool_shape),
    torch=TorchCode(stateless, _pool_call("avg")),
    onnx=_pool_onnx("AveragePool"),
    label=lambda a: f"avgpool {a['kernel']}/{a['stride']}",
    spec=(
        SpecOp(
            "avgpool",
            "avgpool",
            _POOL_ARGS + (Arg("count_pad", "bool", True),),
            lambda v, s: dict(_pool_attrs(v, s), count_include_pad=v["count_pad"]),
            doc="average pooling",
        ),
    ),
    doc="kernel, stride, padding, ceil_mode, count_include_pad",
    saves="input",
)


def _gap_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    (s,) = ins
    need_map(s, "gap")
    return (s[0], 1, 1)


GAP = Op(
    kind="gap",
    min_inputs=1,
    max_inputs=1,
    attrs={},
    shape=_gap_shape,
    torch=TorchCode(stateless, lambda a, m, xs: f"F.adaptive_avg_pool2d({xs[0]}, 1)"),
    onnx=onnx_simple("GlobalAveragePool"),
    label=lambda a: "gap",
    spec=(SpecOp("gap", "gap", (), lambda v, s: {}, doc="global average pooling to C x 1 x 1"),),
    doc="global average pool, keeps ``(C, 1, 1)``",
)


def _flatten_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    n = 1
    for d in ins[0]:
        n *= d
    return (n,)


FLATTEN = Op(
    kind="flatten",
    min_inputs=1,
    max_inputs=1,
    attrs={},
    shape=_flatten_shape,
    torch=TorchCode(stateless, lambda a, m, xs: f"torch.flatten({xs[0]}, 1)"),
    onnx=onnx_simple("Flatten", axis=1),
    label=lambda a: "flatten",
    spec=(SpecOp("flatten", "flatten", (), lambda v, s: {}, doc="C x H x W -> C*H*W"),),
    doc="``(C, H, W) -> (C*H*W,)``",
    view=True,
)

# ---- linear, dropout, identity, se


def _linear_shape(a: Attrs, ins: Sequence[Shape]) -> Shape:
    (s,) = ins
    if len(s) != 1:
        raise ShapeError(f"linear needs a vector; got {fmt_shape(s)} (add 'gap' or 'flatten' first)")
    return (a["out"],)


def _linear_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    ins = [xs[0], b.const(f"{n}.weight", weight(d, "weight", n))]
    if d["attrs"]["bias"]:
        ins.append(b.const(f"{n}.bias", weight(d, "bias", n)))
    b.node("Gemm", ins, n, transB=1)


LINEAR = Op(
    kind="linear",
    min_inputs=1,
    max_inputs=1,
    attrs={"out": int, "bias": bool},
    shape=_linear_shape,
    torch=TorchCode(lambda a, ins: ("nn.Linear", (ins[0][0], a["out"]), {"bias": a["bias"]}), call_module),
    onnx=_linear_onnx,
    label=lambda a: "linear",
    params=lambda a, ins, out: ins[0][0] * a["out"] + (a["out"] if a["bias"] else 0),
    flops=lambda a, ins, out: ins[0][0] * a["out"],
    spec=(
        SpecOp(
            "linear",
            "linear",
            (Arg("out", "int>=1"), Arg("bias", "bool", True)),
            lambda v, s: {"out": v["out"], "bias": v["bias"]},
            doc="fully connected; flattens first",
            flatten_first=True,
        ),
    ),
    doc="out, bias",
    weights=("weight", "bias"),
    saves="input",
    fresh_output=True,
)
DROPOUT = Op(
    kind="dropout",
    min_inputs=1,
    max_inputs=1,
    attrs={"p": float},
    shape=same,
    torch=TorchCode(lambda a, ins: ("nn.Dropout", (a["p"],), {}), call_module),
    onnx=onnx_simple("Identity"),
    label=lambda a: "dropout",
    spec=(SpecOp("dropout", "dropout", (Arg("p", "prob", 0.5),), lambda v, s: {"p": v["p"]}),),
    doc="p",
    eval_identity=True,
    saves="mask",
)
IDENTITY = Op(
    kind="identity",
    min_inputs=1,
    max_inputs=1,
    attrs={},
    shape=same,
    torch=TorchCode(stateless, lambda a, m, xs: xs[0]),
    onnx=onnx_simple("Identity"),
    label=lambda a: "identity",
    spec=(SpecOp("identity", "identity", (), lambda v, s: {}),),
    elementwise=True,
    view=True,
    eval_identity=True,
)


def _se_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    """x * sigmoid(fc2(relu(fc1(gap(x))))), the torch ``SqueezeExcite`` module's computation."""
    bias = d["attrs"]["bias"]
    h = b.node("GlobalAveragePool", [xs[0]], f"{n}/squeeze")
    for fc, post in (("fc1", "Relu"), ("fc2", "Sigmoid")):
        ins = [h, b.const(f"{n}.{fc}.weight", weight(d, f"{fc}.weight", n))]
        if bias:
            ins.append(b.const(f"{n}.{fc}.bias", weight(d, f"{fc}.bias", n)))
        h = b.node(post, [b.node("Conv", ins, f"{n}/{fc}", kernel_shape=[1, 1])], f"{n}/{fc}_{post.lower()}")
    b.node("Mul", [xs[0], h], n)


def _se_params(a: Attrs, ins: Sequence[Shape], _out: Shape) -> int:
    c, h = ins[0][0], a["hidden"]
    return 2 * c * h + ((h + c) if a["bias"] else 0)


SE = Op(
    kind="se",
    min_inputs=1,
    max_inputs=1,
    attrs={"hidden": int, "bias": bool},
    shape=map_only(same),
    torch=TorchCode(lambda a, ins: ("SqueezeExcite", (ins[0][0], a["hidden"]), {"bias": a["bias"]}), call_module),
    onnx=_se_onnx,
    label=lambda a: "se",
    params=_se_params,
    flops=lambda a, ins, out: 2 * ins[0][0] * a["hidden"],
    spec=(
        SpecOp(
            "se",
            "se",
            (Arg("reduction", "int>=1", 16), Arg("hidden", "int>=1", None), Arg("bias", "bool", True)),
            lambda v, s: {
                "hidden": v["hidden"] if v["hidden"] is not None else max(1, s[0] // v["reduction"]),
                "bias": v["bias"],
            },
            doc="squeeze-and-excitation; hidden defaults to max(1, channels // reduction)",
        ),
    ),
    doc="hidden, bias (squeeze-and-excitation: gap, 1x1 conv, relu, 1x1 conv, sigmoid, scale)",
    weights=("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"),
    saves="input",
)

# ---- merges and channel ranges


def _add_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    first = ins[0]
    for s in ins[1:]:
        if s != first:
            raise ShapeError(f"add needs equal shapes, got {fmt_shape(first)} and {fmt_shape(s)}")
    return tuple(first)


def _mul_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    a, b = ins
    if a == b:
        return tuple(a)
    if len(a) == 3 and len(b) == 3 and a[0] == b[0] and (a[1:] == (1, 1) or b[1:] == (1, 1)):
        return tuple(a if a[1:] != (1, 1) else b)
    raise ShapeError(f"mul needs equal shapes or a (C, 1, 1) gate, got {fmt_shape(a)} and {fmt_shape(b)}")


def _concat_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    if all(len(s) == 1 for s in ins):  # vectors join end to end (SSD's per-kind predictions)
        return (sum(s[0] for s in ins),)
    for s in ins:
        need_map(s, "concat")
    hw = tuple(ins[0][1:])
    for s in ins[1:]:
        if tuple(s[1:]) != hw:
            raise ShapeError(
                f"concat needs equal spatial sizes, got {fmt_shape(ins[0])} and {fmt_shape(s)}",
                hint="bring the maps to one size first: crop(x) cuts the larger to x's height x width "
                "(FC-DenseNet's skips), upsample/upconv or a pool resamples",
            )
    return (sum(s[0] for s in ins),) + hw


def _slice_shape(a: Attrs, ins: Sequence[Shape]) -> Shape:
    (s,) = ins
    if not 0 <= a["start"] < a["stop"] <= s[0]:
        raise ShapeError(f"channel slice [{a['start']}:{a['stop']}] is outside 0..{s[0]}")
    return (a["stop"] - a["start"],) + tuple(s[1:])


def _slice_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    a = d["attrs"]
    b.node(
        "Slice",
        [
            xs[0],
            b.const(f"{n}.starts", [a["start"]], "int64"),
            b.const(f"{n}.ends", [a["stop"]], "int64"),
            b.const(f"{n}.axes", [1], "int64"),
        ],
        n,
    )


ADD = Op(
    kind="add",
    min_inputs=2,
    max_inputs=None,
    attrs={},
    shape=_add_shape,
    torch=TorchCode(stateless, lambda a, m, xs: " + ".join(xs)),
    onnx=lambda b, n, d, xs: b.node("Add" if len(xs) == 2 else "Sum", xs, n),
    label=lambda a: "add",
    doc="elementwise sum of equal shapes",
    elementwise=True,
    fresh_output=True,
)
MUL = Op(
    kind="mul",
    min_inputs=2,
    max_inputs=2,
    attrs={},
    shape=_mul_shape,
    torch=TorchCode(stateless, lambda a, m, xs: " * ".join(xs)),
    onnx=onnx_simple("Mul"),
    label=lambda a: "mul",
    doc="elementwise product; ``(C, 1, 1)`` broadcasts over ``(C, H, W)``",
    elementwise=True,
    saves="inputs",
)
CONCAT = Op(
    kind="concat",
    min_inputs=1,
    max_inputs=None,
    attrs={},
    shape=_concat_shape,
    torch=TorchCode(stateless, lambda a, m, xs: f"torch.cat([{', '.join(xs)}], 1)"),
    onnx=onnx_simple("Concat", axis=1),
    label=lambda a: "concat",
    doc="channel concatenation of equal spatial sizes (or of vectors), in ``inputs`` order",
)
SLICE = Op(
    kind="slice",
    min_inputs=1,
    max_inputs=1,
    attrs={"start": int, "stop": int},
    shape=_slice_shape,
    torch=TorchCode(stateless, lambda a, m, xs: f"{xs[0]}[:, {a['start']}:{a['stop']}]"),
    onnx=_slice_onnx,
    label=lambda a: f"slice [{a['start']}:{a['stop']}]",
    spec=(
        SpecOp(
            "slice",
            "slice",
            (Arg("start", "int>=0"), Arg("stop", "int>=1")),
            lambda v, s: {"start": v["start"], "stop": v["stop"]},
            doc="the channels [start, stop) (DPN's dual path splits a conv's output into its two streams)",
        ),
    ),
    doc="start, stop (a channel range ``[start, stop)``)",
    view=True,
)

# ---- channel_shuffle (ShuffleNet, Zhang et al.)


def _shuffle_shape(a: Attrs, ins: Sequence[Shape]) -> Shape:
    (s,) = ins
    need_map(s, "channel_shuffle")
    if s[0] % a["groups"]:
        raise ShapeError(f"channel_shuffle groups={a['groups']} must divide the input channels ({s[0]})")
    return tuple(s)


def _shuffle_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    # (N, C, H, W) -> (N, g, C/g, H, W) -> swap the two group axes -> (N, C, H, W); a 0 in a
    # Reshape target copies that input dimension, which keeps the batch dimension symbolic.
    g = d["attrs"]["groups"]
    c, h, w = d["shape"]
    grouped = b.node("Reshape", [xs[0], b.const(f"{n}.grouped", [0, g, c // g, h, w], "int64")], f"{n}/grouped")
    swapped = b.node("Transpose", [grouped], f"{n}/transpose", perm=[0, 2, 1, 3, 4])
    b.node("Reshape", [swapped, b.const(f"{n}.shape", [0, c, h, w], "int64")], n)


CHANNEL_SHUFFLE = Op(
    kind="channel_shuffle",
    min_inputs=1,
    max_inputs=1,
    attrs={"groups": int},
    shape=_shuffle_shape,
    torch=TorchCode(
        stateless, lambda a, m, xs: f"{xs[0]}.unflatten(1, ({a['groups']}, -1)).transpose(1, 2).flatten(1, 2)"
    ),
    onnx=_shuffle_onnx,
    label=lambda a: f"shuffle g{a['groups']}",
    spec=(
        SpecOp(
            "channel_shuffle",
            "channel_shuffle",
            (Arg("groups", "int>=1"),),
            lambda v, s: {"groups": v["groups"]},
            doc="ShuffleNet's channel shuffle: C = g groups of C/g, transposed; groups must divide C",
        ),
    ),
    doc="groups (reshape ``(g, C/g)``, transpose, flatten; ``g`` divides C)",
)

# ---- RandWire's aggregation and output node (Xie et al. 2019)


def _equal_shapes(what: str):
    def shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
        for s in ins[1:]:
            if s != ins[0]:
                raise ShapeError(
                    f"{what} needs equal shapes, got {fmt_shape(ins[0])} and {fmt_shape(s)}",
                    None,
                    "in a graph block only the units that read the block input (source) may resize it: "
                    "if source { conv(c, 3, stride=2) } else { conv(c, 3) }",
                )
        return tuple(ins[0])

    return shape


def _wsum_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    # sigmoid(w) is a constant at inference: each input is scaled by its gate, then summed
    gates = 1.0 / (1.0 + np.exp(-weight(d, "weight", n).astype(np.float64)))
    scaled = [
        b.node("Mul", [x, b.const(f"{n}.gate{k}", np.asarray([gates[k]], np.float32))], f"{n}/in{k}")
        for k, x in enumerate(xs)
    ]
    b.node("Sum", scaled, n)


WSUM = Op(
    kind="wsum",
    min_inputs=2,
    max_inputs=None,
    attrs={},
    shape=_equal_shapes("wsum"),
    torch=TorchCode(lambda a, ins: ("WeightedSum", (len(ins),), {}), lambda a, m, xs: f"{m}({', '.join(xs)})"),
    onnx=_wsum_onnx,
    label=lambda a: "wsum",
    params=lambda a, ins, out: len(ins),
    doc="sum of equal shapes weighted by learnable ``sigmoid(w_k)``, one weight per input (RandWire)",
    elementwise=True,
    fresh_output=True,
    weights=("weight",),
    saves="inputs",
)
MEAN = Op(
    kind="mean",
    min_inputs=2,
    max_inputs=None,
    attrs={},
    shape=_equal_shapes("mean"),
    torch=TorchCode(stateless, lambda a, m, xs: f"({' + '.join(xs)}) / {len(xs)}"),
    onnx=onnx_simple("Mean"),
    label=lambda a: "mean",
    doc="elementwise mean of equal shapes (RandWire's output node)",
    elementwise=True,
    fresh_output=True,
)

# ---- resampling: transposed conv, upsampling, crop (FC-DenseNet's up path, Jegou et al. 2017)


def transposed_out(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> int:
    """ConvTranspose2d's output size: (size - 1) * stride - 2 * padding + kernel + output_padding."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _upconv_shape(a: Attrs, ins: Sequence[Shape]) -> Shape:
    ((_, h, w),) = ins
    if a["output_padding"] >= a["stride"]:
        raise ShapeError(
            f"upconv output_pad={a['output_padding']} must be smaller than the stride ({a['stride']})",
            hint="output_pad only adds the last row and column a stride > 1 leaves out; 0 <= output_pad < stride",
        )
    oh, ow = (transposed_out(d, a["kernel"], a["stride"], a["padding"], a["output_padding"]) for d in (h, w))
    if oh < 1 or ow < 1:
        raise ShapeError(f"upconv kernel {a['kernel']} pad {a['padding']} shrinks a {h}x{w} map below 1x1")
    return (a["out"], oh, ow)


def _upconv_flops(a: Attrs, ins: Sequence[Shape], _out: Shape) -> int:
    # A transposed conv scatters every input value through the whole kernel: one multiply-accumulate
    # per (input value, weight) pair, Cin * Cout * k^2 * H_in * W_in, whatever the padding then crops
    # (torch.utils.flop_counter's count, which gives 2 FLOPs per multiply-accumulate).
    c, h, w = ins[0]
    return c * a["out"] * a["kernel"] ** 2 * h * w


def _upconv_module(a: Attrs, ins: Sequence[Shape]) -> tuple:
    return (
        "nn.ConvTranspose2d",
        (ins[0][0], a["out"], a["kernel"]),
        {"stride": a["stride"], "padding": a["padding"], "output_padding": a["output_padding"], "bias": a["bias"]},
    )


def _upconv_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    # ONNX ConvTranspose's weight is (Cin, Cout, k, k), as torch's; its output size is
    # stride * (in - 1) + output_padding + kernel - pads_begin - pads_end, torch's formula.
    _weighted_onnx(b, n, d, xs, "ConvTranspose", output_padding=[d["attrs"]["output_padding"]] * 2)


UPCONV = Op(
    kind="upconv",
    min_inputs=1,
    max_inputs=1,
    attrs={"out": int, "kernel": int, "stride": int, "padding": int, "output_padding": int, "bias": bool},
    shape=map_only(_upconv_shape, "upconv"),
    torch=TorchCode(_upconv_module, call_module),
    onnx=_upconv_onnx,
    label=lambda a: f"upconv {a['kernel']}x{a['kernel']}" + (f"/{a['stride']}" if a["stride"] > 1 else ""),
    params=lambda a, ins, out: ins[0][0] * a["out"] * a["kernel"] ** 2 + (a["out"] if a["bias"] else 0),
    flops=_upconv_flops,
    spec=(
        SpecOp(
            "upconv",
            "upconv",
            (
                Arg("out", "int>=1"),
                Arg("kernel", "int>=1", 3),
                Arg("stride", "int>=1", 2),
                Arg("pad", "int>=0", 0),
                Arg("output_pad", "int>=0", 0),
                Arg("bias", "bool", False),
            ),
            lambda v, s: {
                "out": v["out"],
                "kernel": v["kernel"],
                "stride": v["stride"],
                "padding": v["pad"],
                "output_padding": v["output_pad"],
                "bias": v["bias"],
            },
            doc="transposed convolution (ConvTranspose2d): H -> (H - 1) * stride - 2 * pad + kernel + output_pad",
        ),
    ),
    doc="out, kernel, stride, padding, output_padding, bias (a transposed convolution)",
    weights=("weight", "bias"),
    saves="input",
    fresh_output=True,
)

# ONNX Resize's coordinate mode that computes exactly what F.interpolate does with an integer
# scale_factor: nearest reads source pixel floor(x / s) ("asymmetric" + "floor"); bilinear without
# align_corners maps x to (x + 0.5) / s - 0.5 ("pytorch_half_pixel", which also keeps torch's
# rule for an output of length 1), with align_corners to x * (in - 1) / (out - 1).
_RESIZE_MODES = {
    ("nearest", False): {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    ("bilinear", False): {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    ("bilinear", True): {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
}


def _upsample_attrs(v: dict, _s: Shape) -> dict:
    if v["mode"] == "nearest" and v["align_corners"]:
        raise SpecValueError(
            "upsample() align_corners=true needs mode=bilinear",
            hint="nearest upsampling copies pixels and has no corners to align; drop align_corners",
        )
    return {"scale": v["scale"], "mode": v["mode"], "align_corners": v["align_corners"]}


def _upsample_call(a: Attrs, _m: str, xs: Sequence[str]) -> str:
    if a["mode"] == "nearest":
        return f"F.interpolate({xs[0]}, scale_factor={float(a['scale'])!r}, mode='nearest')"
    return (
        f"F.interpolate({xs[0]}, scale_factor={float(a['scale'])!r}, mode='bilinear', "
        f"align_corners={a['align_corners']})"
    )


def _upsample_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    a = d["attrs"]
    s = float(a["scale"])
    scales = b.const(f"{n}.scales", [1.0, 1.0, s, s])
    b.node("Resize", [xs[0], "", scales], n, **_RESIZE_MODES[a["mode"], a["align_corners"]])


UPSAMPLE = Op(
    kind="upsample",
    min_inputs=1,
    max_inputs=1,
    attrs={"scale": int, "mode": str, "align_corners": bool},
    shape=map_only(lambda a, ins: (ins[0][0], ins[0][1] * a["scale"], ins[0][2] * a["scale"]), "upsample"),
    torch=TorchCode(stateless, _upsample_call),
    onnx=_upsample_onnx,
    label=lambda a: f"upsample x{a['scale']} {a['mode']}",
    spec=(
        SpecOp(
            "upsample",
            "upsample",
            (
                Arg("scale", "int>=1", 2),
                Arg("mode", "nearest|bilinear", "nearest"),
                Arg("align_corners", "bool", False),
            ),
            _upsample_attrs,
            doc="F.interpolate by an integer scale: H x W -> sH x sW, nearest or bilinear",
        ),
    ),
    doc="scale, mode (``nearest`` or ``bilinear``), align_corners (F.interpolate; no parameters, no FLOPs)",
    fresh_output=True,
)


def _crop_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    x, like = ins
    need_map(x, "crop")
    need_map(like, "crop's target")
    if like[1] > x[1] or like[2] > x[2]:
        raise ShapeError(
            f"crop to {like[1]}x{like[2]} needs a map at least that large, got {x[1]}x{x[2]}",
            hint="crop(x) only cuts; bring the smaller map up with upsample or upconv instead",
        )
    return (x[0], like[1], like[2])


def _crop_call(_a: Attrs, _m: str, xs: Sequence[str]) -> str:
    # The window's offset is the size difference // 2 (Lasagne's 'center'); narrow gives a view.
    x, like = xs
    return (
        f"{x}.narrow(2, ({x}.shape[2] - {like}.shape[2]) // 2, {like}.shape[2])"
        f".narrow(3, ({x}.shape[3] - {like}.shape[3]) // 2, {like}.shape[3])"
    )


def _crop_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    # CenterCropPad starts its window at (size - target) // 2, as the torch call does; only the
    # target size is needed, which is this node's own height and width.
    _, h, w = d["shape"]
    b.node("CenterCropPad", [xs[0], b.const(f"{n}.shape", [h, w], "int64")], n, axes=[2, 3])


CROP = Op(
    kind="crop",
    min_inputs=2,
    max_inputs=2,
    attrs={},
    shape=_crop_shape,
    torch=TorchCode(stateless, _crop_call),
    onnx=_crop_onnx,
    label=lambda a: "crop",
    spec=(
        SpecOp(
            "crop",
            "crop",
            (Arg("to", "tensor"),),
            lambda v, s: {},
            doc="the centred window of the labelled tensor's height x width (Lasagne's 'center' cropping)",
        ),
    ),
    doc="inputs (x, like): the window of x of like's height x width at offset (size difference) // 2",
    view=True,
)

ALL: tuple[Op, ...] = (
    INPUT,
    CONV,
    BN,
    AFFINE,
    ACT,
    MAXPOOL,
    AVGPOOL,
    GAP,
    FLATTEN,
    LINEAR,
    DROPOUT,
    IDENTITY,
    SE,
    ADD,
    MUL,
    CONCAT,
    SLICE,
    CHANNEL_SHUFFLE,
    *DETECTION_OPS,  # l2norm, flatten_hwc: netdsl/ops/detection.py
    WSUM,
    MEAN,
    UPCONV,
    UPSAMPLE,
    CROP,
)
