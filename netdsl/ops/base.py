"""The shape of a registry entry: :class:`Op` (one IR kind), :class:`SpecOp` (one name a spec can
call), :class:`Arg` (one checked spec argument) and :class:`TorchCode` (the torch source an op
generates). Also the small shape and counting helpers the entries share.

Nothing here imports torch, onnx or graphviz: torch code is source text, and an entry's ONNX
emission is handed the emitter's builder (``b.node(op, inputs, output, **attrs)`` returns the
output name; ``b.const(name, value, dtype="float32")`` adds an initializer and returns its name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IRError, ShapeError

Shape = tuple[int, ...]
Attrs = Mapping[str, Any]

REQUIRED = object()  # an Arg default: the caller must pass the argument


@dataclass(frozen=True, slots=True)
class Arg:
    """One spec-level argument: its name, its check and its default."""

    name: str
    # "int>=1", "int>=0", "bool", "prob", "float>0", "float"; "a|b": one of the names a, b (bound as
    # constants in netdsl.frontend.evaluate); "tensor": a labelled tensor, the node's next input (not an attr)
    check: str
    default: object = REQUIRED


@dataclass(frozen=True, slots=True)
class SpecOp:
    """A name a spec can call (``conv``, ``relu``), the IR kind it lowers to and its arguments.

    ``to_attrs(values, input_shape)`` maps the checked argument values (every declared argument,
    defaults filled in) to the IR node's attrs."""

    name: str
    kind: str
    args: tuple[Arg, ...]
    to_attrs: Callable[[dict, Shape], dict]
    doc: str = ""
    flatten_first: bool = False  # linear: a feature map is flattened first, as users expect


@dataclass(frozen=True, slots=True)
class TorchCode:
    """How the torch backend runs an op, as source text (names ``torch``, ``nn``, ``F`` in scope).

    - ``module(attrs, in_shapes)``: ``(class name, args, kwargs)`` for an op that owns state
      (class names ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``, ``nn.Dropout``, ``Affine``,
      ``SqueezeExcite``), None for a stateless one;
    - ``call(attrs, module_expr, input_vars)``: the expression computing the op's value;
    - ``inplace(attrs, var)``: an in-place form for a fresh, unshared tensor, or None.
    """

    module: Callable[[Attrs, Sequence[Shape]], tuple | None]
    call: Callable[[Attrs, str, Sequence[str]], str]
    inplace: Callable[[Attrs, str], str | None] | None = None


def stateless(_a: Attrs, _ins: Sequence[Shape]) -> None:
    return None


def zero(_a: Attrs, _ins: Sequence[Shape], _out: Shape) -> int:
    return 0


@dataclass(frozen=True, slots=True, kw_only=True)  # 20 fields: an entry names each one it sets
class Op:
    """Everything netdsl knows about one IR op kind."""

    kind: str
    min_inputs: int
    max_inputs: int | None
    attrs: Mapping[str, type | tuple[type, ...]]  # the IR attrs every node of this kind carries
    shape: Callable[[Attrs, Sequence[Shape]], Shape]
    torch: TorchCode
    onnx: Callable[[Any, str, dict, list[str]], None]  # (builder, node id, node data, input names)
    label: Callable[[Attrs], str]  # what a drawing shows for the op ("conv 3x3/2", "relu")
    params: Callable[[Attrs, Sequence[Shape], Shape], int] = zero
    flops: Callable[[Attrs, Sequence[Shape], Shape], int] = zero
    spec: tuple[SpecOp, ...] = ()  # the spec-level names that lower to this kind
    doc: str = ""
    # attrs that depend on other attrs (an activation's own arguments): attrs -> {name: type}
    extra_attrs: Callable[[Attrs], Mapping[str, type | tuple[type, ...]]] | None = None
    per_channel: bool = False  # may run on a channel slice of its input (bn, affine, act)
    elementwise: bool = False  # output element k depends on input element k only
    inplace_ok: bool = False  # torch.inplace gives an in-place form
    # its torch call returns a tensor of its own (not a view, not an input), so a following
    # activation may overwrite it in place when nothing else reads it
    fresh_output: bool = False
    view: bool = False  # the value shares its input's storage (slice, flatten, identity)
    eval_identity: bool = False  # the identity in eval mode (dropout, identity)
    weights: tuple[str, ...] = ()  # its torch module's state_dict names, as the ONNX emitter binds them
    folds_following_bn: bool = False  # a BN reading only this op's value can fold into its weights
    saves: str = "none"  # what training saves for backward: "input", "output", "inputs" or "none"

    def attr_types(self, attrs: Attrs) -> Mapping[str, type | tuple[type, ...]]:
        if self.extra_attrs is None:
            return self.attrs
        return {**self.attrs, **self.extra_attrs(attrs)}


# ---- shape helpers


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def spatial_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil: bool = False) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:  # torch: last window must start inside the input
            out -= 1
        return out
    return span // stride + 1


def need_map(shape: Shape, what: str) -> None:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a feature map (C, H, W), got a vector of {shape[0]} features")


def map_only(fn: Callable, what: str = "this op") -> Callable:
    def wrapped(a: Attrs, ins: Sequence[Shape]) -> Shape:
        need_map(ins[0], what)
        return fn(a, ins)

    return wrapped


def same(_a: Attrs, ins: Sequence[Shape]) -> Shape:
    return tuple(ins[0])


# ---- ONNX helpers (numpy only)


def weight(d: dict, key: str, node: str) -> np.ndarray:
    """The bound weight ``key`` of node ``node`` (data ``d``) as float32, or :class:`IRError`."""
    w = d.get("weights")
    if w is None or key not in w:
        raise IRError(f"node '{node}' ({d['kind']}) has no '{key}' weight bound")
    return np.asarray(w[key], np.float32)


def onnx_simple(op: str, **attrs: Any) -> Callable:
    def emit(b: Any, n: str, d: dict, xs: list[str]) -> None:
        b.node(op, xs, n, **attrs)

    return emit


def call_module(_a: Attrs, m: str, xs: Sequence[str]) -> str:
    return f"{m}({xs[0]})"
