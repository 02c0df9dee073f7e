"""The ops of SSD-style detection heads (DSOD, Shen et al. 2017, on SSD's prediction layers):

- ``l2norm``: Caffe's ``Normalize`` layer as SSD and DSOD configure it (``across_spatial=false``,
  ``channel_shared=false``): at every location the channel vector is divided by its L2 norm,
  ``sqrt(sum_c x_c^2 + eps)``, and multiplied by a learned per-channel scale (C parameters,
  initialized to ``scale``: 20 in SSD and DSOD);
- ``flatten_hwc``: a head's ``(C, H, W)`` map as one vector in location-major order, ``H*W*C``
  (SSD's ``Permute(0, 2, 3, 1)`` then ``Flatten``): the predictions of one location (and one prior)
  are adjacent, so the scales' vectors concatenate into one tensor per kind (class, box).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Arg, Attrs, Op, Shape, SpecOp, TorchCode, call_module, map_only, need_map, same, stateless, weight


def _l2norm_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    # x / sqrt(sum_c x^2 + eps) * scale, with the norm over the channel axis at every location
    c = d["shape"][0]
    square = b.node("Mul", [xs[0], xs[0]], f"{n}/square")
    total = b.node("ReduceSum", [square, b.const(f"{n}.axes", [1], "int64")], f"{n}/sum", keepdims=1)
    norm = b.node("Sqrt", [b.node("Add", [total, b.const(f"{n}.eps", d["attrs"]["eps"])], f"{n}/eps")], f"{n}/norm")
    unit = b.node("Div", [xs[0], norm], f"{n}/unit")
    b.node("Mul", [unit, b.const(f"{n}.weight", weight(d, "weight", n).reshape(c, 1, 1))], n)


L2NORM = Op(
    kind="l2norm",
    min_inputs=1,
    max_inputs=1,
    attrs={"scale": float, "eps": float},
    shape=map_only(same, "l2norm"),
    torch=TorchCode(lambda a, ins: ("L2Norm", (ins[0][0], a["scale"]), {"eps": a["eps"]}), call_module),
    onnx=_l2norm_onnx,
    label=lambda a: "l2norm",
    params=lambda a, ins, out: ins[0][0],
    spec=(
        SpecOp(
            "l2norm",
            "l2norm",
            (Arg("scale", "float>0", 20.0), Arg("eps", "float>0", 1e-10)),
            lambda v, s: {"scale": v["scale"], "eps": v["eps"]},
            doc="SSD's Normalize: each location's channel vector divided by its L2 norm, times a learned "
            "per-channel scale (initialized to scale)",
        ),
    ),
    doc="scale (the learned per-channel scale's initial value), eps (``x / sqrt(sum_c x^2 + eps) * w``)",
    weights=("weight",),
    saves="input",
    fresh_output=True,
)


def _flatten_hwc_shape(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    (s,) = ins
    need_map(s, "flatten_hwc")
    return (s[0] * s[1] * s[2],)


def _flatten_hwc_onnx(b: Any, n: str, d: dict, xs: list[str]) -> None:
    b.node("Flatten", [b.node("Transpose", [xs[0]], f"{n}/hwc", perm=[0, 2, 3, 1])], n, axis=1)


FLATTEN_HWC = Op(
    kind="flatten_hwc",
    min_inputs=1,
    max_inputs=1,
    attrs={},
    shape=_flatten_hwc_shape,
    torch=TorchCode(stateless, lambda a, m, xs: f"{xs[0]}.permute(0, 2, 3, 1).flatten(1)"),
    onnx=_flatten_hwc_onnx,
    label=lambda a: "flatten hwc",
    spec=(
        SpecOp(
            "flatten_hwc",
            "flatten_hwc",
            (),
            lambda v, s: {},
            doc="C x H x W -> H*W*C, location-major (SSD's permute + flatten)",
        ),
    ),
    doc="``(C, H, W) -> (H*W*C,)``, channels last",
)

DETECTION_OPS: tuple[Op, ...] = (L2NORM, FLATTEN_HWC)

__all__ = ["DETECTION_OPS", "FLATTEN_HWC", "L2NORM"]
