"""Live torch objects from the op registry's torch source (:mod:`netdsl.ops`): the modules of
stateful ops and the callables of stateless ones, for the interpreting backends.

The callable of a stateless op is compiled from the registry entry's own call source (registry
text with validated attribute values, never spec text), so a new op runs here without any code
of its own. This is a shim until the one torch code generator replaces the interpreters.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import get
from .torch_layers import Affine, SqueezeExcite

CLASSES = {"nn.Conv2d": nn.Conv2d, "nn.BatchNorm2d": nn.BatchNorm2d, "nn.Linear": nn.Linear,
           "nn.Dropout": nn.Dropout, "Affine": Affine, "SqueezeExcite": SqueezeExcite}

_NAMESPACE = {"torch": torch, "nn": nn, "F": F}


def _compile(kind: str, a: dict, arity: int) -> Callable:
    names = [f"x{k}" for k in range(arity)]
    src = get(kind).torch.call(a, "", names)
    code = compile(f"lambda {', '.join(names)}: {src}", f"<netdsl.ops {kind}>", "eval")
    return eval(code, dict(_NAMESPACE))  # noqa: S307 -- registry source, see the module docstring


def stateless_fn(kind: str, a: dict) -> Callable:
    """The live callable of a stateless op: its registry call source, compiled."""
    op = get(kind)
    if op.max_inputs is not None and op.max_inputs == max(op.min_inputs, 1):
        return _compile(kind, a, op.max_inputs)
    by_arity: dict[int, Callable] = {}

    def variadic(*xs):
        fn = by_arity.get(len(xs))
        if fn is None:
            fn = by_arity[len(xs)] = _compile(kind, a, len(xs))
        return fn(*xs)

    return variadic


def build_module(kind: str, a: dict, ins: Sequence[tuple]) -> nn.Module | None:
    ctor = get(kind).torch.module(a, ins)
    if ctor is None:
        return None
    cls, args, kwargs = ctor
    return CLASSES[cls](*args, **kwargs)


def module_source(kind: str, a: dict, ins: Sequence[tuple]) -> str | None:
    ctor = get(kind).torch.module(a, ins)
    if ctor is None:
        return None
    cls, args, kwargs = ctor
    parts = [repr(x) for x in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{cls}({', '.join(parts)})"
