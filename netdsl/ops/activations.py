"""The activation table: every activation a spec can call is one row here, and nowhere else.

All activations lower to the one IR kind ``act`` (attrs ``fn`` plus the row's own arguments,
e.g. ``slope`` for leaky_relu); the ``act`` entry of the registry dispatches to this table for
its torch source, in-place form, ONNX emission and label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Arg, Attrs


@dataclass(frozen=True, slots=True)
class Activation:
    name: str  # the spec name and the IR attr ``fn``
    torch: str  # source template: ``{x}`` is the input variable, other fields are attrs
    inplace: str | None  # in-place source template for a fresh unshared tensor, or None
    onnx: Callable[[Any, str, str, Attrs], None]  # (builder, node id, input name, attrs)
    args: tuple[Arg, ...] = ()  # spec arguments; each becomes an IR attr of the same name
    saves_output: bool = False  # autograd saves the output (else the input) for backward
    doc: str = ""

    def call(self, attrs: Attrs, x: str) -> str:
        return self.torch.format(x=x, **_fields(attrs))

    def inplace_call(self, attrs: Attrs, x: str) -> str | None:
        return None if self.inplace is None else self.inplace.format(x=x, **_fields(attrs))


def _fields(attrs: Attrs) -> dict:
    return {k: v for k, v in attrs.items() if k != "x"}


def _one(op: str, **onnx_attrs: Any) -> Callable:
    def emit(b: Any, n: str, x: str, a: Attrs) -> None:
        b.node(op, [x], n, **onnx_attrs)

    return emit


def _relu6(b: Any, n: str, x: str, a: Attrs) -> None:
    b.node("Clip", [x, b.const(f"{n}.min", 0.0), b.const(f"{n}.max", 6.0)], n)


def _silu(b: Any, n: str, x: str, a: Attrs) -> None:
    b.node("Mul", [x, b.node("Sigmoid", [x], f"{n}/sigmoid")], n)


def _leaky_relu(b: Any, n: str, x: str, a: Attrs) -> None:
    b.node("LeakyRelu", [x], n, alpha=float(a["slope"]))


def _mish(b: Any, n: str, x: str, a: Attrs) -> None:
    # x * tanh(softplus(x)); spelled out rather than the opset-18 Mish function op, so every
    # onnxruntime we support runs it with plain kernels.
    soft = b.node("Softplus", [x], f"{n}/softplus")
    b.node("Mul", [x, b.node("Tanh", [soft], f"{n}/tanh")], n)


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", "F.relu({x})", "torch.relu_({x})", _one("Relu"), saves_output=True),
        Activation("relu6", "F.relu6({x})", "F.hardtanh_({x}, 0.0, 6.0)", _relu6),
        Activation("sigmoid", "torch.sigmoid({x})", "torch.sigmoid_({x})", _one("Sigmoid"), saves_output=True),
        Activation("tanh", "torch.tanh({x})", "torch.tanh_({x})", _one("Tanh"), saves_output=True),
        Activation("gelu", "F.gelu({x})", None, _one("Gelu", approximate="none")),
        Activation("silu", "F.silu({x})", "F.silu({x}, inplace=True)", _silu),
        Activation("hardswish", "F.hardswish({x})", "F.hardswish({x}, inplace=True)", _one("HardSwish")),
        Activation(
            "leaky_relu", "F.leaky_relu({x}, {slope!r})", None, _leaky_relu, args=(Arg("slope", "float", 0.01),)
        ),
        Activation("elu", "F.elu({x})", "F.elu_({x})", _one("Elu", alpha=1.0), saves_output=True),
        Activation("mish", "F.mish({x})", "F.mish({x}, inplace=True)", _mish, doc="x * tanh(softplus(x)) (Misra)"),
    )
}
