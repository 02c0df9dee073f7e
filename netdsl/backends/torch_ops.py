"""The torch backend's op table: for every IR op kind, how to build its module (if it owns
state) and how to call it, both as live objects and as Python source for the emitted file.

``tests/test_backends.py`` checks that every kind in :data:`netdsl.ir.ops.OP_KINDS` has an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .torch_layers import Affine, SqueezeExcite

ACT_FUNCS = {
    "relu": ("F.relu({x})", lambda a: F.relu),
    "relu6": ("F.relu6({x})", lambda a: F.relu6),
    "sigmoid": ("torch.sigmoid({x})", lambda a: torch.sigmoid),
    "tanh": ("torch.tanh({x})", lambda a: torch.tanh),
    "gelu": ("F.gelu({x})", lambda a: F.gelu),
    "silu": ("F.silu({x})", lambda a: F.silu),
    "hardswish": ("F.hardswish({x})", lambda a: F.hardswish),
    "leaky_relu": ("F.leaky_relu({x}, {slope!r})", lambda a: (lambda x: F.leaky_relu(x, a["slope"]))),
    "elu": ("F.elu({x})", lambda a: F.elu),
}


CLASSES = {"nn.Conv2d": nn.Conv2d, "nn.BatchNorm2d": nn.BatchNorm2d, "nn.Linear": nn.Linear,
           "nn.Dropout": nn.Dropout, "Affine": Affine, "SqueezeExcite": SqueezeExcite}

Ctor = tuple  # (class name in CLASSES, positional args, keyword args)


@dataclass(frozen=True, slots=True)
class TorchOp:
    # (attrs, input shapes) -> Ctor for ops that own state, None for stateless ops
    module: Callable[[dict, Sequence[tuple]], Ctor | None]
    # (attrs, module expression, input variable names) -> expression source
    call_src: Callable[[dict, str, Sequence[str]], str]


def _pool_src(fn):
    def src(a, m, xs):
        extra = "" if fn == "max" else f", count_include_pad={a['count_include_pad']}"
        return (f"F.{fn}_pool2d({xs[0]}, {a['kernel']}, {a['stride']}, {a['padding']}, "
                f"ceil_mode={a['ceil_mode']}{extra})")
    return src


def _none(a, ins):
    return None


def _call_module(a, m, xs):
    return f"{m}({xs[0]})"


TORCH_OPS: dict[str, TorchOp] = {
    "input": TorchOp(_none, lambda a, m, xs: "x"),
    "conv": TorchOp(
        lambda a, ins: ("nn.Conv2d", (ins[0][0], a["out"], a["kernel"]),
                        dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                             groups=a["groups"], bias=a["bias"])),
        _call_module,
    ),
    "bn": TorchOp(lambda a, ins: ("nn.BatchNorm2d", (ins[0][0],), dict(eps=a["eps"], momentum=a["momentum"])),
                  _call_module),
    "affine": TorchOp(lambda a, ins: ("Affine", (ins[0][0],), {}), _call_module),
    "act": TorchOp(_none, lambda a, m, xs: ACT_FUNCS[a["fn"]][0].format(x=xs[0], slope=a.get("slope"))),
    "maxpool": TorchOp(_none, _pool_src("max")),
    "avgpool": TorchOp(_none, _pool_src("avg")),
    "gap": TorchOp(_none, lambda a, m, xs: f"F.adaptive_avg_pool2d({xs[0]}, 1)"),
    "flatten": TorchOp(_none, lambda a, m, xs: f"torch.flatten({xs[0]}, 1)"),
    "linear": TorchOp(lambda a, ins: ("nn.Linear", (ins[0][0], a["out"]), dict(bias=a["bias"])), _call_module),
    "dropout": TorchOp(lambda a, ins: ("nn.Dropout", (a["p"],), {}), _call_module),
    "identity": TorchOp(_none, lambda a, m, xs: xs[0]),
    "se": TorchOp(lambda a, ins: ("SqueezeExcite", (ins[0][0], a["hidden"]), dict(bias=a["bias"])), _call_module),
    "add": TorchOp(_none, lambda a, m, xs: " + ".join(xs)),
    "mul": TorchOp(_none, lambda a, m, xs: " * ".join(xs)),
    "concat": TorchOp(_none, lambda a, m, xs: f"torch.cat([{', '.join(xs)}], 1)"),
    "slice": TorchOp(_none, lambda a, m, xs: f"{xs[0]}[:, {a['start']}:{a['stop']}]"),
}


def stateless_fn(kind: str, a: dict) -> Callable:
    """The live callable of a stateless op (the same computation as its ``call_src``)."""
    if kind == "act":
        return ACT_FUNCS[a["fn"]][1](a)
    if kind == "maxpool":
        return lambda x: F.max_pool2d(x, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"])
    if kind == "avgpool":
        return lambda x: F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                                      count_include_pad=a["count_include_pad"])
    if kind == "gap":
        return lambda x: F.adaptive_avg_pool2d(x, 1)
    if kind == "flatten":
        return lambda x: torch.flatten(x, 1)
    if kind == "identity":
        return lambda x: x
    if kind == "add":
        def add(*xs):
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        return add
    if kind == "mul":
        return lambda x, y: x * y
    if kind == "concat":
        return lambda *xs: torch.cat(xs, 1)
    if kind == "slice":
        start, stop = a["start"], a["stop"]
        return lambda x: x[:, start:stop]
    raise KeyError(kind)


def build_module(kind: str, a: dict, ins: Sequence[tuple]) -> nn.Module | None:
    ctor = TORCH_OPS[kind].module(a, ins)
    if ctor is None:
        return None
    cls, args, kwargs = ctor
    return CLASSES[cls](*args, **kwargs)


def module_source(kind: str, a: dict, ins: Sequence[tuple]) -> str | None:
    ctor = TORCH_OPS[kind].module(a, ins)
    if ctor is None:
        return None
    cls, args, kwargs = ctor
    parts = [repr(x) for x in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{cls}({', '.join(parts)})"
